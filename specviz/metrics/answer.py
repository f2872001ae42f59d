"""What a study establishes, in numbers: typed results the report renders into sentences.

:mod:`specviz.metrics.study` assembles the study's answer from these and
:mod:`specviz.report.answer` writes its English; nothing here writes a sentence. Percentages
are of the stream's single-task reference seconds (``reference_s`` of
:func:`specviz.metrics.degradation.degradation`). The decisions built on these are their own
modules: which term leads (:mod:`specviz.metrics.lead`), what to do
(:mod:`specviz.metrics.advice`), the drafter-memory term and why a remedy has no recovered
share (:mod:`specviz.metrics.remedies`).

- :func:`classify_term`: one term of one decomposition row is a *finding* (its interval excludes
  zero), *zero by construction* (exactly zero in the estimate and every resample), *not
  measured* (no control for a term that needs one), *interval not estimable* (its bootstrap
  resamples a task with too few requests: :func:`specviz.metrics.degradation.thin_tasks_of_term`)
  or *inside the noise* (with the smallest effect the study could have detected, the interval's
  half-width);
- :func:`wall_load`: whether a stream's wall clock was taken under changing load, and
  :func:`changing_load`: for how many streams, and how far load alone moves them;
- :func:`mix_tasks`: each task's share part of the composition term, largest first;
- :func:`stream_figures`: a stream's total and multitask extra time on both clocks;
- :class:`Regime`: the dtype and verify-cost curve (T(k+1)/T(1) at the study's k) the modelled
  answer holds for, and :func:`regime_shift`: how two studies' regimes differ;
- :func:`resolved`: whether a term's 95% half-width reaches the study's target
  (``[power] target_pct``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from specviz.cost import CostModel
from specviz.metrics.degradation import MULTITASK_TERMS, ThinTask, thin_tasks_of_term

FINDING, ZERO, NOISE, UNMEASURED, NOT_ESTIMABLE = (
    "finding",
    "zero by construction",
    "inside the noise",
    "not measured",
    "interval not estimable",
)


def share_pct(value: float | None, reference: float) -> float | None:
    """``value`` as a percent of ``reference`` (None when either is missing or zero)."""
    return None if value is None or not reference else 100.0 * value / reference


@dataclass(frozen=True)
class Term:
    """What is established about one term of one stream (module docstring).

    ``pct``, ``low_pct``, ``high_pct``: the estimate and its 95% interval, percent of
    single-task decode time (bounds null when not estimable); ``detectable_pct``: inside the noise,
    the smallest effect the study could have detected; ``thin_tasks``: the tasks that make the
    interval not estimable (also listed when another status takes precedence); ``controlled``:
    the stream has a constant-policy control (a carry-over that is zero then means the carried
    state changed no round).
    """

    part: str
    status: str
    pct: float | None
    low_pct: float | None
    high_pct: float | None
    detectable_pct: float | None = None
    thin_tasks: tuple[ThinTask, ...] = ()
    controlled: bool = False

    @property
    def half_width_pct(self) -> float | None:
        """The 95% interval's half-width (0 for a term zero by construction; None without an
        interval: not measured, or not estimable)."""
        if self.status == ZERO:
            return 0.0
        if self.status in (UNMEASURED, NOT_ESTIMABLE) or None in (self.low_pct, self.high_pct):
            return None
        return (self.high_pct - self.low_pct) / 2  # type: ignore[operator]


def resolved(term: Term, target_pct: float) -> bool | None:
    """Whether ``term`` is resolved at ``target_pct``: its 95% half-width is at most the target
    (a term zero by construction is; None for a term without an interval)."""
    width = term.half_width_pct
    return None if width is None else width <= target_pct


def classify_term(row: Mapping[str, Any], part: str) -> Term:
    """Term ``part`` of a modelled :func:`~specviz.metrics.degradation.degradation` row (or any
    mapping with ``reference_s``, ``control``, ``<part>``, ``<part>_low``, ``<part>_high`` and
    optionally ``thin_tasks``), classified as the module docstring says, in this order: not
    measured, zero by construction, interval not estimable, finding, inside the noise."""
    ref = row["reference_s"]
    value, low, high = row[part], row[f"{part}_low"], row[f"{part}_high"]
    thin = thin_tasks_of_term(row, part)
    pct, low_pct, high_pct = share_pct(value, ref), share_pct(low, ref), share_pct(high, ref)
    controlled = row.get("control") == "constant"

    def term(
        status: str, bounds: tuple[float | None, float | None], detectable: float | None = None
    ) -> Term:
        return Term(part, status, pct, *bounds, detectable, thin, controlled)

    if value is None or low is None or high is None:
        return term(UNMEASURED, (low_pct, high_pct))
    if value == 0.0 and low == 0.0 and high == 0.0:
        return term(ZERO, (low_pct, high_pct))
    if thin:
        return term(NOT_ESTIMABLE, (None, None))
    if low > 0 or high < 0:
        return term(FINDING, (low_pct, high_pct))
    detectable = share_pct((high - low) / 2, ref)
    return term(NOISE, (low_pct, high_pct), detectable)


@dataclass(frozen=True)
class WallLoad:
    """Whether a stream's wall clock was taken under changing load: the request load factors
    (:func:`specviz.metrics.accounting.wall_clock_load`) shift its wall-clock extra time by
    ``shift_pct``, more than its wall-clock interval's half-width ``allowed_pct`` allows.
    ``loads``: the wall_clock_load row's multitask_load, single_task_load, min_load and
    max_load (empty without load factors)."""

    changing: bool
    shift_pct: float | None
    allowed_pct: float | None
    loads: Mapping[str, float] | None = None


def wall_load(row: Mapping[str, Any] | None, wall: Mapping[str, Any]) -> WallLoad:
    """:class:`WallLoad` of a stream from its :func:`~specviz.metrics.accounting.wall_clock_load`
    row (None: no load factors, so not changing) and its wall-clock degradation row. Without a
    wall-clock interval (not estimable: a lone task of one request) ``allowed_pct`` is None and
    any shift counts as changing: a zero-wide interval would say nothing else."""
    ref = wall["reference_s"]
    thin = thin_tasks_of_term(wall, "total")
    low, high = (None, None) if thin else (wall["total_low"], wall["total_high"])
    low, high = share_pct(low, ref), share_pct(high, ref)
    allowed = None if low is None or high is None else (high - low) / 2
    if row is None:
        return WallLoad(False, None, allowed)
    shift = 100 * row["load_shift"]
    keys = ("multitask_load", "single_task_load", "min_load", "max_load")
    return WallLoad(abs(shift) > (allowed or 0.0), shift, allowed, {k: row[k] for k in keys})


@dataclass(frozen=True)
class ChangingLoad:
    """The streams whose wall clock was taken under changing load (:class:`WallLoad`):
    ``streams`` of ``of`` streams, load alone moving their wall-clock extra time by
    ``low_pct`` to ``high_pct``."""

    streams: int
    of: int
    low_pct: float
    high_pct: float


def changing_load(loads: Sequence[WallLoad]) -> ChangingLoad | None:
    """:class:`ChangingLoad` of the streams with these loads; None when every wall clock held
    steady."""
    moved = [load.shift_pct for load in loads if load.changing and load.shift_pct is not None]
    if not moved:
        return None
    return ChangingLoad(len(moved), len(loads), min(moved), max(moved))


@dataclass(frozen=True)
class MixTask:
    """One task's share part of a stream's composition term: its ``share`` of the stream's
    tokens against its ``reference_share`` of the single-task set's, ``relative_cost`` (its
    benchmark seconds per token over the benchmark's average) and ``pct`` (its ``shares_s`` of
    :func:`specviz.metrics.degradation.composition_by_task`; > 0: it makes the mix harder)."""

    category: str
    share: float
    reference_share: float
    relative_cost: float
    pct: float | None


def mix_tasks(tasks: Sequence[Mapping[str, Any]], reference_s: float) -> list[MixTask]:
    """:class:`MixTask` of each :func:`~specviz.metrics.degradation.composition_by_task` row of
    one stream, largest ``pct`` first."""
    rows = [
        MixTask(
            category=t["category"],
            share=t["share"],
            reference_share=t["reference_share"],
            relative_cost=t["reference_spt"] / t["rate"],
            pct=share_pct(t["shares_s"], reference_s),
        )
        for t in tasks
    ]
    return sorted(rows, key=lambda r: -(r.pct or 0.0))


@dataclass(frozen=True)
class StreamFigures:
    """One multitask stream's headline figures from its modelled and wall-clock
    :func:`~specviz.metrics.degradation.degradation` rows: the total extra time and the sum of
    the multitask terms (:data:`~specviz.metrics.degradation.MULTITASK_TERMS`) in percent of
    single-task decode time, with the total's interval on each clock (null bounds and ``thin_tasks``
    when it is not estimable), throughputs, modelled over wall-clock seconds, and the distinct
    best k of its tasks."""

    total_pct: float | None
    total_low_pct: float | None
    total_high_pct: float | None
    total_thin_tasks: tuple[ThinTask, ...]
    multitask_pct: float | None
    wall_total_pct: float | None
    wall_total_low_pct: float | None
    wall_total_high_pct: float | None
    modelled_tokens_per_s: float
    wall_tokens_per_s: float
    modelled_over_wall: float | None
    every_task_best_k: tuple[int, ...]


def best_k_values(best_k: str | None) -> list[int]:
    """The k values of a degradation row's ``best_k`` text (``coding=5, writing=5``)."""
    return [int(k) for k in re.findall(r"=(-?\d+)(?:, |$)", best_k or "")]


