"""The drafter contract: propose up to k tokens to follow a context.

Modelled on transformers' ``CandidateGenerator`` (``get_candidates``), without its config
mutation or type switches. A drafter hears no verdict: what the target kept is in the next
``context`` (a draft model crops its own cache against it); the policy hears the verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from specviz.config import SamplingConfig
from specviz.sampling import probabilities, sample
from specviz.stopping import StopRule


@dataclass(frozen=True)
class Proposal:
    """Drafted tokens with the draft's view of them.

    ``tokens``: 1-D ids (possibly empty); ``q``: the draft distribution at each drafted position
    (rows aligned with ``tokens``), processed by the same temperature/top-p as the target, or
    None when the drafter has no distribution (n-gram lookup); ``q_tokens``: q of each drafted
    token (None likewise).
    """

    tokens: torch.Tensor
    q: torch.Tensor | None = None
    q_tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


class Drafter(Protocol):
    """What the decoding loop needs from a drafter."""

    def start(self, context: torch.Tensor) -> None:
        """A new turn begins with ``context`` (all prompt ids); drop per-turn state."""
        ...

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        """Up to ``k`` tokens to follow ``context`` (all ids so far, last emitted included).

        ``stop``: stop before a token whose draft distribution the rule rejects
        (:mod:`specviz.stopping`; drafters without a distribution ignore it).
        """
        ...


@runtime_checkable
class LearnsAcrossRequests(Protocol):
    """A drafter whose memory crosses requests (the suffix cache): the decoder tells it which
    task each request belongs to and hands it every finished turn's output, in stream order."""

    def start_request(self, task: str) -> None:
        """A new request of task ``task`` (its category) begins."""
        ...

    def end_turn(self, tokens: Sequence[int]) -> None:
        """A turn of the current request ended with output ``tokens``."""
        ...


def draft_one(
    logits: torch.Tensor,
    sampling: SamplingConfig,
    generator: torch.Generator,
    stop: StopRule | None,
) -> tuple[int, torch.Tensor] | None:
    """One drafting step: q = the processed draft distribution of ``logits`` (temperature/top-p
    as for the target); None (stop drafting) if the ``stop`` rule rejects q; else x = argmax q
    (greedy) or a sample from q, with q."""
    q = probabilities(logits, sampling)
    if stop is not None and stop.stops(q):
        return None
    x = int(q.argmax()) if sampling.greedy else sample(q, generator)
    return x, q


def as_proposal(tokens: list[int], q_rows: list[torch.Tensor], device: torch.device) -> Proposal:
    """The proposal of drafted ``tokens`` with their draft distributions ``q_rows``."""
    drafted = torch.tensor(tokens, dtype=torch.long, device=device)
    if not tokens:
        return Proposal(drafted)
    q = torch.stack(q_rows)
    return Proposal(drafted, q, q[torch.arange(len(tokens)), drafted])


@dataclass
class Drafting:
    """One draft in progress: up to ``k`` tokens, each from :func:`draft_one`, until the cap or
    the ``stop`` rule ends it. The one stop / cap / early-exit loop of every model-based drafter,
    whether it drafts one row (:func:`draft_tokens`) or a batch's rows in lockstep
    (:class:`specviz.batch.drafters.BatchLayerSkip`)."""

    k: int
    sampling: SamplingConfig
    generator: torch.Generator
    stop: StopRule | None
    tokens: list[int] = field(default_factory=list)
    q_rows: list[torch.Tensor] = field(default_factory=list)
    done: bool = False

    def step(self, logits: torch.Tensor) -> int | None:
        """Draft one token from the draft's next-token ``logits``; return it when another token
        should follow it (the caller feeds it for the next logits), None when the draft is done
        (the last drafted token is never fed)."""
        if self.done or len(self.tokens) >= self.k:
            self.done = True
            return None
        drafted = draft_one(logits, self.sampling, self.generator, self.stop)
        if drafted is None:
            self.done = True
            return None
        self.tokens.append(drafted[0])
        self.q_rows.append(drafted[1])
        self.done = len(self.tokens) >= self.k
        return None if self.done else drafted[0]

    def proposal(self, device: torch.device) -> Proposal:
        return as_proposal(self.tokens, self.q_rows, device)


def draft_tokens(
    logits: torch.Tensor,
    feed: Callable[[int], torch.Tensor],
    k: int,
    sampling: SamplingConfig,
    generator: torch.Generator,
    stop: StopRule | None,
) -> Proposal:
    """Draft up to ``k`` tokens one at a time (:class:`Drafting`), as every model-based drafter
    does at batch size 1.

    ``logits``: the draft's next-token logits at the end of the context; ``feed(x_i)`` returns
    the logits after x_i (the last drafted token is never fed).
    """
    drafting = Drafting(k, sampling, generator, stop)
    x = drafting.step(logits)
    while x is not None:
        logits = feed(x)
        x = drafting.step(logits)
    return drafting.proposal(logits.device)
