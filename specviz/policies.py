"""Draft-length policies: how many tokens to draft in the next round.

- :class:`Constant`: always k.
- :class:`Heuristic`: transformers' ``num_assistant_tokens_schedule="heuristic"``: k += 2 after a
  round in which every drafted token was accepted, else k -= 1 (minimum 1). With
  ``persistent=True`` the value carries over from one request to the next (as transformers keeps
  it across ``generate()`` calls with one assistant): in a mixed-task stream, k learned on one task
  is applied to the next. ``persistent=False`` resets it at every request ("heuristic_transient").
- :class:`Confidence`: up to k, and the drafter stops early once its top probability falls below
  ``threshold`` (transformers' ``assistant_confidence_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from specviz.config import PolicyConfig


class DraftPolicy(Protocol):
    name: str

    def start_request(self) -> None: ...

    def next_k(self) -> int: ...

    @property
    def min_confidence(self) -> float | None: ...

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None: ...


@dataclass
class Constant:
    k: int
    name: str = "constant"

    def start_request(self) -> None:
        return None

    def next_k(self) -> int:
        return self.k

    @property
    def min_confidence(self) -> float | None:
        return None

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        return None


@dataclass
class Heuristic:
    k0: int
    persistent: bool
    k: int = 0
    name: str = "heuristic"

    def __post_init__(self) -> None:
        self.k = self.k0
        self.name = "heuristic" if self.persistent else "heuristic-per-request"

    def start_request(self) -> None:
        if not self.persistent:
            self.k = self.k0

    def next_k(self) -> int:
        return self.k

    @property
    def min_confidence(self) -> float | None:
        return None

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        # transformers: `if num_matches == num_assistant_tokens: += 2 else: max(1, -= 1)`
        self.k = self.k + 2 if n_accepted == k else max(1, self.k - 1)


@dataclass
class Confidence(Constant):
    """A constant k whose drafts stop early below ``threshold`` (the drafter does the stopping)."""

    threshold: float = 0.4
    name: str = "confidence"

    @property
    def min_confidence(self) -> float | None:
        return self.threshold


def build_policy(config: PolicyConfig) -> DraftPolicy:
    if config.kind == "constant":
        return Constant(config.k)
    if config.kind in ("heuristic", "heuristic-per-request"):
        return Heuristic(config.k, persistent=config.kind == "heuristic")
    return Confidence(config.k, threshold=config.threshold)
