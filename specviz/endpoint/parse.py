"""Reading a chat-completions server's answers: SSE lines, usage, and per-request speculative
figures in vLLM's, SGLang's and llama.cpp's shapes.

vLLM (PR #48915, ``--per-request-spec-decode-metrics summary|detailed``): the response's top-level
``metrics.speculative_decoding`` object (:mod:`specviz.serve.metrics`), in a stream in the final
usage chunk; an earlier draft of that PR put ``speculative_decoding_stats`` on the choice with a
string-keyed histogram, read too. SGLang (PRs #11144, #18332): ``spec_accept_rate`` (accepted /
drafted), ``spec_accept_length`` (tokens per verify step), ``spec_verify_ct`` (verify steps),
``spec_accept_histogram`` (steps by accepted drafts; newer builds: ``spec_correct_drafts_histogram``,
``spec_num_correct_drafts``, ``spec_num_proposed_drafts``), found at the root, in ``meta_info``,
in ``sglext`` or in ``usage``. llama.cpp's ``llama-server``: the response's (in a stream: the
final chunk's) ``timings`` object (``prompt_n``, ``prompt_ms``, ``predicted_n``,
``predicted_ms``, ...), which adds ``draft_n`` (tokens drafted) and ``draft_n_accepted``
(drafts accepted) when the request drafted at least one token; it gives neither the number of
spec steps nor a histogram (:func:`_llamacpp`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from specviz.errors import SpecvizError
from specviz.serve.metrics import acceptance_histogram


class ProtocolError(SpecvizError):
    """A server answered something that is not a chat completion (malformed JSON or fields)."""


@dataclass(frozen=True)
class ServerSpec:
    """One request's speculative figures as a server reported them (``source``: vllm | sglang
    | llama.cpp).

    ``drafted`` is None when the server gives neither the count nor a rate it can be derived
    from; the per-step lists only come with vLLM's ``detailed`` level. ``steps`` (spec steps)
    and ``spec_tokens`` (the longest draft) are None when the server does not report them
    (llama.cpp), and ``histogram`` is then empty.
    """

    source: str
    histogram: tuple[int, ...]
    steps: int | None
    accepted: int
    drafted: int | None
    spec_tokens: int | None
    per_step_accepted: tuple[int, ...] | None = None
    per_step_drafted: tuple[int, ...] | None = None

    def __add__(self, other: ServerSpec) -> ServerSpec:
        """Two turns of one conversation."""
        width = max(len(self.histogram), len(other.histogram))
        pad = [*self.histogram, *[0] * (width - len(self.histogram))]
        hist = tuple(a + b for a, b in zip(pad, [*other.histogram, *[0] * width], strict=False))
        both = self.per_step_accepted is not None and other.per_step_accepted is not None
        return ServerSpec(
            self.source,
            hist,
            _add(self.steps, other.steps),
            self.accepted + other.accepted,
            _add(self.drafted, other.drafted),
            None
            if self.spec_tokens is None or other.spec_tokens is None
            else max(self.spec_tokens, other.spec_tokens),
            (self.per_step_accepted or ()) + (other.per_step_accepted or ()) if both else None,
            (self.per_step_drafted or ()) + (other.per_step_drafted or ()) if both else None,
        )


def _add(a: int | None, b: int | None) -> int | None:
    """The sum of two counts, unknown (None) when either is."""
    return None if a is None or b is None else a + b


def sse_data(line: str) -> str | None:
    """The payload of one ``data:`` line of an event stream (None for other lines)."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def load_json(text: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        shown = text[:60] + ("..." if len(text) > 60 else "")
        raise ProtocolError(f"{where} sent malformed JSON ({err.msg}): {shown!r}") from err
    if not isinstance(obj, dict):
        raise ProtocolError(f"{where} sent JSON that is not an object: {text[:60]!r}")
    return obj


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, dict):  # an early vLLM draft: {"0": 39, "1": 1, "3": 3}
        try:
            width = max((int(k) for k in value), default=-1) + 1
            return tuple(int(value.get(str(j), 0)) for j in range(width))
        except (TypeError, ValueError) as err:
            raise ProtocolError(f"{what} is not a histogram: {value!r}") from err
    if not isinstance(value, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value
    ):
        raise ProtocolError(f"{what} is not a list of counts: {value!r}")
    return tuple(value)


def _int(block: dict[str, Any], key: str, what: str) -> int | None:
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProtocolError(f"{what}.{key} is not a count: {value!r}")
    return int(value)


