"""What a study will run, counted before anything starts: runs, requests, the token budget, a
time estimate where a cost curve is known, and the combinations it cannot run (and why).

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
from dataclasses import dataclass
from pathlib import Path

from specviz.cost import CostModel, CostModelError
from specviz.study.calibrate import COST_MODEL_FILE
from specviz.study.reuse import ReuseSaving, reuse_saving, reuse_text
from specviz.study.spec import StudyError
from specviz.study.units import Plan, Skipped, Unit

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
