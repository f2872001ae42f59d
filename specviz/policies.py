"""Draft-length policies: how many tokens to draft in the next round.

- :class:`Constant`: always k.
- :class:`Heuristic`: transformers' ``num_assistant_tokens_schedule="heuristic"``: k += 2 after a
  round in which every drafted token was accepted, else k -= 1 (minimum 1). With
  ``persistent=True`` the value carries over from one request to the next (as transformers keeps
  it across ``generate()`` calls with one assistant): in a mixed-task stream, k learned on one task
  is applied to the next. ``persistent=False`` resets it at every request ("heuristic_transient").
- :class:`Stopping`: up to k, and the drafter stops early: ``confidence`` once its top
  probability falls below ``threshold`` (transformers' ``assistant_confidence_threshold``),
  ``svip`` once sqrt of its entropy exceeds ``threshold`` (SVIP, Zhang et al. 2024;
  :mod:`specviz.stopping`).
- :class:`HeuristicPerTask`: the heuristic with one k per task label (the request's category):
  what a task learned is applied to that task's next request only.
- :class:`CostAware`: each round the k in 0..k_max maximising expected tokens per unit of cost,
  from a cautious per-task acceptance estimate and a :class:`specviz.cost.CostModel`; k = 0 (no
  drafting) when drafting does not pay. With a drafter that costs nothing to ask (prompt lookup,
  the suffix cache) it *shadows*: in a round at k = 0 the drafter still proposes one token, which
  is not verified but compared with the token the target emits, so the policy keeps learning
  whether drafting would pay without paying for it.

Every policy hears ``start_request(task)`` at each request and ``update(k, n_drafted,
n_accepted)`` after every verify round of a drafter (k = the k it asked for, 0 included; in a
shadowed round ``n_drafted`` = 1 if the drafter had a proposal and ``n_accepted`` = 1 if it was
the target's token, see :func:`heard`), so a resumed run rebuilds its state by replaying the
recorded rounds (:mod:`specviz.replay`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from specviz.config import ConfigError, PolicyConfig
from specviz.cost import CostModel
from specviz.stopping import ConfidenceBelow, EntropyAbove, StopRule


class DraftPolicy(Protocol):
    """What the decoder asks of a policy. A policy subclasses it and overrides only what it
    changes; the defaults: nothing to reset at a request, no early stop, no shadowing, nothing
    learnt from a round."""

    name: str

    def start_request(self, task: str) -> None:
        """A request of task ``task`` (its category) begins."""
        return None

    def next_k(self) -> int: ...

    @property
    def stop_rule(self) -> StopRule | None:
        """When the drafter stops early (:mod:`specviz.stopping`); None: it drafts all k."""
        return None

    @property
    def shadows(self) -> bool:
        """Whether a round at k = 0 should still ask the drafter for one unverified token."""
        return False

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        """A verify round asked for ``k`` drafts; ``n_accepted`` of ``n_drafted`` were accepted."""
        return None


@dataclass
class Constant(DraftPolicy):
    k: int
    name: str = "constant"

    def next_k(self) -> int:
        return self.k


@dataclass
class Heuristic(DraftPolicy):
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

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        self.k = heuristic_step(self.k, k, n_accepted)


def heuristic_step(current: int, asked: int, n_accepted: int) -> int:
    """transformers: ``if num_matches == num_assistant_tokens: += 2 else: max(1, -= 1)``."""
    return current + 2 if n_accepted == asked else max(1, current - 1)


@dataclass
class HeuristicPerTask(DraftPolicy):
    """The heuristic schedule with one k per task; a task unseen so far starts at ``k0``."""

    k0: int
    ks: dict[str, int] = field(default_factory=dict)
    task: str = ""
    name: str = "heuristic-per-task"

    def start_request(self, task: str) -> None:
        self.task = task

    def next_k(self) -> int:
        return self.ks.get(self.task, self.k0)

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        self.ks[self.task] = heuristic_step(self.next_k(), k, n_accepted)


@dataclass
class Stopping(Constant):
    """A constant k whose drafts stop early where ``rule`` says (the drafter does the stopping):
    ``confidence`` (:class:`~specviz.stopping.ConfidenceBelow`) or ``svip``
    (:class:`~specviz.stopping.EntropyAbove`)."""

    rule: StopRule = field(default_factory=lambda: ConfidenceBelow(0.4))
    name: str = "confidence"

    @property
    def stop_rule(self) -> StopRule | None:
        return self.rule


def expected_tokens(k: int, alpha: float) -> float:
    """Tokens one verify round emits with k drafts of per-token acceptance ``alpha``:
    sum_{i=0..k} alpha^i = (1 - alpha^(k+1)) / (1 - alpha) (Leviathan et al. 2023)."""
    return sum(alpha**i for i in range(k + 1))


def heard(
    n_drafted: int, n_accepted: int, shadow: int | None, emitted: int | None
) -> tuple[int, int]:
    """What a policy hears of one verify round: ``(n_drafted, n_accepted)``.

    A round that drafted reports its own counts. A shadowed round (k = 0, the drafter's
    unverified token ``shadow``) reports its one would-be draft: ``(1, 1)`` if it equals the
    token the target ``emitted``, else ``(1, 0)``. The decoder and the resume replay
    (:mod:`specviz.replay`) both call this, so a resumed policy hears what it heard live.
    """
    if shadow is None:
        return n_drafted, n_accepted
    return 1, int(shadow == emitted)


@dataclass
class _Belief:
    """Decayed counts of accepted and rejected drafted tokens of one task."""

    accepted: float = 0.0
    rejected: float = 0.0
    idle_rounds: int = 0  # consecutive rounds at k = 0 (probing without shadows)
    failed_probes: int = 0  # probes in a row that accepted nothing

    def observe(self, n_drafted: int, n_accepted: int, decay: float) -> None:
        """One round's verdict: its accepted drafts, and its rejection if it had one."""
        self.accepted = decay * self.accepted + n_accepted
        self.rejected = decay * self.rejected + (1.0 if n_accepted < n_drafted else 0.0)


