"""The drafter contract: propose up to k tokens to follow a context.

Modelled on transformers' ``CandidateGenerator`` (``get_candidates``), without its config
mutation or type switches. A drafter hears no verdict: what the target kept is in the next
``context`` (a draft model crops its own cache against it); the policy hears the verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def draft_tokens(
    logits: torch.Tensor,
    feed: Callable[[int], torch.Tensor],
    k: int,
    sampling: SamplingConfig,
    generator: torch.Generator,
    stop: StopRule | None,
) -> Proposal:
    """Draft up to ``k`` tokens one at a time (:func:`draft_one`), as every model-based drafter
    does at batch size 1.

    ``logits``: the draft's next-token logits at the end of the context; ``feed(x_i)`` returns
    the logits after x_i (the last drafted token is never fed).
    """
    tokens: list[int] = []
    rows: list[torch.Tensor] = []
    for i in range(k):
        step = draft_one(logits, sampling, generator, stop)
        if step is None:
            break
        tokens.append(step[0])
        rows.append(step[1])
        if i + 1 < k:
            logits = feed(step[0])
    return as_proposal(tokens, rows, logits.device)
