"""specviz's batch-size-1 engine as a chat-completions backend: one turn per request.

A request's ``messages`` are encoded with the target's chat template (:func:`specviz.chat.encode`,
exactly as an in-process run encodes a turn), decoded by :meth:`specviz.engine.Decoder.decode_turn`
and handed out one :class:`Piece` per target forward pass (the text its round added), then a
:class:`Done` with the turn's spec steps (:mod:`specviz.serve.metrics`). Requests queue: one
worker thread decodes them one after another in arrival order (batch size 1), so the policy's
state that crosses requests sees the server's arrival order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from specviz.chat import encode
from specviz.config import RunConfig, SamplingConfig
from specviz.drafter_factory import build_drafter
from specviz.engine import Decoder
from specviz.errors import SpecvizError
from specviz.forward import new_cache
from specviz.models import LoadedModel, ModelCache
from specviz.policies import DraftPolicy, build_policy
from specviz.records import Round, TurnEnd
from specviz.serve.metrics import SpecSteps

#: the task of a request that names none (``metadata.task`` unset)
DEFAULT_TASK = "chat"


class RequestError(SpecvizError):
    """A chat-completions request the engine cannot decode (the server answers 400)."""


@dataclass(frozen=True)
class TurnRequest:
    """What one chat completion asks: the conversation, its budget and sampling."""

    messages: tuple[tuple[str, str], ...]  # (role, content)
    max_tokens: int
    sampling: SamplingConfig
    seed: int
    category: str = DEFAULT_TASK  # metadata.task: the policy's per-task state follows it


@dataclass(frozen=True)
class Piece:
    """Text one target forward pass added (may be empty while a character is incomplete)."""

    text: str
    tokens: int


@dataclass(frozen=True)
class Done:
    """The turn ended: why (``stop`` or ``length``, OpenAI's names), token counts and steps."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    text: str
    steps: SpecSteps


def _policy(config: RunConfig, models: ModelCache) -> DraftPolicy:
    """The server's policy; a cost-aware one without a cost model is calibrated at start-up."""
    label = config.drafter.label
    wants_costs = config.policy.kind == "cost-aware" and config.policy.cost_model is None
    if not wants_costs or config.drafter.kind == "none":
        return build_policy(config.policy, drafter=label)
    from specviz.calibrate import calibrate

    return build_policy(config.policy, calibrate(config, models), drafter=label)


class ServeEngine:
    """The loaded target, drafter and policy behind a server; :meth:`complete` decodes a turn."""

    def __init__(self, config: RunConfig, models: ModelCache | None = None) -> None:
        models = models or ModelCache()
        self.config = config
        self.target: LoadedModel = models.get(config.target)
        cache = new_cache(self.target.model)
        generator = torch.Generator(device=self.target.device)
        drafter = build_drafter(
            config.drafter, self.target, cache, config.sampling, generator, models
        )
        self.speculative = drafter is not None
        policy = _policy(config, models)
        self._decoders: dict[tuple[int, SamplingConfig], Decoder] = {}
        self._parts = (drafter, policy, cache, generator)
        self.lock = threading.Lock()  # one request decodes at a time (batch size 1)

    def _decoder(self, max_tokens: int, sampling: SamplingConfig) -> Decoder:
        key = (max_tokens, sampling)
        if key not in self._decoders:
            drafter, policy, cache, generator = self._parts
            self._decoders[key] = Decoder(
                self.target, drafter, policy, sampling, max_tokens, cache, generator
            )
        return self._decoders[key]

    def encode(self, request: TurnRequest) -> list[int]:
        """The prompt's token ids; refuses one the context window cannot hold."""
        messages = [{"role": role, "content": content} for role, content in request.messages]
        ids = encode(self.target.tokenizer, messages)
        window = self.target.context_window
        if window is not None and len(ids) >= window:
            raise RequestError(
                f"the prompt is {len(ids)} tokens, longer than the model's context window of "
                f"{window}"
            )
        return ids

    def complete(self, request: TurnRequest) -> Iterator[Piece | Done]:
        """Decode one turn (call it holding :attr:`lock`): a piece per round, then done."""
        ids = self.encode(request)
        decoder = self._decoder(request.max_tokens, request.sampling)
        tokenizer = self.target.tokenizer
        generated: list[int] = []
        sent = ""
        accepted: list[int] = []
        drafted: list[int] = []
        for record in decoder.decode_turn(ids, request.seed, request.category):
            if isinstance(record, Round):
                if not record.prefill and record.draft:
                    accepted.append(record.n_accepted)
                    drafted.append(len(record.draft))
                generated += record.target[: record.n_emitted]
                text = tokenizer.decode(generated, skip_special_tokens=True)
                delta = ""
                if text.startswith(sent) and not text.endswith("\ufffd"):
                    delta, sent = text[len(sent) :], text
                yield Piece(delta, record.n_emitted)
            elif isinstance(record, TurnEnd):
                rest = record.text[len(sent) :] if record.text.startswith(sent) else ""
                if rest:
                    yield Piece(rest, 0)
                k = max([self.config.policy.k if self.speculative else 0, *drafted])
                yield Done(
                    "stop" if record.finish == "eos" else "length",
                    len(ids),
                    len(record.tokens),
                    record.text,
                    SpecSteps(tuple(accepted), tuple(drafted), k),
                )
