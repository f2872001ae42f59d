"""The study's answer, gathered from the runs at a path and published as JSON.

The numbers and decisions are :func:`specviz.metrics.study.study_answer`'s typed
:class:`~specviz.metrics.study.StudyAnswer`; this module gathers its inputs from the runs at a
path (:func:`answer_of`) and publishes it as one JSON-able dict (:func:`answer_json`, the only
place the answer becomes dicts: ``specviz summary --json`` prints it, the notebooks publish it
as ``answer``). Its sentences (the headline, one per term, the tuning and load lines, the
advice, the regime) are worded by :mod:`specviz.report.summary`, which also renders the
published answer as HTML and text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import polars as pl

from specviz.config import N_BOOT
from specviz.metrics.answer import FINDING, NOT_ESTIMABLE, ZERO, Regime, WallLoad
from specviz.metrics.study import (
    BestConfiguration,
    Remedies,
    Stream,
    StreamTerm,
    StudyAnswer,
    StudyInputs,
    price,
    unbatched,
)
from specviz.metrics.study import study_answer as compute_answer
from specviz.report import summary
from specviz.report.data import StudyData
from specviz.report.tables import stream_labels
from specviz.rundir import memory_partitions, read_run_meta
from specviz.study.spec import PowerSpec, StudyError, power_spec

__all__ = ["FINDING", "NOT_ESTIMABLE", "ZERO", "answer_json", "answer_of", "study_answer"]

# -- gathering the inputs ---------------------------------------------------------------------


def study_power(manifest: Mapping[str, Any] | None) -> PowerSpec:
    """The ``[power]`` targets of the study file the manifest recorded (the defaults for a run
    directory, a study without ``[power]``, or one whose table no longer parses)."""
    raw = (manifest or {}).get("study")
    if not isinstance(raw, Mapping):
        return PowerSpec()
    try:
        return power_spec(raw, "study.json")
    except StudyError:
        return PowerSpec()


def answer_of(data: StudyData, n_boot: int = N_BOOT) -> StudyAnswer:
    """The typed answer of the runs in ``data`` (:func:`specviz.metrics.study.study_answer`)."""
    inputs = StudyInputs(
        source=str(data.source),
        requests=data.requests,
        events=data.events,
        metas=tuple(read_run_meta(d) for d in data.run_dirs),
        categories=tuple(data.categories),
        methods=tuple(data.methods),
        power=study_power(data.manifest),
        partitions=memory_partitions(data.run_dirs) if unbatched(data.requests) else {},
        label=stream_labels,
    )
    return compute_answer(inputs, n_boot)


def study_answer(data: StudyData, n_boot: int = N_BOOT) -> dict[str, Any]:
    """The published answer of the runs in ``data``: :func:`answer_json` of :func:`answer_of`."""
    return answer_json(answer_of(data, n_boot))


def priced_requests(data: StudyData) -> pl.DataFrame:
    """The request table with ``modelled_s`` (and its parts): what the report lets readers
    download, one row per request."""
    return price(data.events, data.requests, str(data.source))[0]


def priced_or_none(data: StudyData) -> pl.DataFrame | None:
    """:func:`priced_requests`, or None when every run is batched (cost accounting covers
    unbatched runs, as :func:`study_answer` does)."""
    return priced_requests(data) if unbatched(data.requests) else None


# -- the JSON ---------------------------------------------------------------------------------


def load_dict(load: WallLoad) -> dict[str, Any]:
    """The answer's entry for a stream's :class:`~specviz.metrics.answer.WallLoad`."""
    figures = {"changing": load.changing, "shift_pct": load.shift_pct}
    return figures | {"allowed_pct": load.allowed_pct} | dict(load.loads or {})


def term_dict(term: StreamTerm) -> dict[str, Any]:
    """The answer's entry for one term of one stream (JSON-able)."""
    t = term.term
    return {"part": t.part, "label": summary.LABELS[t.part], "pct": t.pct, "low_pct": t.low_pct,
            "high_pct": t.high_pct, "detectable_pct": t.detectable_pct,
            "reason": summary.term_reason(term), "thin_tasks": [asdict(x) for x in t.thin_tasks],
            "status": t.status, "wall_pct": term.wall_pct, "half_width_pct": t.half_width_pct,
            "target_pct": term.target_pct, "resolved": term.resolved}  # fmt: skip


_STREAM_COLUMNS = ("method", "mixture", "target", "temperature", "drafter", "policy", "k",
                   "control", "requests", "tokens", "best_k", "best_single_k")  # fmt: skip


def stream_dict(stream: Stream) -> dict[str, Any]:
    """The answer's entry for one stream: its labels, task shares, load, both degradation
    rows, its figures and its terms."""
    figures = asdict(stream.figures)
    figures["every_task_best_k"] = list(stream.figures.every_task_best_k)
    figures["total_thin_tasks"] = [asdict(t) for t in stream.figures.total_thin_tasks]
    return (
        {k: stream.modelled[k] for k in _STREAM_COLUMNS}
        | {
            "mix_tasks": [asdict(t) for t in stream.mix_tasks],
            "load": load_dict(stream.load),
            "clocked": stream.clocked,
            "modelled": dict(stream.modelled),
            "wall": dict(stream.wall),
        }
        | figures
        | {"terms": [term_dict(t) for t in stream.terms]}
    )


