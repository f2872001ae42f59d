"""The drafter contract: propose up to k tokens, then hear how many the target kept.

Modelled on transformers' ``CandidateGenerator`` (``get_candidates`` /
``update_candidate_strategy``), without its config mutation or type switches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from specviz.config import SamplingConfig
from specviz.sampling import probabilities, sample


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

    name: str

    def start(self, context: torch.Tensor) -> None:
        """A new turn begins with ``context`` (all prompt ids); drop per-turn state."""
        ...

    def propose(self, context: torch.Tensor, k: int, min_confidence: float | None) -> Proposal:
        """Up to ``k`` tokens to follow ``context`` (all ids so far, last emitted included).

        ``min_confidence``: stop before a token whose top draft probability is below it.
        """
        ...

    def feedback(self, n_accepted: int) -> None:
        """The target kept the first ``n_accepted`` tokens of the last proposal."""
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


def draft_tokens(
    logits: torch.Tensor,
    feed: Callable[[int], torch.Tensor],
    k: int,
    sampling: SamplingConfig,
    generator: torch.Generator,
    min_confidence: float | None,
) -> Proposal:
    """Draft up to ``k`` tokens one at a time, as every model-based drafter does.

    ``logits``: the draft's next-token logits at the end of the context. For i = 1..k:
    q_i = the processed draft distribution (temperature/top-p as for the target); stop before
    x_i if max q_i < ``min_confidence``; x_i = argmax q_i (greedy) or a sample from q_i; then
    ``feed(x_i)`` returns the logits after x_i (the last drafted token is never fed).
    """
    tokens: list[int] = []
    rows: list[torch.Tensor] = []
    for i in range(k):
        q = probabilities(logits, sampling)
        if min_confidence is not None and float(q.max()) < min_confidence:
            break
        x = int(q.argmax()) if sampling.greedy else sample(q, generator)
        tokens.append(x)
        rows.append(q)
        if i + 1 < k:
            logits = feed(x)
    drafted = torch.tensor(tokens, dtype=torch.long, device=logits.device)
    if not tokens:
        return Proposal(drafted)
    q_rows = torch.stack(rows)
    return Proposal(drafted, q_rows, q_rows[torch.arange(len(tokens)), drafted])
