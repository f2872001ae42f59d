"""The study's answer in numbers: cost-accounted and wall-clock figures, and what is established.

:func:`study_answer` is the one computation behind the report's opening summary and the
``specviz summary`` command (they only format its result). From the runs at a path it

1. calibrates one cost curve per target over every round of every run
   (:func:`specviz.metrics.accounting.fit_cost_models`) and prices each request
   (``modelled_s``);
2. computes the degradation decomposition and the speedups twice, on ``modelled_s`` and on
   ``wall_s`` (:mod:`specviz.metrics`), and their ratio;
3. classifies every part of every drafted multitask stream (:func:`classify`): a *finding* when
   its modelled 95% interval excludes zero; *zero by construction* when it is exactly zero in
   the estimate and in every resample (cost accounting prices identical rounds identically);
   *inside the noise* otherwise, with the smallest effect the study could have detected (the
   interval's half-width: an effect that large would have moved the interval off zero);
   *interval not estimable* when its bootstrap resamples a task with too few requests
   (:func:`specviz.metrics.degradation.thin_tasks_of_term`: the estimate, no interval);
4. leads with the largest *multitask* finding (composition, k mismatch, carry-over, residual;
   by its share of single-task time), or, without one, says that no multitask term is
   established (:func:`headline`, :func:`specviz.metrics.lead.lead`); a composition lead
   names the tasks that make the mix harder (:func:`mix_text`, from
   :func:`specviz.metrics.degradation.composition_by_task`);
   tuning, a badly chosen global k that single-task serving pays too, is its own line
   (:func:`tuning_lines`, :func:`specviz.metrics.lead.tuning_loss`), never the lead;
5. on modelled seconds, the multitask loss of every stream against the oracle, the share of it
   each remedy recovers and the drafter-memory term (:func:`remedy_answer`,
   :mod:`specviz.metrics.remedies`); a remedy the study did not run reads "not in this study";
6. per drafted multitask stream, the best single k, the best single static configuration, the
   per-task oracle and what to do (:func:`best_configurations`, :func:`what_to_do`;
   :mod:`specviz.metrics.advice`);
7. per stream, whether its wall clock was taken under changing load (:func:`wall_load`: the
   request load factors shift its wall-clock extra time by more than its interval allows), said
   in :func:`load_lines` and marked on every wall-clock figure of that stream.

Numbers and decisions are computed first, as typed results that hold no English:

- :mod:`specviz.metrics.answer`: what each term establishes (:class:`Term`), a stream's
  figures (:class:`~specviz.metrics.answer.StreamFigures`), its wall clock's load
  (:class:`WallLoad`), how many streams ran under changing load
  (:class:`~specviz.metrics.answer.ChangingLoad`) and the task shares of the composition
  (:class:`~specviz.metrics.answer.MixTask`);
- :mod:`specviz.metrics.lead`: which term leads (:class:`~specviz.metrics.lead.Lead`) and which
  tuning losses get their own line (:class:`~specviz.metrics.lead.TuningLoss`);
- :mod:`specviz.metrics.advice`: which configuration to run on each stream and what to do
  (:class:`~specviz.metrics.advice.Configuration`, :class:`~specviz.metrics.advice.Advice`);
- :mod:`specviz.metrics.remedies`: the drafter-memory term of each shared-memory stream
  (:class:`~specviz.metrics.remedies.MemoryTerm`) and why a remedy has no recovered share
  (:class:`~specviz.metrics.remedies.Absence`).

This module assembles the answer's JSON-able entries from them (:func:`term_dict`,
:func:`load_dict`, the per-stream entries; the remedy tables pass through as rows, each figure
paired with its wall-clock twin) and renders every sentence, as :mod:`specviz.report.summary`
does from the published answer. The decisions read the stream entries back as typed values
(:func:`term_of`, :func:`stream_terms`, :func:`load_of`), so they see exactly what the answer
publishes, the inserted drafter-memory terms included.

Everything returned is JSON-able (lists, dicts, numbers, strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from specviz.config import N_BOOT
from specviz.cost import CostModel
from specviz.metrics import degradation, label_streams, missing_baseline, speedup
from specviz.metrics.accounting import (
    fit_cost_models,
    request_load_factors,
    wall_clock_load,
    with_modelled_seconds,
)
from specviz.metrics.advice import (
    DO_NOT_SPECULATE,
    KEEP_K,
    Advice,
    advise,
    configurations,
)
from specviz.metrics.answer import (
    FINDING,
    NOT_ESTIMABLE,
    UNMEASURED,
    ZERO,
    Regime,
    Term,
    WallLoad,
    changing_load,
    classify_term,
    mix_tasks,
    resolved,
    share_pct,
    stream_figures,
    verify_ratios,
    wall_load,
)
from specviz.metrics.bootstrap import MIN_TASK_REQUESTS
from specviz.metrics.degradation import (
    CONFIG,
    TERMS,
    ThinTask,
    composition_by_task,
)
from specviz.metrics.lead import StreamTerms, lead, tuning_loss
from specviz.metrics.oracle import NoOracleError, oracle_gap
from specviz.metrics.remedies import (
    NO_GAP,
    NOT_RUN,
    REMEDIES,
    absences,
    memory_term,
    memory_terms,
    remedies,
)
from specviz.metrics.speedup import BASELINE
from specviz.report.data import StudyData
from specviz.report.distributions import distributions_answer
from specviz.report.tables import decomposable, stream_labels
from specviz.rundir import memory_partitions
from specviz.runlog import read_run_meta
from specviz.study.spec import PowerSpec, StudyError, power_spec

# each term as a word of a sentence ("k mismatch adds 12%"): the sentence says what it measures,
# so these are the bare names; a chart's labels carry the meaning too (degradation.TERM_LABELS)
LABELS = {
    "total": "extra time",
    "composition": "composition",
    "tuning": "tuning",
    "k_mismatch": "k mismatch",
    "carry_over": "carry-over",
    "residual": "residual",
    "drafter_memory": "drafter memory shared across tasks",
}
ZERO_REASONS = {
    "composition": "the stream holds the single-task prompts in their single-task shares",
    "tuning": "the stream's k is the best single k for its tasks",
    "k_mismatch": "every task's best measured k is the same single k",
    "carry_over": "the policy keeps no state across requests",
    "residual": "greedy decoding repeats every round, and identical rounds cost the same",
    "drafter_memory": "the shared memory drafted exactly as the per-task memories did",
}
CLOCKS = ("modelled", "wall")
ABSENT = "not in this study"


UNMEASURED_REASON = "no constant-k control stream of the same drafter, k and mixture"


def term_dict(term: Term) -> dict[str, Any]:
    """The answer's entry for one :class:`~specviz.metrics.answer.Term`: its figures, its
    label and the reason that goes with its status (JSON-able)."""
    reason = ""
    if term.status == UNMEASURED:
        reason = UNMEASURED_REASON
    elif term.status == ZERO:
        reason = ZERO_REASONS[term.part]
        if term.part == "carry_over" and term.controlled:
            reason = "the policy's carried state changed no round"
    return {
        "part": term.part,
        "label": LABELS[term.part],
        "pct": term.pct,
        "low_pct": term.low_pct,
        "high_pct": term.high_pct,
        "detectable_pct": term.detectable_pct,
        "reason": reason,
        "thin_tasks": [asdict(t) for t in term.thin_tasks],
        "status": term.status,
    }


def term_of(entry: Mapping[str, Any]) -> Term:
    """The :class:`~specviz.metrics.answer.Term` a term entry (:func:`term_dict`) was written
    from, as far as the decisions need it (:mod:`specviz.metrics.lead`,
    :mod:`specviz.metrics.advice` read the stream entries back this way): part, status and pct,
    and the interval, detectable effect and thin tasks when the entry has them."""
    return Term(
        part=entry["part"],
        status=entry["status"],
        pct=entry["pct"],
        low_pct=entry.get("low_pct"),
        high_pct=entry.get("high_pct"),
        detectable_pct=entry.get("detectable_pct"),
        thin_tasks=tuple(ThinTask(**t) for t in entry.get("thin_tasks", [])),
    )


def stream_terms(row: Mapping[str, Any]) -> StreamTerms:
    """The :class:`~specviz.metrics.lead.StreamTerms` of a stream entry (:func:`_stream_rows`)."""
    return StreamTerms(
        drafter=row["drafter"],
        terms=tuple(term_of(t) for t in row["terms"]),
        multitask_pct=row["multitask_pct"],
        best_single_k=row["best_single_k"],
        every_task_best_k=tuple(row["every_task_best_k"]),
    )


def classify(row: dict[str, Any], part: str) -> dict[str, Any]:
    """One part of one modelled degradation row, classified
    (:func:`specviz.metrics.answer.classify_term`: finding, zero by construction, inside the
    noise with the smallest detectable effect, not measured, or interval not estimable; the
    last has null bounds, since a zero-width interval would read as certainty) as
    :func:`term_dict` writes it."""
    return term_dict(classify_term(row, part))


def _priced(data: StudyData) -> tuple[pl.DataFrame, dict[str, CostModel]]:
    """Requests with ``modelled_s`` and each request's ``load_factor``."""
    models = fit_cost_models(data.events, data.requests, source=str(data.source))
    priced = with_modelled_seconds(data.requests, data.events, models)
    loads = request_load_factors(data.events, priced)
    priced = priced.join(loads, on=["run_id", "request_id"], how="left")
    return priced.with_columns(pl.col("load_factor").fill_null(1.0)), models


