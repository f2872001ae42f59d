"""Draft-length policies: how many tokens to draft in the next round.

- :class:`Constant`: always k.
- :class:`Heuristic`: transformers' ``num_assistant_tokens_schedule="heuristic"``: k += 2 after a
  round in which every drafted token was accepted, else k -= 1 (minimum 1). With
  ``persistent=True`` the value carries over from one request to the next (as transformers keeps
  it across ``generate()`` calls with one assistant): in a mixed-task stream, k learned on one task
  is applied to the next. ``persistent=False`` resets it at every request ("heuristic_transient").
- :class:`Confidence`: up to k, and the drafter stops early once its top probability falls below
  ``threshold`` (transformers' ``assistant_confidence_threshold``).
- :class:`HeuristicPerTask`: the heuristic with one k per task label (the request's category):
  what a task learned is applied to that task's next request only.
- :class:`CostAware`: each round the k in 0..k_max maximising expected tokens per unit of cost,
  from a running per-task acceptance estimate and a :class:`specviz.cost.CostModel`; k = 0 (no
  drafting) when drafting does not pay.

Every policy hears ``start_request(task)`` at each request and ``update(k, n_drafted,
n_accepted)`` after every verify round of a drafter (k = the k it asked for, 0 included), so a
resumed run rebuilds its state by replaying the recorded rounds (:mod:`specviz.runner`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from specviz.config import ConfigError, PolicyConfig
from specviz.cost import CostModel


class DraftPolicy(Protocol):
    name: str

    def start_request(self, task: str) -> None: ...

    def next_k(self) -> int: ...

    @property
    def min_confidence(self) -> float | None: ...

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None: ...


@dataclass
class Constant:
    k: int
    name: str = "constant"

    def start_request(self, task: str) -> None:
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

    def start_request(self, task: str) -> None:
        if not self.persistent:
            self.k = self.k0

    def next_k(self) -> int:
        return self.k

    @property
    def min_confidence(self) -> float | None:
        return None

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        self.k = heuristic_step(self.k, k, n_accepted)


def heuristic_step(current: int, asked: int, n_accepted: int) -> int:
    """transformers: ``if num_matches == num_assistant_tokens: += 2 else: max(1, -= 1)``."""
    return current + 2 if n_accepted == asked else max(1, current - 1)


@dataclass
class HeuristicPerTask:
    """The heuristic schedule with one k per task; a task unseen so far starts at ``k0``."""

    k0: int
    ks: dict[str, int] = field(default_factory=dict)
    task: str = ""
    name: str = "heuristic-per-task"

    def start_request(self, task: str) -> None:
        self.task = task

    def next_k(self) -> int:
        return self.ks.get(self.task, self.k0)

    @property
    def min_confidence(self) -> float | None:
        return None

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        self.ks[self.task] = heuristic_step(self.next_k(), k, n_accepted)


@dataclass
class Confidence(Constant):
    """A constant k whose drafts stop early below ``threshold`` (the drafter does the stopping)."""

    threshold: float = 0.4
    name: str = "confidence"

    @property
    def min_confidence(self) -> float | None:
        return self.threshold


def expected_tokens(k: int, alpha: float) -> float:
    """Tokens one verify round emits with k drafts of per-token acceptance ``alpha``:
    sum_{i=0..k} alpha^i = (1 - alpha^(k+1)) / (1 - alpha) (Leviathan et al. 2023)."""
    return sum(alpha**i for i in range(k + 1))


@dataclass
class _Belief:
    """Decayed counts of accepted and rejected drafted tokens of one task."""

    accepted: float = 0.0
    rejected: float = 0.0
    idle_rounds: int = 0  # consecutive rounds at k = 0
    failed_probes: int = 0  # probes in a row that accepted nothing


@dataclass
class CostAware:
    """Pick k in 0..``k_max`` maximising expected tokens per cost, per task.

    Acceptance: a Beta(``prior``) belief per task over the per-token acceptance alpha, updated
    each round with the accepted drafts and the rejection (if any) of the round, the past counts
    multiplied by ``decay`` first (a running estimate); alpha = its posterior mean. Each round:
    ``k* = argmax_k E[tokens | k, alpha] / (draft_cost(k) + verify_cost(k + 1))`` with
    ``draft_cost(0) = 0``; ties go to the smaller k. After ``probe_every * 2^f`` rounds in a row
    at k = 0 (f = the task's probes in a row that accepted nothing, at most 6) the task drafts
    once with the best k >= 1, so a task whose acceptance changed is seen again while probing a
    task where drafting never pays costs ever less. Costs come from the one cost model
    (:class:`specviz.cost.CostModel`): ``costs.draft(drafter, k)`` and ``costs.verify(k + 1)``,
    the same curves cost accounting prices rounds with. Deterministic given the rounds it hears.
    """

    k_max: int
    costs: CostModel
    drafter: str
    prior: tuple[float, float] = (1.0, 1.0)
    decay: float = 0.95
    probe_every: int = 16
    beliefs: dict[str, _Belief] = field(default_factory=dict)
    task: str = ""
    name: str = "cost-aware"

    def start_request(self, task: str) -> None:
        self.task = task

    def draft_cost(self, k: int) -> float:
        """Cost of drafting k tokens (0 for k = 0: the drafter is not called)."""
        return self.costs.draft(self.drafter, k) if k > 0 else 0.0

    def verify_cost(self, rows: int) -> float:
        """Cost of one target forward verifying ``rows`` tokens."""
        return self.costs.verify(rows)

    def alpha(self) -> float:
        b = self.beliefs.get(self.task, _Belief())
        a0, b0 = self.prior
        return (a0 + b.accepted) / (a0 + b0 + b.accepted + b.rejected)

    def rate(self, k: int, alpha: float) -> float:
        """Expected tokens per unit cost of a round drafting k tokens."""
        return expected_tokens(k, alpha) / (self.draft_cost(k) + self.verify_cost(k + 1))

    def best_k(self, lowest: int) -> int:
        alpha = self.alpha()
        return max(range(lowest, self.k_max + 1), key=lambda k: (self.rate(k, alpha), -k))

    def _probing(self, b: _Belief) -> bool:
        return b.idle_rounds >= self.probe_every * 2 ** min(b.failed_probes, 6)

    def next_k(self) -> int:
        b = self.beliefs.get(self.task, _Belief())
        return self.best_k(1 if self._probing(b) else 0)

    @property
    def min_confidence(self) -> float | None:
        return None

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        b = self.beliefs.setdefault(self.task, _Belief())
        if k == 0:
            b.idle_rounds += 1
            return
        if self._probing(b):
            b.failed_probes = b.failed_probes + 1 if n_accepted == 0 else 0
        elif n_accepted > 0:
            b.failed_probes = 0
        b.idle_rounds = 0
        if n_drafted == 0:  # the drafter found nothing to propose: no evidence on alpha
            return
        b.accepted = self.decay * b.accepted + n_accepted
        b.rejected = self.decay * b.rejected + (1.0 if n_accepted < n_drafted else 0.0)


def build_policy(
    config: PolicyConfig, costs: CostModel | None = None, *, drafter: str | None = None
) -> DraftPolicy:
    """The policy a config names. A cost-aware policy prices rounds with the config's
    ``cost_model``, else with ``costs`` (the runner calibrates one, :mod:`specviz.calibrate`),
    for ``drafter`` (its label in the cost model's ``draft_s``)."""
    if config.kind == "constant":
        return Constant(config.k)
    if config.kind in ("heuristic", "heuristic-per-request"):
        return Heuristic(config.k, persistent=config.kind == "heuristic")
    if config.kind == "heuristic-per-task":
        return HeuristicPerTask(config.k)
    if config.kind == "cost-aware":
        costs = config.cost_model or costs
        if costs is None or drafter is None:
            raise ConfigError("policy cost-aware needs a cost model and its drafter's name")
        return CostAware(config.k, costs, drafter)
    return Confidence(config.k, threshold=config.threshold)