def _vllm(block: dict[str, Any]) -> ServerSpec:
    what = "metrics.speculative_decoding"
    if not isinstance(block, dict):
        raise ProtocolError(f"{what} is not an object: {block!r}")
    per_acc = block.get("per_step_accepted")
    per_draft = block.get("per_step_drafted")
    acc_steps = _ints(per_acc, f"{what}.per_step_accepted") if per_acc is not None else None
    draft_steps = _ints(per_draft, f"{what}.per_step_drafted") if per_draft is not None else None
    spec_tokens = _int(block, "num_spec_tokens", what) or 0
    if "acceptance_histogram" in block:
        hist = _ints(block["acceptance_histogram"], f"{what}.acceptance_histogram")
    elif acc_steps is not None:
        hist = tuple(acceptance_histogram(acc_steps, spec_tokens))
    else:
        raise ProtocolError(f"{what} has no acceptance_histogram")
    steps = _int(block, "num_spec_steps", what)
    accepted = _int(block, "num_accepted_draft_tokens", what)
    return ServerSpec(
        "vllm",
        hist,
        sum(hist) if steps is None else steps,
        sum(j * h for j, h in enumerate(hist)) if accepted is None else accepted,
        _int(block, "num_draft_tokens", what),
        max(spec_tokens, len(hist) - 1),
        acc_steps,
        draft_steps,
    )


SGLANG_KEYS = ("spec_accept_histogram", "spec_correct_drafts_histogram", "spec_verify_ct")


def _sglang(block: dict[str, Any]) -> ServerSpec:
    what = "SGLang spec fields"
    raw = block.get("spec_accept_histogram", block.get("spec_correct_drafts_histogram"))
    hist = _ints(raw, f"{what} histogram") if raw is not None else None
    steps = _int(block, "spec_verify_ct", what)
    if steps is None:
        steps = sum(hist) if hist is not None else 0
    accepted = _int(block, "spec_num_correct_drafts", what)
    if accepted is None and hist is not None:
        accepted = sum(j * h for j, h in enumerate(hist))
    drafted = _int(block, "spec_num_proposed_drafts", what)
    rate = block.get("spec_accept_rate")
    if drafted is None and accepted and isinstance(rate, int | float) and rate > 0:
        drafted = round(accepted / rate)
    hist = hist or ()
    return ServerSpec(
        "sglang", hist, steps, accepted or 0, drafted, max(len(hist) - 1, 0), None, None
    )


LLAMACPP_MARK = "predicted_n"  # a key every llama-server ``timings`` object carries


def _llamacpp(timings: dict[str, Any]) -> ServerSpec:
    """llama.cpp's ``timings``: ``draft_n`` -> drafted, ``draft_n_accepted`` -> accepted.

    ``llama-server`` (server-common.cpp, ``server_slot_stats::to_json``) writes the two keys only
    when the request drafted at least one token, so a ``timings`` object without them is a
    request that drafted nothing: zero, not unknown. It counts its verification steps
    (``n_draft_verif_steps``) but does not put them in a response (only server-wide, in the
    Prometheus counter ``llamacpp:spec_decode_num_drafts_total`` of ``--metrics``), so
    ``steps``, the histogram and the longest draft are unknown.
    """
    what = "llama.cpp timings"
    drafted = _int(timings, "draft_n", what) or 0
    accepted = _int(timings, "draft_n_accepted", what) or 0
    if accepted > drafted:
        raise ProtocolError(f"{what}: draft_n_accepted {accepted} is more than draft_n {drafted}")
    return ServerSpec("llama.cpp", (), None, accepted, drafted, None)


def server_spec(obj: dict[str, Any]) -> ServerSpec | None:
    """The speculative figures in one response object or stream chunk, or None when it has
    none. Raises ProtocolError for figures of the wrong shape."""
    metrics = obj.get("metrics")
    if isinstance(metrics, dict) and "speculative_decoding" in metrics:
        return _vllm(metrics["speculative_decoding"])
    for choice in obj.get("choices") or []:
        if isinstance(choice, dict) and "speculative_decoding_stats" in choice:
            return _vllm(choice["speculative_decoding_stats"])
    for block in (obj, obj.get("meta_info"), obj.get("sglext"), obj.get("usage")):
        if isinstance(block, dict) and any(k in block for k in SGLANG_KEYS):
            return _sglang(block)
    timings = obj.get("timings")
    if isinstance(timings, dict) and LLAMACPP_MARK in timings:
        return _llamacpp(timings)
    return None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


def usage_of(obj: dict[str, Any]) -> Usage | None:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(_int(usage, "prompt_tokens", "usage"), _int(usage, "completion_tokens", "usage"))


def delta_text(obj: dict[str, Any]) -> tuple[str, str | None]:
    """(content, finish_reason) of a stream chunk's first choice."""
    choices = obj.get("choices")
    if not isinstance(choices, list):
        raise ProtocolError(f"a stream chunk has no choices list: {str(obj)[:80]!r}")
    if not choices:
        return "", None
    choice = choices[0]
    if not isinstance(choice, dict):  # not a chat completion: said, not an AttributeError
        raise ProtocolError(f"a stream chunk's choice is not an object: {str(choice)[:80]!r}")
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise ProtocolError(f"a stream chunk's content is not text: {content!r}")
    return content or "", choice.get("finish_reason")


def message_text(obj: dict[str, Any]) -> tuple[str, str | None]:
    """(content, finish_reason) of a full response's first choice."""
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProtocolError(f"the response has no choices: {str(obj)[:80]!r}")
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if content is not None and not isinstance(content, str):
        raise ProtocolError(f"the response's content is not text: {content!r}")
    return content or "", choices[0].get("finish_reason")