_STREAM_KEY = (*CONFIG, "mixture")


def _by_stream(table: pl.DataFrame) -> dict[tuple, list[dict[str, Any]]]:
    """Rows of a per-stream (per task) table grouped by the stream's configuration and mixture."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for row in table.iter_rows(named=True) if table.height else []:
        out.setdefault(tuple(row[k] for k in _STREAM_KEY), []).append(row)
    return out


def load_dict(load: WallLoad) -> dict[str, Any]:
    """The answer's entry for a stream's :class:`~specviz.metrics.answer.WallLoad`."""
    figures = {"changing": load.changing, "shift_pct": load.shift_pct}
    return figures | {"allowed_pct": load.allowed_pct} | dict(load.loads or {})


def load_of(entry: Mapping[str, Any]) -> WallLoad:
    """The :class:`~specviz.metrics.answer.WallLoad` a load entry (:func:`load_dict`) was
    written from."""
    keys = ("multitask_load", "single_task_load", "min_load", "max_load")
    loads = {k: entry[k] for k in keys if k in entry}
    return WallLoad(entry["changing"], entry["shift_pct"], entry["allowed_pct"], loads or None)


def _stream_rows(requests: pl.DataFrame, n_boot: int) -> list[dict[str, Any]]:
    labelled = stream_labels(label_streams(requests).collect())
    if not decomposable(labelled):
        return []
    tables = {
        clock: stream_labels(degradation(labelled, n_boot=n_boot, seconds=f"{clock}_s"))
        for clock in CLOCKS
    }
    tasks = _by_stream(composition_by_task(labelled, seconds="modelled_s"))
    loads = {k: v[0] for k, v in _by_stream(wall_clock_load(requests)).items()}
    keys = [*CONFIG, "mixture"]
    wall = {tuple(r[k] for k in keys): r for r in tables["wall"].iter_rows(named=True)}
    rows = []
    for m in tables["modelled"].sort("method", "mixture", *keys).iter_rows(named=True):
        key = tuple(m[k] for k in keys)
        w = wall[key]
        ref, wref = m["reference_s"], w["reference_s"]
        figures = stream_figures(m, w)
        row = {
            "method": m["method"],
            "mixture": m["mixture"],
            "target": m["target"],
            "temperature": m["temperature"],
            "drafter": m["drafter"],
            "policy": m["policy"],
            "k": m["k"],
            "control": m["control"],
            "requests": m["requests"],
            "tokens": m["tokens"],
            "best_k": m["best_k"],
            "best_single_k": m["best_single_k"],
            "mix_tasks": [asdict(t) for t in mix_tasks(tasks.get(key, []), ref)],
            "load": load_dict(wall_load(loads.get(key), w)),
            "modelled": m,
            "wall": w,
            **asdict(figures),
            "every_task_best_k": list(figures.every_task_best_k),
            "total_thin_tasks": [asdict(t) for t in figures.total_thin_tasks],
            "terms": [classify(m, p) | {"wall_pct": share_pct(w[p], wref)} for p in TERMS],
        }
        rows.append(row)
    return rows


def _speedups(requests: pl.DataFrame, n_boot: int) -> list[dict[str, Any]]:
    if not (requests["drafter"] == BASELINE).any() or missing_baseline(requests).height:
        return []
    tables = {
        clock: speedup(requests, by=["target", "method"], n_boot=n_boot, seconds=f"{clock}_s")
        for clock in CLOCKS
    }
    wall = {(r["target"], r["method"]): r for r in tables["wall"].iter_rows(named=True)}
    out = []
    for m in tables["modelled"].iter_rows(named=True):
        w = wall[(m["target"], m["method"])]
        out.append(
            {
                "target": m["target"],
                "method": m["method"],
                "requests": m["requests"],
                "modelled": m["speedup_total"],
                "modelled_low": m["speedup_total_low"],
                "modelled_high": m["speedup_total_high"],
                "wall": w["speedup_total"],
                "wall_low": w["speedup_total_low"],
                "wall_high": w["speedup_total_high"],
                "modelled_over_wall": m["speedup_total"] / w["speedup_total"],
            }
        )
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def _wall_text(row: dict[str, Any], value_pct: float | None) -> str:
    """The wall-clock twin of a figure, marked when the stream ran under changing load."""
    if row["load"]["changing"]:
        return f"wall clock {_fmt(value_pct)}, taken under changing load"
    return f"wall clock {_fmt(value_pct)}"


def _finding_text(row: dict[str, Any], term: dict[str, Any]) -> str:
    return (
        f"{row['method']} on {row['mixture']}: {term['label']} {_fmt(term['pct'])} of "
        f"single-task time (95% CI {_fmt(term['low_pct'])} to {_fmt(term['high_pct'])}), "
        f"modelled; {_wall_text(row, term['wall_pct'])}."
    )


def mix_text(row: dict[str, Any]) -> str:
    """Why the mix is harder (composition > 0) or easier (< 0): the (at most three) tasks whose
    share, larger or smaller than in the single-task set, moves it most that way."""
    harder = (_term(row, "composition")["pct"] or 0.0) > 0
    tasks = [t for t in row["mix_tasks"] if (t["pct"] or 0.0) * (1 if harder else -1) > 0]
    tasks = (tasks if harder else tasks[::-1])[:3]
    if not tasks:
        return ""
    named = [
        f"{'more' if t['share'] > t['reference_share'] else 'less'} {t['category']} "
        f"({t['share']:.0%} of its tokens against {t['reference_share']:.0%}; "
        f"{t['relative_cost']:.2f}x the set's seconds per token)"
        for t in tasks
    ]
    word = "harder" if harder else "easier"
    return f"The mix is {word} than the single-task set: {', '.join(named)}."


def _term(row: dict[str, Any], part: str) -> dict[str, Any]:
    return next(t for t in row["terms"] if t["part"] == part)


def interval_text(low_pct: float | None, high_pct: float | None, thin: list[dict]) -> str:
    """``95% CI -1.0% to +2.0%``, or, when the interval is not estimable
    (:func:`specviz.metrics.degradation.thin_tasks_of_term`), ``interval not estimable: 1
    request for coding; use ≥ 2 per task``."""
    if not thin:
        return f"95% CI {_fmt(low_pct)} to {_fmt(high_pct)}"
    counts = ", ".join(
        f"{t['requests']} request{'' if t['requests'] == 1 else 's'} for {t['category']}"
        for t in thin
    )
    return f"interval not estimable: {counts}; use ≥ {MIN_TASK_REQUESTS} per task"


def _total_text(row: dict[str, Any]) -> str:
    tuning = _term(row, "tuning")
    load = " (taken under changing load)" if row["load"]["changing"] else ""
    interval = interval_text(
        row["total_low_pct"], row["total_high_pct"], row.get("total_thin_tasks", [])
    )
    return (
        f"Multitask terms together {_fmt(row['multitask_pct'])} modelled; with tuning "
        f"({_fmt(tuning['pct'])}) the extra time is {_fmt(row['total_pct'])} ({interval}), "
        f"{_fmt(row['wall_total_pct'])} by the wall clock{load}; modelled / wall-clock seconds "
        f"{row['modelled_over_wall']:.2f}."
    )


def term_sentence(row: dict[str, Any], term: dict[str, Any]) -> str:
    """One sentence for one term of one stream, saying what is established about it."""
    head = f"{row['method']} on {row['mixture']}: {term['label']}"
    if term["status"] == FINDING:
        return _finding_text(row, term)
    if term["status"] == ZERO:
        return f"{head} is zero by construction ({term['reason']})."
    if term["status"] == UNMEASURED:
        return f"{head} is not measured ({term['reason']})."
    if term["status"] == NOT_ESTIMABLE:
        interval = interval_text(None, None, term["thin_tasks"])
        return (
            f"{head} {_fmt(term['pct'])} ({interval}), modelled; "
            f"{_wall_text(row, term['wall_pct'])}."
        )
    return (
        f"{head} {_fmt(term['pct'])} is inside the noise (95% CI {_fmt(term['low_pct'])} to "
        f"{_fmt(term['high_pct'])}); the smallest effect this study could detect is "
        f"±{term['detectable_pct']:.1f}%."
    )


def headline(streams: list[dict[str, Any]]) -> dict[str, Any]:
    """The lead (:func:`specviz.metrics.lead.lead`: the largest *multitask* finding among
    drafted streams, never tuning, or the stream with the largest multitask extra time when
    none is established) in words. A composition lead names the tasks that make the mix
    harder (:func:`mix_text`)."""
    found = lead([stream_terms(r) for r in streams])
    if found is None:
        return {
            "text": "No multitask stream could be compared: the study needs single-task and "
            "multitask mixtures run with the same method.",
            "status": None,
        }
    row = streams[found.stream]
    if found.term is not None:
        harder = mix_text(row) if found.part == "composition" else ""
        finding = _finding_text(row, row["terms"][found.term])
        text = " ".join(x for x in (finding, harder, _total_text(row)) if x)
    else:
        text = (
            f"No multitask term is established for any method. {row['method']} on "
            f"{row['mixture']}: {_total_text(row)}"
        )
    short = (
        finding
        if found.term is not None
        else f"No multitask term is established for any method; the largest multitask extra "
        f"time: {row['method']} on {row['mixture']}, {_fmt(row['multitask_pct'])} of single-task "
        "time, modelled."
    )
    return {
        "text": text,
        "short": short,
        "status": found.status,
        "method": row["method"],
        "mixture": row["mixture"],
        "part": found.part,
        "pct": found.pct,
        "multitask_pct": row["multitask_pct"],
        "total_pct": row["total_pct"],
    }


def add_memory_terms(
    priced: pl.DataFrame, streams: list[dict[str, Any]], partitions: Mapping[str, str], n_boot: int
) -> None:
    """Insert a ``drafter_memory`` term entry before carry-over in each shared-memory stream
    that has a per-task-memory counterpart (:func:`specviz.metrics.remedies.memory_terms`,
    classified as the others); the lead may then name it."""
    modelled = [r["modelled"] for r in streams]
    wall = [r["wall"] for r in streams]
    for memory in memory_terms(priced, modelled, wall, partitions, n_boot):
        row = streams[memory.stream]
        at = [t["part"] for t in row["terms"]].index("carry_over")
        row["terms"].insert(at, term_dict(memory.term) | {"wall_pct": memory.wall_pct})


def tuning_lines(streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each tuning loss (:func:`specviz.metrics.lead.tuning_loss`: a drafted stream whose k is
    established as worse than the best single k for its tasks) in words: what a better global
    k would save, single-task serving too."""
    out = []
    for row in streams:
        loss = tuning_loss(stream_terms(row))
        if loss is None:
            continue
        term, single = loss.term, row["best_single_k"]
        scope = (
            "for every task here" if loss.every_task else f"on {row['mixture']}'s tasks together"
        )
        out.append(
            {
                "method": row["method"],
                "mixture": row["mixture"],
                "k": row["k"],
                "best_single_k": single,
                "every_task": loss.every_task,
                "pct": term.pct,
                "text": (
                    f"Tuning, not a multitask cost: {row['method']} on {row['mixture']}: "
                    f"k = {row['k']} is worse than k = {single} {scope}: {_fmt(term.pct)} of "
                    f"single-task time (95% CI {_fmt(term.low_pct)} to "
                    f"{_fmt(term.high_pct)}), modelled; a single-task deployment at "
                    f"k = {row['k']} pays it too."
                ),
            }
        )
    return out


