"""ShareGPT conversations: reading the truncated file and sampling prompts the field's way.

**Reading.** The wheel's ``ShareGPT_V3_unfiltered_cleaned_split.json`` is one JSON array cut off
inside a record, so ``json.load`` fails. :func:`read_conversations` decodes the array record by
record (``json.JSONDecoder.raw_decode`` over a buffer filled in 1 MiB chunks, so a record is
decoded as soon as it is whole) and stops at the first record that does not decode: every whole
record before it is kept, and :class:`ShareGPTFile` says how many were read and whether (and at
which byte) the file ends early. Messages are ``{"from": "human"|"gpt"|"system", "value": ...}``;
``user`` counts as a human turn, ``system`` messages never pair, anything else is a reply.

**Sampling** (:func:`sample_prompts`, :class:`ShareGPTSampling`), by default as vLLM's
``benchmarks/datasets.py`` (and SGLang's ``bench_serving.py``) sample ShareGPT: conversations
with at least 2 messages, shuffled with ``random.Random(seed)`` (seed 0: the same permutation as
vLLM's ``random.seed(0); random.shuffle``), then taken in that order; the prompt is the first
human turn and the output length the token count of the reply that follows it; pairs with a
prompt or output under 4 tokens, a prompt over 1024 or prompt + output over 2048 tokens are
dropped. vLLM takes the first *message* as the prompt whatever its role; here it is the first
human turn (6,358 of the 17,671 whole records start with a reply: split conversations).

``mode = "context"`` keeps a conversation's earlier exchanges, with their recorded replies, as
:attr:`Prompt.context` and asks its last human turn (the one with a recorded reply): real chat
context is what copying drafters feed on. Its prompt length counts the context too.

The recorded reply is kept as the prompt's ``reference`` (never shown to the model), so the output
length of every sampled prompt can be recomputed. Generation is still capped by the run's
``max_new_tokens``; the recorded length selects and describes the sample.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from specviz.workloads.loaders import UNCATEGORIZED
from specviz.workloads.prompt import Prompt, WorkloadError

MODES = ("first-turn", "context")
HUMAN = frozenset({"human", "user"})
_CHUNK = 1 << 20
_SPACE = " \t\r\n"

#: Counts the tokens of a text (the target's tokenizer, no chat template, as vLLM counts).
TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Conversation:
    """One ShareGPT record: its id and its messages as (role, text)."""

    id: str
    messages: tuple[tuple[str, str], ...]

    def exchanges(self) -> list[tuple[str, str]]:
        """(human turn, the reply right after it) pairs, in order."""
        out = []
        for (role, text), (next_role, reply) in zip(self.messages, self.messages[1:], strict=False):
            is_reply = next_role not in HUMAN and next_role != "system"
            if role in HUMAN and is_reply and text.strip() and reply.strip():
                out.append((text, reply))
        return out


@dataclass(frozen=True)
class ShareGPTFile:
    """The whole records of a ShareGPT file and how its reading ended."""

    path: Path
    conversations: tuple[Conversation, ...]
    size_bytes: int
    ends_early: bool
    stop_byte: int | None = None  # where the first record that does not decode starts

    def describe(self) -> str:
        """One line: how many whole records were read and whether the file ends early."""
        read = f"{self.path.name}: {len(self.conversations):,} whole conversations read"
        if not self.ends_early:
            return read + " (the JSON array is complete)"
        return (
            f"{read}; the file ends early: the record starting at byte {self.stop_byte:,} of "
            f"{self.size_bytes:,} is cut off (or damaged) and is skipped with everything after it"
        )


def _records(path: Path, progress: bool) -> Iterator[tuple[int, Any] | int]:
    """Decoded array items with their start offsets (characters); finally, if decoding stopped
    early, the offset of the item that did not decode (an ``int``)."""
    decoder = json.JSONDecoder()
    try:
        handle = path.open(encoding="utf-8")
    except OSError as err:
        raise WorkloadError(f"{path}: cannot read it ({err.strerror or err})") from err
    size = path.stat().st_size
    with (
        handle,
        tqdm(total=size, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar,
    ):
        buf, pos, base, eof = "", 0, 0, False

        def fill() -> bool:
            nonlocal buf, pos, base, eof
            try:
                chunk = handle.read(_CHUNK)
            except UnicodeDecodeError as err:
                raise WorkloadError(
                    f"{path}: not UTF-8 text near byte {base + len(buf):,}: save the file as UTF-8"
                ) from err
            bar.update(len(chunk.encode("utf-8")))
            buf, base, pos = buf[pos:] + chunk, base + pos, 0
            eof = not chunk
            return bool(chunk)

        def skip(chars: str) -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in chars:
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        skip(_SPACE)
        if pos >= len(buf):
            raise WorkloadError(f"{path} is empty: expected a JSON array of ShareGPT conversations")
        if buf[pos] != "[":
            raise WorkloadError(
                f"{path}: not a JSON array of conversations (starts with {buf[pos : pos + 20]!r}); "
                "pass the ShareGPT .json file"
            )
        pos += 1
        while True:
            skip(_SPACE + ",")
            if pos >= len(buf):
                yield base + pos
                return
            if buf[pos] == "]":
                return
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if fill():
                        continue
                    yield base + pos
                    return
                # a number or literal at the buffer's end may continue in the next chunk
                if end == len(buf) and not eof and fill():
                    continue
                break
            yield base + pos, item
            pos = end


def _conversation(item: Any, number: int, path: Path) -> Conversation:
    where = f"{path} record {number}"
    if not isinstance(item, Mapping) or not isinstance(item.get("conversations"), list):
        raise WorkloadError(
            f"{where}: not a ShareGPT conversation (expected an object with a 'conversations' "
            "list of {'from', 'value'} messages)"
        )
    messages = []
    for message in item["conversations"]:
        if not isinstance(message, Mapping) or not isinstance(message.get("from"), str):
            raise WorkloadError(f"{where}: a message without a 'from' role")
        value = message.get("value")
        if not isinstance(value, str):
            raise WorkloadError(f"{where}: a message whose 'value' is not text")
        messages.append((message["from"], value))
    return Conversation(str(item.get("id", number)), tuple(messages))


def read_conversations(
    path: str | Path, *, limit: int | None = None, progress: bool = False
) -> ShareGPTFile:
    """Every whole record of a ShareGPT JSON array, even one cut off mid-record (see module).

    ``limit`` stops after that many records (``ends_early`` then says nothing of the rest)."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"{path} does not exist: pass a ShareGPT .json file")
    conversations: list[Conversation] = []
    stop: int | None = None
    text_offsets = False
    for entry in _records(path, progress):
        if isinstance(entry, int):
            stop, text_offsets = entry, True
            break
        conversations.append(_conversation(entry[1], len(conversations) + 1, path))
        if limit is not None and len(conversations) >= limit:
            break
    if not conversations:
        where = f" (stops at character {stop:,})" if stop is not None else ""
        raise WorkloadError(f"{path}: no whole conversation could be decoded{where}; is it JSON?")
    stop_byte = _byte_offset(path, stop) if text_offsets and stop is not None else None
    return ShareGPTFile(
        path, tuple(conversations), path.stat().st_size, stop is not None, stop_byte
    )