def stream_figures(modelled: Mapping[str, Any], wall: Mapping[str, Any]) -> StreamFigures:
    """:class:`StreamFigures` of one stream from its rows on the two clocks."""
    ref, wref = modelled["reference_s"], wall["reference_s"]
    thin = thin_tasks_of_term(modelled, "total")
    low, high = (None, None) if thin else (modelled["total_low"], modelled["total_high"])
    wall_low, wall_high = (None, None) if thin else (wall["total_low"], wall["total_high"])
    multitask = sum(modelled[p] or 0.0 for p in MULTITASK_TERMS)
    return StreamFigures(
        total_pct=share_pct(modelled["total"], ref),
        total_low_pct=share_pct(low, ref),
        total_high_pct=share_pct(high, ref),
        total_thin_tasks=thin,
        multitask_pct=share_pct(multitask, ref),
        wall_total_pct=share_pct(wall["total"], wref),
        wall_total_low_pct=share_pct(wall_low, wref),
        wall_total_high_pct=share_pct(wall_high, wref),
        modelled_tokens_per_s=modelled["multitask_tokens_per_s"],
        wall_tokens_per_s=wall["multitask_tokens_per_s"],
        modelled_over_wall=(
            modelled["multitask_s"] / wall["multitask_s"] if wall["multitask_s"] else None
        ),
        every_task_best_k=tuple(sorted(set(best_k_values(modelled["best_k"])))),
    )