def load_lines(streams: list[dict[str, Any]]) -> list[str]:
    """For each stream whose wall clock was taken under changing load (:func:`wall_load`), how
    much load alone moves its wall-clock extra time."""
    out = []
    for row in streams:
        load = row["load"]
        if not load["changing"]:
            continue
        allowed = (
            "with no interval to hold it against"
            if load["allowed_pct"] is None
            else f"beyond the ±{load['allowed_pct']:.1f}% its interval allows"
        )
        out.append(
            f"The wall clock was taken under changing load: {row['method']} on "
            f"{row['mixture']} ran its multitask requests at {load['multitask_load']:.2f}x the "
            f"median request's load and its single-task counterparts at "
            f"{load['single_task_load']:.2f}x (request load factors {load['min_load']:.2f}-"
            f"{load['max_load']:.2f}x), which alone moves its wall-clock extra time by "
            f"{_fmt(load['shift_pct'])}, {allowed}: its "
            "wall-clock figures are not findings; read the modelled ones."
        )
    return out


def load_summary(streams: list[dict[str, Any]]) -> str | None:
    """One sentence for the first screen: how many streams' wall clocks were taken under
    changing load (:func:`wall_load`) and how far load alone moves them; :func:`load_lines`
    gives each stream's detail. None when every wall clock held steady."""
    found = changing_load([load_of(row["load"]) for row in streams])
    if found is None:
        return None
    return (
        f"The wall clock was taken under changing load for {found.streams} of {found.of} "
        f"streams: load alone moves their wall-clock extra time by {_fmt(found.low_pct)} to "
        f"{_fmt(found.high_pct)}, beyond what their intervals allow, so their wall-clock "
        "figures are not findings; read the modelled ones (each stream under The numbers)."
    )