def configuration_dict(best: BestConfiguration) -> dict[str, Any]:
    """The answer's entry for which configuration to run on one stream and what to do."""
    c, m = best.config, best.stream.modelled
    return {"method": m["method"], "mixture": m["mixture"], "tokens_per_s": c.tokens_per_s,
            "best_single_k": m["best_single_k"], "single_k_tokens_per_s": c.single_k_tokens_per_s,
            "single": c.single, "single_tokens_per_s": c.single_tokens_per_s,
            "oracle_tokens_per_s": c.oracle_tokens_per_s,
            "routes": summary.routes_text(c.routes),
            "advice": {"action": best.advice.action,
                       "text": summary.advice_text(best.advice, m)}}  # fmt: skip


def remedies_dict(remedies: Remedies) -> dict[str, Any]:
    """The answer's ``remedies`` entry: the rows, the oracle note, each absent remedy's why."""
    absent = {a.remedy: summary.absence_text(a, remedies.oracle) for a in remedies.absent}
    return {"loss": [dict(r) for r in remedies.loss],
            "recovered": [dict(r) for r in remedies.recovered],
            "memory": [dict(r) for r in remedies.memory], "oracle": remedies.oracle,
            "absent": absent}  # fmt: skip


def regime_dict(regime: Regime) -> dict[str, Any]:
    """The answer's entry for one :class:`~specviz.metrics.answer.Regime`."""
    entry = asdict(regime) | {"dtypes": list(regime.dtypes)}
    entry["verify_ratios"] = [{"k": k, "ratio": r} for k, r in regime.verify_ratios]
    return entry


def regime_of(entry: Mapping[str, Any]) -> Regime:
    """The :class:`~specviz.metrics.answer.Regime` a published regime entry
    (:func:`regime_dict`) was written from (a comparison reads two published answers)."""
    ratios = tuple((r["k"], r["ratio"]) for r in entry["verify_ratios"])
    return Regime(**(dict(entry) | {"dtypes": tuple(entry["dtypes"]), "verify_ratios": ratios}))


def power_dict(power: PowerSpec) -> dict[str, Any]:
    """The answer's ``power`` entry: the targets its terms are resolved at."""
    return asdict(power) | {"term_target_pct": dict(power.term_target_pct)}


def _batched_json(answer: StudyAnswer) -> dict[str, Any]:
    """The answer of runs that are all batched: cost accounting covers unbatched runs."""
    return {
        "source": answer.source, "runs": answer.runs, "requests": 0,
        "categories": list(answer.categories), "methods": list(answer.methods),
        "cost_models": {}, "clock": {"modelled_s": 0.0, "wall_s": 0.0, "modelled_over_wall": None},
        "headline": {
            "text": "Every run is batched: cost accounting and the multitask decomposition "
            "cover unbatched runs (batched runs are compared in the batching section).",
            "status": None,
        },
        "regime": {"targets": [], "text": summary.regime_text([])},
        "power": power_dict(answer.power),
        "tuning": [], "load": [], "configurations": [], "streams": [], "findings": [],
        "speedups": [], "runs_table": [], "remedies": remedies_dict(answer.remedies),
    }  # fmt: skip


def answer_json(answer: StudyAnswer) -> dict[str, Any]:
    """The answer as one JSON-able dict: its figures, every sentence and every table."""
    if answer.priced is None:
        return _batched_json(answer)
    modelled_s, wall_s = answer.seconds("modelled"), answer.seconds("wall")
    drafted = [s for s in answer.streams if s.drafted]
    return {
        "source": answer.source, "runs": answer.runs, "requests": answer.priced.height,
        "categories": list(answer.categories), "methods": list(answer.methods),
        "cost_models": {t: m.to_dict() for t, m in answer.cost_models.items()},
        "clock": {"modelled_s": modelled_s, "wall_s": wall_s,
                  "modelled_over_wall": modelled_s / wall_s if wall_s else None,
                  "co_decoded_requests": answer.co_decoded},
        "headline": summary.headline(answer),
        "regime": {"targets": [regime_dict(r) for r in answer.regimes],
                   "text": summary.regime_text(answer.regimes)},
        "power": power_dict(answer.power), "tuning": summary.tuning_lines(answer),
        "load": summary.load_lines(answer.streams), "load_summary": summary.load_summary(answer),
        "streams": [stream_dict(s) for s in answer.streams],
        "findings": [summary.term_sentence(s, t) for s in drafted for t in s.terms],
        "configurations": [configuration_dict(c) for c in answer.configurations],
        "speedups": [] if answer.speedups is None else answer.speedups.with_columns(
            (pl.col("modelled") / pl.col("wall")).alias("modelled_over_wall")).to_dicts(),
        "distributions": answer.distributions, "runs_table": answer.runs_table().to_dicts(),
        "remedies": remedies_dict(answer.remedies),
    }  # fmt: skip
