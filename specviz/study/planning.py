"""What a study will run, counted before anything starts: runs, requests, the token budget, a
time estimate where a cost curve is known, and the combinations it cannot run (and why); and the
power plan (:func:`power_plan`): each drafted multitask stream's expected 95% half-width per
multitask term at the planned size, from the per-task spread of a previous study or a pilot
(``--prior DIR``), and the requests that reach the study's ``[power] target_pct``
(:mod:`specviz.metrics.power` has the formula and what it assumes).

``specviz study FILE --plan`` prints it and exits; ``specviz study FILE`` prints it before it
starts and, when the study is large (more than :data:`CONFIRM_RUNS` runs or
:data:`CONFIRM_TOKENS` budgeted tokens), refuses to start without ``--yes``.

The estimate prices every budgeted token as one 1-row forward of its target (the baseline's
cost; speculative decoding needs fewer forwards, end-of-sequence stops earlier, prefills are
left out), from the study's calibrated curve ``OUT/cost_model.json`` (written when a study
completes, :mod:`specviz.study.calibrate`). Without that file there is no estimate, and the
plan says so.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specviz.cost import CostModel, CostModelError
from specviz.study.calibrate import COST_MODEL_FILE
from specviz.study.reuse import ReuseSaving, reuse_saving, reuse_text
from specviz.study.spec import PowerSpec, StudyError
from specviz.study.units import Plan, Skipped, Unit

if TYPE_CHECKING:
    from specviz.metrics.power import StreamSpread, TermPower

CONFIRM_RUNS = 1000
CONFIRM_TOKENS = 5_000_000


@dataclass(frozen=True)
class StudyPlan:
    """The counts of a planned study (or of one shard of it)."""

    runs: int
    requests: int
    token_budget: int  # max_new_tokens x turns, over every request of every run
    estimate_s: float | None  # None: no cost curve known
    estimate_source: str
    skipped: tuple[Skipped, ...]
    reuse: ReuseSaving | None = None  # requests copied from an earlier decode (study.reuse)

    @property
    def large(self) -> bool:
        """Above the size that needs ``--yes`` to start."""
        return self.runs > CONFIRM_RUNS or self.token_budget > CONFIRM_TOKENS


def _budget(unit: Unit) -> int:
    return sum(len(r.prompt.turns) for r in unit.requests) * unit.config.max_new_tokens


def _cost_models(out: Path | None) -> dict[str, CostModel]:
    path = None if out is None else out / COST_MODEL_FILE
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {t: CostModel.from_dict(m) for t, m in data.get("targets", {}).items()}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, CostModelError) as err:
        raise StudyError(f"{path} is damaged ({err}): delete it, or restore it") from err


def study_plan(plan: Plan, units: list[Unit] | tuple[Unit, ...], out: Path | None) -> StudyPlan:
    """Count ``units`` (the study's, or one shard's) of ``plan``; estimate from ``out``'s curve."""
    models = _cost_models(out)
    budget = sum(_budget(u) for u in units)
    priced = [u for u in units if u.config.target.name in models]
    estimate = None
    if units and len(priced) == len(units):
        estimate = sum(_budget(u) * models[u.config.target.name].verify(1) for u in units)
    source = f"{out / COST_MODEL_FILE}" if estimate is not None and out else ""
    requests = sum(len(u.requests) for u in units)
    saving = reuse_saving(units, models)
    return StudyPlan(len(units), requests, budget, estimate, source, plan.skipped, saving)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def plan_text(p: StudyPlan) -> str:
    """The plan as the CLI prints it (several lines)."""
    lines = [
        f"plan: {p.runs:,} runs, {p.requests:,} requests, at most {p.token_budget:,} new tokens"
    ]
    if p.estimate_s is None:
        lines.append(
            "estimate: none (no calibrated cost curve yet; a completed study writes "
            f"{COST_MODEL_FILE} in its directory)"
        )
    else:
        lines.append(
            f"estimate: at most about {_duration(p.estimate_s)} (every budgeted token one "
            f"1-row forward, from {p.estimate_source})"
        )
    if p.reuse is not None:
        lines.append(reuse_text(p.reuse, p.token_budget))
    for s in p.skipped:
        lines.append(f"skipped: {s.description}: {s.reason}")
    return "\n".join(lines)


# -- the power plan: how wide each multitask term's interval will be -------------------------


@dataclass(frozen=True)
class PlannedStream:
    """A multitask stream of the plan: its key (target, temperature, drafter, policy, k,
    mixture; the key of a degradation row) and its requests per task over every repeat."""

    key: tuple[Any, ...]
    counts: Mapping[str, int]

    @property
    def name(self) -> str:
        """``suffix constant k=5 on sharegpt``."""
        _, _, drafter, policy, k, mixture = self.key
        return f"{drafter} {policy} k={k} on {mixture}"


@dataclass(frozen=True)
class StreamPower:
    """One planned stream's terms (:class:`specviz.metrics.power.TermPower`); ``terms`` is
    empty when the prior has no stream of the same key."""

    stream: PlannedStream
    terms: tuple[TermPower, ...]


