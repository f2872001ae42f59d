"""What the study's answer leads with, in numbers: which term leads, and which tuning losses go
on their own line; :mod:`specviz.report.answer` writes the sentences, nothing here does.

- :func:`lead`: the largest *named* multitask finding (:data:`HEADLINE_TERMS` but the
  residual, by its share of single-task decode time) among the drafted streams, ties broken by stream
  order, then term order; the residual leads only when no named term is a finding. The residual
  is what the decomposition leaves unexplained: for a policy or drafter that carries state
  across requests without its own control in the study (the cost-aware policy's learned beliefs,
  a shared memory under a policy other than the constant one), it holds that state's cross-task
  effect, so a larger residual says less about what to change than a smaller named term. Without
  a finding, no multitask term is established and the lead is the stream with the largest
  multitask extra time. Tuning is never the lead: a badly chosen global k costs single-task
  serving too, so it is not what multitasking costs.
- :func:`tuning_loss`: a drafted stream whose k is established as worse than the best single k
  for its tasks (a positive tuning finding), and whether that k is every task's best k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from specviz.metrics.answer import FINDING, NOISE, Term
from specviz.metrics.degradation import MULTITASK_TERMS
from specviz.metrics.speedup import BASELINE

# the terms a lead may name: the multitask terms and the drafter-memory term
HEADLINE_TERMS = (*MULTITASK_TERMS, "drafter_memory")
#: the unexplained remainder: leads only when no named term is a finding
RESIDUAL = "residual"


@dataclass(frozen=True)
class StreamTerms:
    """What the lead and the tuning line read of one stream: its drafter (the baseline is never
    a lead), its classified terms in the answer's order, the sum of its multitask terms
    (``multitask_pct``, :class:`~specviz.metrics.answer.StreamFigures`), the best single k for
    its tasks (``best_single_k`` as the degradation row gives it: a number, or a note when none
    was measured) and the distinct best k of its tasks."""

    drafter: str
    terms: tuple[Term, ...]
    multitask_pct: float | None
    best_single_k: str
    every_task_best_k: tuple[int, ...]


@dataclass(frozen=True)
class Lead:
    """The answer's lead. ``stream``: the index of the stream it names among those given;
    ``term``: the index of the leading finding among that stream's terms, None when no
    multitask term is established (the lead is then the stream's multitask extra time, ``part``
    ``total``); ``status``: :data:`~specviz.metrics.answer.FINDING` or
    :data:`~specviz.metrics.answer.NOISE`; ``pct``: the lead's figure, percent of single-task
    time."""

    stream: int
    term: int | None
    status: str
    part: str
    pct: float | None


def lead(streams: Sequence[StreamTerms]) -> Lead | None:
    """The :class:`Lead` among ``streams`` (module docstring); None without a drafted stream.
    Shares are compared rounded to 1e-6 so that ties do not depend on summation order."""
    drafted = [i for i, s in enumerate(streams) if s.drafter != BASELINE]
    if not drafted:
        return None
    findings = [
        (t.part != RESIDUAL, round(abs(t.pct or 0.0), 6), -i, -j)
        for i in drafted
        for j, t in enumerate(streams[i].terms)
        if t.status == FINDING and t.part in HEADLINE_TERMS
    ]
    if findings:
        _, _, i, j = max(findings)
        term = streams[-i].terms[-j]
        return Lead(-i, -j, FINDING, term.part, term.pct)
    i = max(drafted, key=lambda i: abs(streams[i].multitask_pct or 0.0))
    return Lead(i, None, NOISE, "total", streams[i].multitask_pct)


@dataclass(frozen=True)
class TuningLoss:
    """A tuning loss of one stream: its tuning ``term`` (a positive finding) and whether the
    best single k is every task's best k (``every_task``), or only the best for the tasks
    together."""

    term: Term
    every_task: bool


def tuning_loss(stream: StreamTerms) -> TuningLoss | None:
    """The stream's :class:`TuningLoss`; None for the baseline or when its tuning term is not
    a positive finding."""
    term = next(t for t in stream.terms if t.part == "tuning")
    if stream.drafter == BASELINE or term.status != FINDING or (term.pct or 0.0) <= 0:
        return None
    single = stream.best_single_k
    every = single.isdigit() and stream.every_task_best_k == (int(single),)
    return TuningLoss(term, every)