# what a route-by-task or change-k advice says, by the established loss that decides it
_ADVICE = {
    "drafter_memory": "route by task: give each task its own drafter memory (sharing one costs "
    "{loss})",
    "carry_over": "route by task: keep the policy's state per task (carrying it across tasks "
    "costs {loss})",
    "k_mismatch": "route by task (k per task: {best_k}): sharing one k costs {loss}",
    "tuning": "change k to {best_single_k} (saves {loss} of single-task time, on any traffic)",
}


def advice_text(advice: Advice, row: Mapping[str, Any]) -> str:
    """An :class:`~specviz.metrics.advice.Advice` in words, naming the stream's ``k``, the best
    k of each task (``best_k``) or the best single k (``best_single_k``) as it calls for."""
    if advice.action == DO_NOT_SPECULATE:
        return (
            "do not speculate on this traffic: the baseline is every task's best static "
            "configuration"
        )
    if advice.action == KEEP_K:
        return f"keep k = {row['k']}"
    if advice.term is None:
        return (
            f"route by task: speculate only on {', '.join(advice.speculate_on)}; the baseline "
            "is the best single configuration"
        )
    return _ADVICE[advice.term.part].format(
        loss=_fmt(advice.term.pct), best_k=row["best_k"], best_single_k=row["best_single_k"]
    )


