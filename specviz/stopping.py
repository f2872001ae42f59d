"""Stop rules: when a drafter stops drafting early, judged on its draft distribution q.

A policy with a stop rule (:mod:`specviz.policies`) hands it to the drafter, which stops before
a token whose q the rule rejects (:func:`specviz.drafters.base.draft_one`); the round then
verifies what was drafted so far. Only drafters with a distribution (a draft model, layer-skip,
component-skip) can stop this way.

- :class:`ConfidenceBelow`: stop when the top draft probability ``max q < threshold``
  (transformers' ``assistant_confidence_threshold``; a confidence rule as in SpecDec++).
- :class:`EntropyAbove`: stop when ``sqrt(H(q)) > threshold``, H the entropy of q in nats (SVIP,
  Zhang et al. 2024, "Draft Model Knows When to Stop"): SVIP bounds a drafted token's
  acceptance from below by a decreasing function of sqrt(H(q)), so a high-entropy token is
  where the draft is likely to be rejected. ``threshold`` is SVIP's h.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class StopRule(Protocol):
    def stops(self, q: torch.Tensor) -> bool:
        """Whether to stop before drafting from the draft distribution ``q`` (1-D)."""
        ...


@dataclass(frozen=True)
class ConfidenceBelow:
    threshold: float

    def stops(self, q: torch.Tensor) -> bool:
        return float(q.max()) < self.threshold


@dataclass(frozen=True)
class EntropyAbove:
    threshold: float

    def stops(self, q: torch.Tensor) -> bool:
        return entropy(q) ** 0.5 > self.threshold


def entropy(q: torch.Tensor) -> float:
    """H(q) = -sum_x q(x) ln q(x), in nats (0 ln 0 = 0)."""
    q = q.double()
    return float(-(q * torch.log(q.clamp_min(1e-300))).sum())