@dataclass(frozen=True)
class PowerPlan:
    """The power plan: the prior it reads the spread from (None: no prior), the study's
    ``[power]`` targets and each drafted multitask stream's terms."""

    prior: str | None
    spec: PowerSpec
    streams: tuple[StreamPower, ...]


def planned_streams(units: Sequence[Unit]) -> list[PlannedStream]:
    """The drafted, unbatched multitask streams of ``units``, with their requests per task
    (summed over repeats, as the decomposition pools a configuration's repeats)."""
    counts: dict[tuple[Any, ...], Counter[str]] = {}
    for u in units:
        categories = [r.prompt.category for r in u.requests]
        if u.batch is not None or u.config.drafter.kind == "none" or len(set(categories)) < 2:
            continue
        key = (u.config.target.name, u.config.sampling.temperature, u.config.drafter.label,
               u.config.policy_label, u.config.k_label, u.requests[0].mixture)  # fmt: skip
        counts.setdefault(key, Counter()).update(categories)
    return [PlannedStream(k, dict(sorted(c.items()))) for k, c in counts.items()]


def prior_spreads(prior: Path) -> dict[tuple[Any, ...], StreamSpread]:
    """The per-task spread of every multitask term of every multitask stream of the study (or
    pilot) at ``prior``, on modelled decode seconds: its rounds priced with the cost curve
    fitted over them, prefill excluded, as the summary classifies its terms
    (:mod:`specviz.metrics.power`, :func:`specviz.metrics.accounting.decode_clock`)."""
    from specviz.metrics.accounting import decode_clock, fit_cost_models, with_modelled_seconds
    from specviz.metrics.power import stream_spreads
    from specviz.rundir import find_run_dirs, memory_partitions, scan_events, scan_requests

    run_dirs = find_run_dirs(prior)
    events, requests = scan_events(run_dirs).collect(), scan_requests(run_dirs).collect()
    models = fit_cost_models(events, requests, source=f"{prior}: all rounds")
    priced = decode_clock(with_modelled_seconds(requests, events, models))
    return stream_spreads(priced, "modelled_s", memory_partitions(run_dirs))


def power_plan(units: Sequence[Unit], spec: PowerSpec, prior: Path | None) -> PowerPlan:
    """Each drafted multitask stream's expected 95% half-width per multitask term and the
    requests that reach ``spec``'s target, from ``prior``'s spread (matched by target,
    temperature, drafter, policy, k and mixture); without a prior, the streams and no figure."""
    from specviz.metrics.power import PLANNED_TERMS, term_power

    streams = planned_streams(units)
    if prior is None:
        return PowerPlan(None, spec, tuple(StreamPower(s, ()) for s in streams))
    spreads = prior_spreads(prior)
    out = []
    for s in streams:
        spread = spreads.get(s.key)
        terms = () if spread is None else tuple(
            t for part in PLANNED_TERMS
            if (t := term_power(spread, part, s.counts, spec.target(part))) is not None
        )  # fmt: skip
        out.append(StreamPower(s, terms))
    return PowerPlan(str(prior), spec, tuple(out))


_TERM_NAMES = {"composition": "composition", "k_mismatch": "k mismatch",
               "drafter_memory": "drafter memory", "carry_over": "carry-over",
               "residual": "residual"}  # fmt: skip


def _term_line(t: TermPower) -> str:
    from specviz.metrics.power import NOT_ESTIMABLE, ZERO

    name = f"    {_TERM_NAMES[t.part]:<14}"
    if t.status == ZERO:
        return f"{name} zero by construction in the prior: no requests needed"
    if t.status == NOT_ESTIMABLE:
        return f"{name} not estimable: a task has 1 request, which the bootstrap cannot resample"
    verdict = "resolved" if t.resolved else "not resolved"
    return (
        f"{name} ±{t.half_width_pct:.2f}% at {t.requests} requests ({verdict} at "
        f"±{t.target_pct:g}%); {t.needed:,} requests reach ±{t.target_pct:g}%"
    )


def power_text(p: PowerPlan) -> str:
    """The power plan as ``specviz study --plan`` prints it."""
    if not p.streams:
        return "power: no drafted multitask stream: no multitask term to size"
    target = f"target ±{p.spec.target_pct:g}%" + ("" if p.spec.given else " (default)")
    extra = ", ".join(f"{_TERM_NAMES.get(t, t)} ±{v:g}%" for t, v in p.spec.term_target_pct)
    target += f", {extra}" if extra else ""
    if p.prior is None:
        return (
            f"power: {len(p.streams)} multitask stream(s), {target}: no half-width can be "
            "predicted without the per-task spread of a previous study or a pilot of this one "
            "(--prior DIR)"
        )
    lines = [
        "power: expected 95% half-width of each multitask term, % of single-task decode time "
        f"(modelled), {target};",
        f"  per-task spread from {p.prior}; half-width ~ z sd / sqrt(n) within tasks "
        "(docs/metrics.md)",
    ]
    for s in p.streams:
        total = sum(s.stream.counts.values())
        if not s.terms:
            lines.append(f"  {s.stream.name} ({total} requests): the prior has no such stream")
            continue
        lines.append(f"  {s.stream.name} ({total} requests):")
        lines += [_term_line(t) for t in s.terms]
    return "\n".join(lines)