def what_to_do(
    row: Mapping[str, Any], routes: Sequence[Mapping[str, Any]], single_baseline: bool
) -> dict[str, str]:
    """One method's advice on one mixture (:func:`specviz.metrics.advice.advise`, from the
    stream entry's terms and the oracle's ``routes`` of its tasks): its action and
    :func:`advice_text`."""
    advice = advise([term_of(t) for t in row["terms"]], routes, single_baseline)
    return {"action": advice.action, "text": advice_text(advice, row)}


def _routes_text(routes: Sequence[Mapping[str, Any]]) -> str:
    """``every task: prompt-lookup k=5``, or ``coding: ...; writing: ...``."""
    distinct = {r["route"] for r in routes}
    if len(distinct) == 1:
        return f"every task: {distinct.pop()}"
    return "; ".join(f"{r['category']}: {r['route']}" for r in routes)


def best_configurations(priced: pl.DataFrame, streams: list[dict[str, Any]]) -> list[dict]:
    """Per drafted multitask stream (:func:`specviz.metrics.advice.configurations`, on
    modelled seconds): its throughput, the best single k for its method, the best single
    static configuration for its traffic, the per-task oracle (with each task's route) and
    :func:`what_to_do`. Empty without an oracle."""
    out = []
    for config in configurations(priced, [r["modelled"] for r in streams]):
        row = streams[config.stream]
        out.append(
            {
                "method": row["method"],
                "mixture": row["mixture"],
                "tokens_per_s": config.tokens_per_s,
                "best_single_k": row["best_single_k"],
                "single_k_tokens_per_s": config.single_k_tokens_per_s,
                "single": config.single,
                "single_tokens_per_s": config.single_tokens_per_s,
                "oracle_tokens_per_s": config.oracle_tokens_per_s,
                "routes": _routes_text(config.routes),
                "advice": what_to_do(row, config.routes, config.single_baseline),
            }
        )
    return out


