"""The study's answer in words, and as the JSON the notebooks publish.

The numbers and decisions are :func:`specviz.metrics.study.study_answer`'s typed
:class:`~specviz.metrics.study.StudyAnswer`; this module gathers its inputs from the runs at a
path (:func:`answer_of`), words it (one sentence per term, the headline, the tuning and load
lines, the advice, the regime) and publishes it as one JSON-able dict (:func:`answer_json`,
the only place the answer becomes dicts: ``specviz summary --json`` prints it, the notebooks
publish it as ``answer``, and :mod:`specviz.report.summary` renders it).

- a term reads as a *finding* when its modelled 95% interval excludes zero, *zero by
  construction* with the reason (:data:`ZERO_REASONS`), *inside the noise* with the smallest
  effect the study could have detected, *not measured*, or *interval not estimable* with the
  thin tasks (:func:`term_sentence`);
- the headline is the lead (:attr:`~specviz.metrics.study.StudyAnswer.lead`) in words; a
  composition lead names the tasks that make the mix harder (:func:`mix_text`);
- a remedy the study did not run reads "not in this study".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import polars as pl

from specviz.config import N_BOOT
from specviz.metrics.advice import DO_NOT_SPECULATE, KEEP_K, Advice
from specviz.metrics.answer import (
    FINDING,
    NOT_ESTIMABLE,
    UNMEASURED,
    ZERO,
    MixTask,
    Regime,
    WallLoad,
    share_pct,
)
from specviz.metrics.bootstrap import MIN_TASK_REQUESTS
from specviz.metrics.degradation import ThinTask
from specviz.metrics.remedies import NO_GAP, NOT_RUN, Absence
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
from specviz.report.data import StudyData
from specviz.report.tables import stream_labels
from specviz.rundir import memory_partitions, read_run_meta
from specviz.study.spec import PowerSpec, StudyError, power_spec

__all__ = ["FINDING", "NOT_ESTIMABLE", "ZERO", "answer_json", "answer_of", "study_answer"]

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
ABSENT = "not in this study"
UNMEASURED_REASON = "no constant-k control stream of the same drafter, k and mixture"
NO_STREAM = (
    "No multitask stream could be compared: the study needs single-task and multitask mixtures "
    "run with the same method."
)


def pct(value: float | None, reference: float | None = None) -> str:
    """``+1.2%``: ``value`` in percent, or ``value`` as a percent of ``reference`` (a share of
    one: ``reference`` 1.0); ``n/a`` when it is missing or the reference is zero. The one
    formatter of every signed percent in the answer's words and tables."""
    if reference is not None:
        value = share_pct(value, reference)
    return "n/a" if value is None else f"{value:+.1f}%"


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


# -- the words --------------------------------------------------------------------------------


def _name(stream: Stream) -> str:
    return f"{stream.modelled['method']} on {stream.modelled['mixture']}"


def term_reason(term: StreamTerm) -> str:
    """Why a term is zero by construction or not measured (empty otherwise)."""
    t = term.term
    if t.status == UNMEASURED:
        return UNMEASURED_REASON
    if t.status != ZERO:
        return ""
    if t.part == "carry_over" and t.controlled:
        return "the policy's carried state changed no round"
    return ZERO_REASONS[t.part]


#: the wall-clock twin of a stream whose requests (or counterparts') were co-decoded
NO_WALL_CLOCK = "no batch-1 wall clock (co-decoded)"


def _wall_text(stream: Stream, value_pct: float | None) -> str:
    """The wall-clock twin of a figure, marked when the stream ran under changing load (or
    :data:`NO_WALL_CLOCK`)."""
    if not stream.clocked:
        return NO_WALL_CLOCK
    if stream.load.changing:
        return f"wall clock {pct(value_pct)}, taken under changing load"
    return f"wall clock {pct(value_pct)}"


def _finding_text(stream: Stream, term: StreamTerm) -> str:
    t = term.term
    return (
        f"{_name(stream)}: {LABELS[t.part]} {pct(t.pct)} of single-task time (95% CI "
        f"{pct(t.low_pct)} to {pct(t.high_pct)}), modelled; {_wall_text(stream, term.wall_pct)}."
    )


def mix_text(composition_pct: float | None, tasks: Sequence[MixTask]) -> str:
    """Why the mix is harder (composition > 0) or easier (< 0): the (at most three) tasks whose
    share, larger or smaller than in the single-task set, moves it most that way."""
    harder = (composition_pct or 0.0) > 0
    moving = [t for t in tasks if (t.pct or 0.0) * (1 if harder else -1) > 0]
    moving = (moving if harder else moving[::-1])[:3]
    if not moving:
        return ""
    named = [
        f"{'more' if t.share > t.reference_share else 'less'} {t.category} "
        f"({t.share:.0%} of its tokens against {t.reference_share:.0%}; "
        f"{t.relative_cost:.2f}x the set's seconds per token)"
        for t in moving
    ]
    word = "harder" if harder else "easier"
    return f"The mix is {word} than the single-task set: {', '.join(named)}."