def _byte_offset(path: Path, chars: int) -> int:
    """Bytes of the first ``chars`` characters (they differ from characters in non-ASCII text)."""
    with path.open(encoding="utf-8") as handle:
        count = 0
        left = chars
        while left > 0:
            chunk = handle.read(min(left, _CHUNK))
            if not chunk:
                break
            count += len(chunk.encode("utf-8"))
            left -= len(chunk)
    return count


# -- sampling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareGPTSampling:
    """How prompts are drawn from the conversations (defaults: vLLM's ShareGPT convention)."""

    size: int | None = None  # None: every conversation that passes the filters
    seed: int = 0
    mode: str = "first-turn"
    min_tokens: int = 4
    max_prompt_tokens: int = 1024
    max_total_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise WorkloadError(f"sharegpt mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.size is not None and self.size < 1:
            raise WorkloadError(f"sharegpt sample size must be >= 1 (got {self.size})")

    def describe(self) -> str:
        size = "all" if self.size is None else f"{self.size}"
        return (
            f"{size} conversations with >= 2 messages, shuffled with seed {self.seed}, "
            f"{'first human turn' if self.mode == 'first-turn' else 'last human turn after its recorded context'}"
            f" as the prompt; dropped: prompt or output < {self.min_tokens} tokens, prompt > "
            f"{self.max_prompt_tokens}, prompt + output > {self.max_total_tokens}"
        )


@dataclass(frozen=True)
class Sampled:
    """One sampled prompt with its token counts (target tokenizer, no chat template)."""

    prompt: Prompt
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ShareGPTSample:
    """The sampled prompts, in sampled order, and why the others were passed over."""

    items: tuple[Sampled, ...]
    sampling: ShareGPTSampling
    dropped: Mapping[str, int] = field(default_factory=dict)

    @property
    def prompts(self) -> list[Prompt]:
        return [s.prompt for s in self.items]


def _candidate(
    conv: Conversation, mode: str
) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """(turn, recorded reply, context) of a conversation, or None without a human turn + reply."""
    pairs = conv.exchanges()
    if not pairs:
        return None
    if mode == "first-turn":
        return pairs[0][0], pairs[0][1], ()
    return pairs[-1][0], pairs[-1][1], tuple(pairs[:-1])


def sample_prompts(
    data: ShareGPTFile, sampling: ShareGPTSampling, count_tokens: TokenCounter
) -> ShareGPTSample:
    """Prompts drawn as :class:`ShareGPTSampling` says, in sampled order (see the module).

    Tokens are counted lazily, in shuffled order, until ``size`` prompts pass the filters, so a
    small sample of the 17,671 conversations tokenizes only what it looks at. Prompts are
    ``uncategorized`` (label them with :mod:`specviz.workloads.categorize`)."""
    eligible = [c for c in data.conversations if len(c.messages) >= 2]
    random.Random(sampling.seed).shuffle(eligible)
    dropped: Counter[str] = Counter(
        {"fewer than 2 messages": len(data.conversations) - len(eligible)}
    )
    items: list[Sampled] = []
    seen: set[str] = set()
    for conv in eligible:
        if sampling.size is not None and len(items) >= sampling.size:
            break
        found = _candidate(conv, sampling.mode)
        if found is None:
            dropped["no human turn with a reply"] += 1
            continue
        turn, reply, context = found
        n_prompt = count_tokens(turn) + sum(count_tokens(u) + count_tokens(a) for u, a in context)
        n_out = count_tokens(reply)
        reason = _length_filter(n_prompt, n_out, sampling)
        if reason is not None:
            dropped[reason] += 1
            continue
        pid = conv.id if conv.id not in seen else f"{conv.id}#{len(items)}"
        seen.add(pid)
        prompt = Prompt(pid, UNCATEGORIZED, (turn,), reference=(reply,), context=context)
        items.append(Sampled(prompt, n_prompt, n_out))
    if not items:
        raise WorkloadError(
            f"{data.path}: no conversation has a human turn with a reply that passes the length "
            f"filters ({', '.join(f'{k}: {v}' for k, v in sorted(dropped.items()) if v) or 'none read'})"
        )
    return ShareGPTSample(tuple(items), sampling, {k: v for k, v in dropped.items() if v})


def _length_filter(n_prompt: int, n_out: int, sampling: ShareGPTSampling) -> str | None:
    if n_prompt < sampling.min_tokens or n_out < sampling.min_tokens:
        return f"prompt or output < {sampling.min_tokens} tokens"
    if n_prompt > sampling.max_prompt_tokens:
        return f"prompt > {sampling.max_prompt_tokens} tokens"
    if n_prompt + n_out > sampling.max_total_tokens:
        return f"prompt + output > {sampling.max_total_tokens} tokens"
    return None


def first_turns(data: ShareGPTFile) -> list[tuple[str, str]]:
    """(id, first human turn) of every whole conversation that has one (labelling all traffic)."""
    out = []
    for conv in data.conversations:
        pairs = conv.exchanges()
        human = (
            pairs[0][0]
            if pairs
            else next((t for r, t in conv.messages if r in HUMAN and t.strip()), None)
        )
        if human is not None:
            out.append((conv.id, human))
    return out


def token_counter(tokenizer: Any) -> TokenCounter:
    """Token counts as vLLM takes them: ``len(tokenizer(text).input_ids)``."""

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    return count


def length_table(items: Sequence[Sampled]) -> list[dict[str, Any]]:
    """Rows (id, category, prompt_tokens, output_tokens) of a sample, for reports."""
    return [
        {
            "prompt_id": s.prompt.id,
            "category": s.prompt.category,
            "prompt_tokens": s.prompt_tokens,
            "output_tokens": s.output_tokens,
        }
        for s in items
    ]