def _remedies_on(
    requests: pl.DataFrame, table: pl.DataFrame | None, partitions: Mapping[str, str]
) -> dict[str, Any]:
    """Loss, recovered shares and memory term on the clock of ``requests.wall_s`` (and of the
    :func:`degradation` ``table`` of the same clock); ``oracle``: why there is no oracle."""
    out: dict[str, Any] = {"loss": [], "recovered": [], "memory": [], "oracle": ""}
    try:
        gaps = oracle_gap(requests)
    except NoOracleError as err:
        gaps = None
        out["oracle"] = f"no oracle: {err}"
    if gaps is not None and gaps.height:
        out["loss"] = stream_labels(gaps).to_dicts()
        out["recovered"] = remedies(gaps, partitions).to_dicts()
    if table is not None and table.height:
        out["memory"] = memory_term(table, partitions).to_dicts()
    return out


def _with_wall(
    modelled: list[dict[str, Any]], wall: list[dict[str, Any]], values: Sequence[str]
) -> list[dict[str, Any]]:
    """Each modelled row with ``<value>_wall`` from the wall-clock row naming the same streams
    (the same values of every :data:`_REMEDY_KEYS` column)."""

    def key(row: dict[str, Any]) -> tuple:
        return tuple(row.get(k) for k in _REMEDY_KEYS)

    by_key = {key(w): w for w in wall}
    out = []
    for m in modelled:
        w = by_key.get(key(m), {})
        out.append(m | {f"{v}_wall": w.get(v) for v in values})
    return out


# the columns that name a stream or a remedy pair (the rest are figures)
_REMEDY_KEYS = ("method", "mixture", "target", "drafter", "policy", "k", "run_id", "remedy",
                "reference", "remedied", "shared", "per_task")  # fmt: skip


def remedy_answer(
    priced: pl.DataFrame, tables: Mapping[str, pl.DataFrame | None], partitions: Mapping[str, str]
) -> dict[str, Any]:
    """The multitask loss against the oracle and what each remedy recovers, modelled and wall
    clock.

    ``priced``: requests with ``modelled_s`` and ``wall_s``; ``tables``: the
    :func:`degradation` table of each clock (``modelled``, ``wall``; None without one). Returns
    ``loss`` (per multitask stream: method, mixture, oracle gap as a share of the stream's
    seconds), ``recovered`` (per remedy pair, with ``recovered_share``), ``memory`` (the
    drafter-memory term), each figure on modelled seconds with its wall-clock twin as
    ``<figure>_wall``; ``absent`` (remedy: why it has no row: ``not in this study``, or the
    oracle is missing) and ``oracle`` (a note). The oracle is chosen on each clock's own
    seconds, so the two clocks may pick different oracle configurations.
    """
    modelled = priced.with_columns(pl.col("modelled_s").alias("wall_s"))
    out = _remedies_on(modelled, tables.get("modelled"), partitions)
    wall = _remedies_on(priced, tables.get("wall"), partitions)
    out["loss"] = _with_wall(out["loss"], wall["loss"], ["gap_share"])
    out["recovered"] = _with_wall(out["recovered"], wall["recovered"], ["recovered_share"])
    memory_pcts = ["interleaving_pct", "drafter_memory_pct", "other_interleaving_pct"]
    out["memory"] = _with_wall(out["memory"], wall["memory"], memory_pcts)
    recovered = {r["remedy"] for r in out["recovered"]}
    missing = absences(modelled, partitions, recovered, has_oracle=not out["oracle"])
    out["absent"] = {a.remedy: _absence_text(a.reason, out["oracle"]) for a in missing}
    return out