@dataclass(frozen=True)
class Regime:
    """What a modelled answer holds for, per target: the ``dtypes`` its runs decoded in (from
    run.json; empty when not recorded) and why (``dtype_reason``), the ``device`` (and
    ``gpu``), and the verify-cost curve at the study's k values, ``verify_ratios``: (k,
    T(k+1)/T(1)) from the cost curve calibrated over the study's rounds. The best k and every
    term that prices k (tuning, k mismatch) follow that curve: a bf16 CPU with T(6)/T(1) = 1.16
    and a float32 one with 1.45 can rightly give different answers."""

    target: str
    dtypes: tuple[str, ...]
    dtype_reason: str
    device: str
    gpu: str
    verify_ratios: tuple[tuple[int, float], ...]


def verify_ratios(model: CostModel, ks: Sequence[int]) -> tuple[tuple[int, float], ...]:
    """(k, T(k+1)/T(1)) for each distinct k >= 1 of ``ks`` (empty when T(1) is 0)."""
    base = model.verify(1)
    if base <= 0:
        return ()
    return tuple((k, model.verify(k + 1) / base) for k in sorted(set(ks)) if k >= 1)


@dataclass(frozen=True)
class RegimeShift:
    """How two studies' regimes differ for one target: the dtypes of each side (None when
    they agree) and, at each k both ran, the two verify ratios where they differ by more than
    :data:`RATIO_TOLERANCE`."""

    target: str
    dtypes: tuple[tuple[str, ...], tuple[str, ...]] | None
    ratios: tuple[tuple[int, float, float], ...]

    @property
    def moved(self) -> bool:
        return self.dtypes is not None or bool(self.ratios)


#: two verify ratios closer than this are the same curve (a calibration's own spread)
RATIO_TOLERANCE = 0.02


def regime_shift(a: Regime, b: Regime) -> RegimeShift:
    """:class:`RegimeShift` from side A's regime to side B's (same target, or the only one)."""
    dtypes = None if a.dtypes == b.dtypes else (a.dtypes, b.dtypes)
    rb = dict(b.verify_ratios)
    ratios = tuple(
        (k, ra, rb[k]) for k, ra in a.verify_ratios if k in rb and abs(rb[k] - ra) > RATIO_TOLERANCE
    )
    return RegimeShift(a.target, dtypes, ratios)