# z of the 25th percentile of a normal: the cautious estimate is the belief's lower quartile
CAUTION_Z = 0.674
# a drafter whose one-token proposal costs at most this share of a one-row verify is free to ask
FREE_DRAFT_SHARE = 0.01
# Probing backs off by doubling after each probe in a row that accepted nothing, at most this
# many doublings: the wait stops growing at probe_every * 2**6 (1024 rounds at the default 16),
# so a task whose acceptance changes is probed again within a few long requests, while a task
# where drafting never pays spends under 0.1% of its rounds probing.
MAX_PROBE_BACKOFF_DOUBLINGS = 6


@dataclass
class CostAware(DraftPolicy):
    """Pick k in 0..``k_max`` maximising expected tokens per cost, per task.

    Acceptance: a Beta(``prior``) belief per task over the per-token acceptance alpha, updated
    each round with the accepted drafts and the rejection (if any) of the round, the past counts
    multiplied by ``decay`` first (a running estimate). The prior Beta(0.5, 2) (mean 0.2, the
    weight of 2.5 tokens) assumes a task accepts little until it shows otherwise. Decisions use
    a cautious alpha, the belief's lower quartile (mean - 0.674 sd, the normal approximation,
    at least 0), so k grows only on evidence: each round
    ``k* = argmax_k E[tokens | k, alpha] / (draft_cost(k) + verify_cost(k + 1))`` with
    ``E[tokens | k, alpha] = sum_{i=0..k} alpha^i`` and ``draft_cost(0) = 0``; ties go to the
    smaller k.

    Learning at k = 0: with a drafter free to ask (drafting one token costs at most 1% of a
    one-row verify: prompt lookup, the suffix cache) the policy :attr:`shadows`: the decoder
    asks the drafter for one token it does not verify, and the policy hears whether it was the
    token the target emitted (:func:`heard`), so a task where drafting does not pay is watched
    at no cost. Otherwise it probes: after ``probe_every * 2^f`` rounds in a row at k = 0 (f =
    the task's probes in a row that accepted nothing, at most
    :data:`MAX_PROBE_BACKOFF_DOUBLINGS`) the task drafts once with the best k >= 1.

    Costs come from the one cost model (:class:`specviz.cost.CostModel`): ``costs.draft(drafter,
    k)`` and ``costs.verify(k + 1)``, the curves cost accounting prices rounds with.
    Deterministic given the rounds it hears.
    """

    k_max: int
    costs: CostModel
    drafter: str
    prior: tuple[float, float] = (0.5, 2.0)
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

    @property
    def shadows(self) -> bool:
        return self.draft_cost(1) <= FREE_DRAFT_SHARE * self.verify_cost(1)

    def _belief(self) -> tuple[float, float]:
        """The current task's Beta parameters (prior + decayed counts)."""
        b = self.beliefs.get(self.task, _Belief())
        return self.prior[0] + b.accepted, self.prior[1] + b.rejected

    def alpha(self) -> float:
        """Posterior mean acceptance of the current task."""
        a, b = self._belief()
        return a / (a + b)

    def cautious_alpha(self) -> float:
        """The belief's lower quartile: mean - 0.674 sd (Beta sd = sqrt(ab / ((a+b)^2 (a+b+1))))."""
        a, b = self._belief()
        sd = (a * b / ((a + b) ** 2 * (a + b + 1))) ** 0.5
        return max(0.0, a / (a + b) - CAUTION_Z * sd)

    def rate(self, k: int, alpha: float) -> float:
        """Expected tokens per unit cost of a round drafting k tokens."""
        return expected_tokens(k, alpha) / (self.draft_cost(k) + self.verify_cost(k + 1))

    def best_k(self, lowest: int) -> int:
        alpha = self.cautious_alpha()
        return max(range(lowest, self.k_max + 1), key=lambda k: (self.rate(k, alpha), -k))

    def _probing(self, b: _Belief) -> bool:
        return not self.shadows and b.idle_rounds >= self.probe_every * 2 ** min(
            b.failed_probes, MAX_PROBE_BACKOFF_DOUBLINGS
        )

    def next_k(self) -> int:
        b = self.beliefs.get(self.task, _Belief())
        return self.best_k(1 if self._probing(b) else 0)

    def update(self, k: int, n_drafted: int, n_accepted: int) -> None:
        b = self.beliefs.setdefault(self.task, _Belief())
        if not self.shadows:
            if k == 0:
                b.idle_rounds += 1
                return
            if self._probing(b):
                b.failed_probes = b.failed_probes + 1 if n_accepted == 0 else 0
            elif n_accepted > 0:
                b.failed_probes = 0
            b.idle_rounds = 0
        if n_drafted > 0:  # a drafter with nothing to propose says nothing about alpha
            b.observe(n_drafted, n_accepted, self.decay)


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
    if config.kind == "svip":
        return Stopping(config.k, "svip", EntropyAbove(config.threshold))
    return Stopping(config.k, "confidence", ConfidenceBelow(config.threshold))