def _absence_text(reason: str, oracle: str) -> str:
    """Why a remedy has no row (:class:`specviz.metrics.remedies.Absence`), with the note on
    the missing oracle when that is why."""
    if reason == NOT_RUN:
        return ABSENT
    return "no oracle gap for its streams" if reason == NO_GAP else oracle


def _runs(priced: pl.DataFrame) -> list[dict[str, Any]]:
    """Per method and mixture: requests, tokens, modelled and wall seconds, tokens/s both ways."""
    table = (
        priced.group_by("method", "mixture")
        .agg(
            pl.len().alias("requests"),
            pl.col("new_tokens").sum().alias("tokens"),
            pl.col("modelled_s").sum(),
            pl.col("wall_s").sum(),
        )
        .with_columns(
            (pl.col("tokens") / pl.col("modelled_s")).alias("modelled_tokens_per_s"),
            (pl.col("tokens") / pl.col("wall_s")).alias("wall_tokens_per_s"),
            (pl.col("modelled_s") / pl.col("wall_s")).alias("modelled_over_wall"),
        )
        .sort("method", "mixture")
    )
    return table.to_dicts()


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


def power_dict(power: PowerSpec) -> dict[str, Any]:
    """The answer's ``power`` entry: the targets its terms are resolved at."""
    return {
        "target_pct": power.target_pct,
        "term_target_pct": dict(power.term_target_pct),
        "given": power.given,
    }


def add_resolution(streams: list[dict[str, Any]], power: PowerSpec) -> None:
    """Give every term entry its 95% ``half_width_pct``, its ``target_pct`` and whether it is
    ``resolved`` there (:func:`specviz.metrics.answer.resolved`; None without an interval)."""
    for row in streams:
        for entry in row["terms"]:
            term, target = term_of(entry), power.target(entry["part"])
            entry |= {
                "half_width_pct": term.half_width_pct,
                "target_pct": target,
                "resolved": resolved(term, target),
            }


def _run_target(meta: Mapping[str, Any]) -> str | None:
    return meta.get("config", {}).get("target", {}).get("name")


def study_regimes(
    run_dirs: Sequence[Path], models: Mapping[str, CostModel], priced: pl.DataFrame
) -> list[Regime]:
    """The :class:`~specviz.metrics.answer.Regime` of each target: the dtypes, reason and
    device its runs recorded in run.json (``models.target``), and T(k+1)/T(1) of its calibrated
    cost curve at the k values its drafted requests ran (an adaptive policy's initial k)."""
    metas = [read_run_meta(d) for d in run_dirs]
    out = []
    for target, model in sorted(models.items()):
        loaded = [m.get("models", {}).get("target", {}) for m in metas if _run_target(m) == target]
        recorded = [x for x in loaded if x.get("dtype")]
        gpus = [m.get("hardware", {}).get("gpu") for m in metas if _run_target(m) == target]
        drafted = priced.filter((pl.col("target") == target) & (pl.col("drafter") != BASELINE))
        out.append(
            Regime(
                target=target,
                dtypes=tuple(sorted({x["dtype"] for x in recorded})),
                dtype_reason=recorded[0].get("dtype_reason", "") if recorded else "",
                device=recorded[0].get("device", "") if recorded else "",
                gpu=next((g for g in gpus if g), ""),
                verify_ratios=verify_ratios(model, drafted["k"].unique().to_list()),
            )
        )
    return out


def regime_dict(regime: Regime) -> dict[str, Any]:
    """The answer's entry for one :class:`~specviz.metrics.answer.Regime`."""
    entry = asdict(regime) | {"dtypes": list(regime.dtypes)}
    entry["verify_ratios"] = [{"k": k, "ratio": r} for k, r in regime.verify_ratios]
    return entry


def regime_of(entry: Mapping[str, Any]) -> Regime:
    """The :class:`~specviz.metrics.answer.Regime` a regime entry (:func:`regime_dict`) was
    written from."""
    return Regime(
        target=entry["target"],
        dtypes=tuple(entry["dtypes"]),
        dtype_reason=entry["dtype_reason"],
        device=entry["device"],
        gpu=entry["gpu"],
        verify_ratios=tuple((r["k"], r["ratio"]) for r in entry["verify_ratios"]),
    )


def ratios_text(regime: Regime) -> str:
    """``T(3)/T(1) = 1.05, T(6)/T(1) = 1.16`` (``no drafted k`` when none ran)."""
    if not regime.verify_ratios:
        return "no drafted k"
    return ", ".join(f"T({k + 1})/T(1) = {r:.2f}" for k, r in regime.verify_ratios)