def interval_text(low_pct: float | None, high_pct: float | None, thin: Sequence[ThinTask]) -> str:
    """``95% CI -1.0% to +2.0%``, or, when the interval is not estimable
    (:func:`specviz.metrics.degradation.thin_tasks_of_term`), ``interval not estimable: 1
    request for coding; use ≥ 2 per task``."""
    if not thin:
        return f"95% CI {pct(low_pct)} to {pct(high_pct)}"
    counts = ", ".join(
        f"{t.requests} request{'' if t.requests == 1 else 's'} for {t.category}" for t in thin
    )
    return f"interval not estimable: {counts}; use ≥ {MIN_TASK_REQUESTS} per task"


def _total_text(stream: Stream) -> str:
    f = stream.figures
    load = " (taken under changing load)" if stream.load.changing else ""
    interval = interval_text(f.total_low_pct, f.total_high_pct, f.total_thin_tasks)
    extra = (
        f"Multitask terms together {pct(f.multitask_pct)} modelled; with tuning "
        f"({pct(stream.term('tuning').pct)}) the extra time is {pct(f.total_pct)} ({interval})"
    )
    if not stream.clocked:
        return f"{extra}; {NO_WALL_CLOCK}."
    return (
        f"{extra}, {pct(f.wall_total_pct)} by the wall clock{load}; modelled / wall-clock "
        f"seconds {f.modelled_over_wall:.2f}."
    )


def term_sentence(stream: Stream, term: StreamTerm) -> str:
    """One sentence for one term of one stream, saying what is established about it."""
    t = term.term
    head = f"{_name(stream)}: {LABELS[t.part]}"
    if t.status == FINDING:
        return _finding_text(stream, term)
    if t.status in (ZERO, UNMEASURED):
        return f"{head} is {t.status} ({term_reason(term)})."
    if t.status == NOT_ESTIMABLE:
        interval = interval_text(None, None, t.thin_tasks)
        return f"{head} {pct(t.pct)} ({interval}), modelled; {_wall_text(stream, term.wall_pct)}."
    return (
        f"{head} {pct(t.pct)} is inside the noise (95% CI {pct(t.low_pct)} to "
        f"{pct(t.high_pct)}); the smallest effect this study could detect is "
        f"±{t.detectable_pct:.1f}%."
    )


def headline(answer: StudyAnswer) -> dict[str, Any]:
    """The lead (:func:`specviz.metrics.lead.lead`: the largest *multitask* finding among
    drafted streams, never tuning, or the stream with the largest multitask extra time when
    none is established) in words."""
    found = answer.lead
    if found is None:
        return {"text": NO_STREAM, "status": None}
    stream = answer.streams[found.stream]
    f = stream.figures
    if found.term is not None:
        term = stream.terms[found.term]
        composition = stream.term("composition").pct
        harder = mix_text(composition, stream.mix_tasks) if found.part == "composition" else ""
        short = _finding_text(stream, term)
        text = " ".join(x for x in (short, harder, _total_text(stream)) if x)
    else:
        text = f"No multitask term is established for any method. {_name(stream)}: " + _total_text(
            stream
        )
        short = (
            "No multitask term is established for any method; the largest multitask extra "
            f"time: {_name(stream)}, {pct(f.multitask_pct)} of single-task time, modelled."
        )
    m = stream.modelled
    return {"text": text, "short": short, "status": found.status, "method": m["method"],
            "mixture": m["mixture"], "part": found.part, "pct": found.pct,
            "multitask_pct": f.multitask_pct, "total_pct": f.total_pct}  # fmt: skip


def tuning_lines(answer: StudyAnswer) -> list[dict[str, Any]]:
    """Each tuning loss (:attr:`~specviz.metrics.study.StudyAnswer.tuning`) in words: what a
    better global k would save, single-task serving too."""
    out = []
    for stream, loss in answer.tuning:
        m, term = stream.modelled, loss.term
        single = m["best_single_k"]
        scope = "for every task here" if loss.every_task else f"on {m['mixture']}'s tasks together"
        text = (
            f"Tuning, not a multitask cost: {_name(stream)}: k = {m['k']} is worse than "
            f"k = {single} {scope}: {pct(term.pct)} of single-task time (95% CI "
            f"{pct(term.low_pct)} to {pct(term.high_pct)}), modelled; a single-task deployment "
            f"at k = {m['k']} pays it too."
        )
        out.append({"method": m["method"], "mixture": m["mixture"], "k": m["k"],
                    "best_single_k": single, "every_task": loss.every_task, "pct": term.pct,
                    "text": text})  # fmt: skip
    return out


