"""The drafter contract: propose up to k tokens, then hear how many the target kept.

Modelled on transformers' ``CandidateGenerator`` (``get_candidates`` /
``update_candidate_strategy``), without its config mutation or type switches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


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