def dtype_text(regime: Regime) -> str:
    """``bfloat16 (auto: the CPU has native bf16 (avx512_bf16)) on cpu``, or why it is unknown."""
    if not regime.dtypes:
        return "dtype not recorded"
    dtypes = " and ".join(regime.dtypes) + (" (runs differ)" if len(regime.dtypes) > 1 else "")
    reason = f" ({regime.dtype_reason})" if regime.dtype_reason else ""
    where = f" on {regime.gpu or regime.device}" if regime.gpu or regime.device else ""
    return f"{dtypes}{reason}{where}"


def regime_text(regimes: Sequence[Regime]) -> str:
    """One sentence: the dtype and the verify-cost curve each target's modelled figures hold
    for (every modelled figure is priced with that curve; another dtype or machine has
    another curve, and the best k and the terms that price k follow it)."""
    if not regimes:
        return "Regime: no calibrated cost curve (no unbatched rounds)."
    parts = [f"{r.target}, {dtype_text(r)}, verify cost {ratios_text(r)}" for r in regimes]
    return (
        f"Regime: {'; '.join(parts)} (calibrated on this study's rounds): the modelled "
        "answer holds for this dtype and cost curve."
    )


def _unbatched(data: StudyData) -> bool:
    if "batch_size" not in data.requests.columns:
        return True
    return bool((data.requests["batch_size"].fill_null(1) == 1).any())


def study_answer(data: StudyData, n_boot: int = N_BOOT) -> dict[str, Any]:
    """The answer of the runs in ``data`` (module docstring); JSON-able.

    Cost accounting and the decomposition cover unbatched runs; runs that are all batched get
    an answer saying so (their comparison is the batching section, docs/batching.md).
    """
    if not _unbatched(data):
        return {
            "source": str(data.source),
            "runs": len(data.run_dirs),
            "requests": 0,
            "categories": list(data.categories),
            "methods": list(data.methods),
            "cost_models": {},
            "clock": {"modelled_s": 0.0, "wall_s": 0.0, "modelled_over_wall": None},
            "headline": {
                "text": "Every run is batched: cost accounting and the multitask decomposition "
                "cover unbatched runs (batched runs are compared in the batching section).",
                "status": None,
            },
            "regime": {"targets": [], "text": regime_text([])},
            "power": power_dict(study_power(data.manifest)),
            "tuning": [],
            "load": [],
            "configurations": [],
            "streams": [],
            "findings": [],
            "speedups": [],
            "runs_table": [],
            "remedies": {"loss": [], "recovered": [], "memory": [], "oracle": "",
                         "absent": dict.fromkeys(REMEDIES, ABSENT)},
        }  # fmt: skip
    priced, models = _priced(data)
    streams = _stream_rows(priced, n_boot)
    partitions = memory_partitions(data.run_dirs)
    add_memory_terms(priced, streams, partitions, n_boot)
    modelled_s = float(priced["modelled_s"].sum())
    wall_s = float(priced["wall_s"].sum())
    power = study_power(data.manifest)
    add_resolution(streams, power)
    regimes = study_regimes(data.run_dirs, models, priced)
    return {
        "source": str(data.source),
        "runs": len(data.run_dirs),
        "requests": priced.height,
        "categories": list(data.categories),
        "methods": list(data.methods),
        "cost_models": {t: m.to_dict() for t, m in models.items()},
        "clock": {
            "modelled_s": modelled_s,
            "wall_s": wall_s,
            "modelled_over_wall": modelled_s / wall_s if wall_s else None,
        },
        "headline": headline(streams),
        "regime": {"targets": [regime_dict(r) for r in regimes], "text": regime_text(regimes)},
        "power": power_dict(power),
        "tuning": tuning_lines(streams),
        "load": load_lines(streams),
        "load_summary": load_summary(streams),
        "streams": streams,
        "findings": [
            term_sentence(r, t) for r in streams if r["drafter"] != BASELINE for t in r["terms"]
        ],
        "configurations": best_configurations(priced, streams),
        "speedups": _speedups(priced, n_boot),
        "distributions": distributions_answer(data),
        "runs_table": _runs(priced),
        "remedies": remedy_answer(
            priced,
            {c: pl.DataFrame([r[c] for r in streams]) if streams else None for c in CLOCKS},
            partitions,
        ),
    }


def priced_requests(data: StudyData) -> pl.DataFrame:
    """The request table with ``modelled_s`` (and its parts): what the report lets readers
    download, one row per request."""
    return _priced(data)[0]


def priced_or_none(data: StudyData) -> pl.DataFrame | None:
    """:func:`priced_requests`, or None when every run is batched (cost accounting covers
    unbatched runs, as :func:`study_answer` does)."""
    return priced_requests(data) if _unbatched(data) else None