def load_lines(streams: Sequence[Stream]) -> list[str]:
    """For each stream whose wall clock was taken under changing load
    (:func:`specviz.metrics.answer.wall_load`), how much load alone moves its wall-clock
    extra time."""
    out = []
    for stream in streams:
        load = stream.load
        if not load.changing:
            continue
        loads = load.loads or {}
        allowed = (
            "with no interval to hold it against"
            if load.allowed_pct is None
            else f"beyond the ±{load.allowed_pct:.1f}% its interval allows"
        )
        out.append(
            f"The wall clock was taken under changing load: {_name(stream)} ran its multitask "
            f"requests at {loads['multitask_load']:.2f}x the median request's load and its "
            f"single-task counterparts at {loads['single_task_load']:.2f}x (request load "
            f"factors {loads['min_load']:.2f}-{loads['max_load']:.2f}x), which alone moves its "
            f"wall-clock extra time by {pct(load.shift_pct)}, {allowed}: its wall-clock "
            "figures are not findings; read the modelled ones."
        )
    return out


def load_summary(answer: StudyAnswer) -> str | None:
    """One sentence for the first screen: how many streams' wall clocks were taken under
    changing load and how far load alone moves them; :func:`load_lines` gives each stream's
    detail. None when every wall clock held steady."""
    found = answer.changing_load
    if found is None:
        return None
    return (
        f"The wall clock was taken under changing load for {found.streams} of {found.of} "
        f"streams: load alone moves their wall-clock extra time by {pct(found.low_pct)} to "
        f"{pct(found.high_pct)}, beyond what their intervals allow, so their wall-clock "
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
    k of each task (``best_k``) or the best single k (``best_single_k``) of its degradation
    ``row`` as it calls for."""
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
        loss=pct(advice.term.pct), best_k=row["best_k"], best_single_k=row["best_single_k"]
    )


def routes_text(routes: Sequence[Mapping[str, Any]]) -> str:
    """``every task: prompt-lookup k=5``, or ``coding: ...; writing: ...``."""
    distinct = {r["route"] for r in routes}
    if len(distinct) == 1:
        return f"every task: {distinct.pop()}"
    return "; ".join(f"{r['category']}: {r['route']}" for r in routes)


def absence_text(absence: Absence, oracle: str) -> str:
    """Why a remedy has no row, with the note on the missing oracle when that is why."""
    if absence.reason == NOT_RUN:
        return ABSENT
    return "no oracle gap for its streams" if absence.reason == NO_GAP else oracle


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


# -- the JSON ---------------------------------------------------------------------------------


def load_dict(load: WallLoad) -> dict[str, Any]:
    """The answer's entry for a stream's :class:`~specviz.metrics.answer.WallLoad`."""
    figures = {"changing": load.changing, "shift_pct": load.shift_pct}
    return figures | {"allowed_pct": load.allowed_pct} | dict(load.loads or {})


def term_dict(term: StreamTerm) -> dict[str, Any]:
    """The answer's entry for one term of one stream (JSON-able)."""
    t = term.term
    return {"part": t.part, "label": LABELS[t.part], "pct": t.pct, "low_pct": t.low_pct,
            "high_pct": t.high_pct, "detectable_pct": t.detectable_pct,
            "reason": term_reason(term), "thin_tasks": [asdict(x) for x in t.thin_tasks],
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
            "oracle_tokens_per_s": c.oracle_tokens_per_s, "routes": routes_text(c.routes),
            "advice": {"action": best.advice.action, "text": advice_text(best.advice, m)}}  # fmt: skip


def remedies_dict(remedies: Remedies) -> dict[str, Any]:
    """The answer's ``remedies`` entry: the rows, the oracle note, each absent remedy's why."""
    absent = {a.remedy: absence_text(a, remedies.oracle) for a in remedies.absent}
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
        "regime": {"targets": [], "text": regime_text([])}, "power": power_dict(answer.power),
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
        "headline": headline(answer),
        "regime": {"targets": [regime_dict(r) for r in answer.regimes],
                   "text": regime_text(answer.regimes)},
        "power": power_dict(answer.power), "tuning": tuning_lines(answer),
        "load": load_lines(answer.streams), "load_summary": load_summary(answer),
        "streams": [stream_dict(s) for s in answer.streams],
        "findings": [term_sentence(s, t) for s in drafted for t in s.terms],
        "configurations": [configuration_dict(c) for c in answer.configurations],
        "speedups": [] if answer.speedups is None else answer.speedups.with_columns(
            (pl.col("modelled") / pl.col("wall")).alias("modelled_over_wall")).to_dicts(),
        "distributions": answer.distributions, "runs_table": answer.runs_table().to_dicts(),
        "remedies": remedies_dict(answer.remedies),
    }  # fmt: skip
