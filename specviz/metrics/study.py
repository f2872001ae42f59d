"""The study's answer in numbers: one typed :class:`StudyAnswer`, no English.

:func:`study_answer` is the one computation behind the report's opening summary and
``specviz summary`` (:mod:`specviz.report.answer` words it and publishes it as JSON). From the
runs of a study it

1. calibrates one cost curve per target over every round of every run
   (:func:`specviz.metrics.accounting.fit_cost_models`) and prices each request
   (``modelled_s``, :func:`price`);
2. computes the degradation decomposition and the speedups twice, on ``modelled_s`` and on
   ``wall_s`` (the decomposition, its remedies and the best configurations on the decode clock,
   prefill forwards excluded: :func:`specviz.metrics.accounting.decode_clock`; the speedups end
   to end), and classifies every term of every multitask stream
   (:func:`specviz.metrics.answer.classify_term`), the drafter-memory term inserted before
   carry-over in each shared-memory stream (:func:`specviz.metrics.remedies.memory_terms`);
3. leads with the largest *multitask* finding (:attr:`StudyAnswer.lead`,
   :func:`specviz.metrics.lead.lead`); tuning, a badly chosen global k, is its own line
   (:attr:`StudyAnswer.tuning`), never the lead;
4. on modelled seconds, the multitask loss of every stream against the oracle and the share of
   it each remedy recovers (:func:`remedies_of`), and per drafted multitask stream which
   configuration to run and what to do (:class:`BestConfiguration`,
   :mod:`specviz.metrics.advice`);
5. per stream, whether its wall clock was taken under changing load
   (:func:`specviz.metrics.answer.wall_load`).

Every wall-clock figure is computed from the requests that have a batch-size-1 wall clock
(:func:`specviz.metrics.accounting.wall_clocked`: not co-decoded). A stream whose requests or
single-task counterparts were co-decoded has no wall-clock row (:attr:`Stream.clocked` is
False); its modelled figures are its answer.

Every decision reads the typed values it was computed from (design choice: the answer is
computed once, as dataclasses; dicts exist only where :mod:`specviz.report.answer` publishes
it as JSON). Tables passed through to the reader (degradation rows, remedy rows) stay rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import polars as pl

from specviz.cost import CostModel
from specviz.metrics.accounting import (
    decode_clock,
    fit_cost_models,
    request_load_factors,
    wall_clock_load,
    wall_clocked,
    with_modelled_seconds,
)
from specviz.metrics.advice import Advice, Configuration, advise, configurations
from specviz.metrics.answer import (
    ChangingLoad,
    MixTask,
    Regime,
    StreamFigures,
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
from specviz.metrics.degradation import (
    CONFIG,
    TERMS,
    MissingCounterpartError,
    composition_by_task,
    degradation,
    label_streams,
)
from specviz.metrics.distributions import study_distributions
from specviz.metrics.lead import Lead, StreamTerms, TuningLoss, lead, tuning_loss
from specviz.metrics.oracle import NoOracleError, oracle_gap
from specviz.metrics.remedies import (
    NOT_RUN,
    REMEDIES,
    Absence,
    absences,
    memory_term,
    memory_terms,
    remedies,
)
from specviz.metrics.speedup import BASELINE, missing_baseline, speedup

if TYPE_CHECKING:
    from specviz.study.spec import PowerSpec

_STREAM_KEY = (*CONFIG, "mixture")
# the columns that name a stream or a remedy pair (the rest are figures)
_REMEDY_KEYS = ("method", "mixture", "target", "drafter", "policy", "k", "run_id", "remedy",
                "reference", "remedied", "shared", "per_task")  # fmt: skip
#: how the caller names methods and streams (``method``, ``stream`` columns) on a table
Label = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class StudyInputs:
    """What the answer is computed from: the study's ``requests`` and ``events``, each run's
    run.json (``metas``), its categories and methods, the ``[power]`` targets, each suffix
    drafter's memory partition and the caller's method and stream labels (``label``)."""

    source: str
    requests: pl.DataFrame
    events: pl.DataFrame
    metas: tuple[Mapping[str, Any], ...]
    categories: tuple[str, ...]
    methods: tuple[str, ...]
    power: PowerSpec
    partitions: Mapping[str, str]
    label: Label


@dataclass(frozen=True)
class StreamTerm:
    """One classified term of one stream, its wall-clock twin (``wall_pct``) and the 95%
    half-width it is resolved at (``target_pct``, the study's ``[power]``)."""

    term: Term
    wall_pct: float | None
    target_pct: float

    @property
    def resolved(self) -> bool | None:
        return resolved(self.term, self.target_pct)


@dataclass(frozen=True)
class Stream:
    """One stream of the decomposition: its ``modelled`` and ``wall`` degradation rows, its
    figures, the task shares of its composition, its wall clock's load and its terms.
    ``clocked``: whether it has a batch-size-1 wall clock; without one (its runs, or its
    counterparts', were co-decoded) ``wall`` is :func:`no_wall_row` (every figure null)."""

    modelled: Mapping[str, Any]
    wall: Mapping[str, Any]
    figures: StreamFigures
    mix_tasks: tuple[MixTask, ...]
    load: WallLoad
    terms: tuple[StreamTerm, ...]
    clocked: bool = True

    @property
    def drafted(self) -> bool:
        return self.modelled["drafter"] != BASELINE

    def term(self, part: str) -> Term:
        return next(t.term for t in self.terms if t.term.part == part)

    def lead_terms(self) -> StreamTerms:
        """What :func:`specviz.metrics.lead.lead` and ``tuning_loss`` read of this stream."""
        m = self.modelled
        return StreamTerms(
            m["drafter"],
            tuple(t.term for t in self.terms),
            self.figures.multitask_pct,
            m["best_single_k"],
            self.figures.every_task_best_k,
        )


@dataclass(frozen=True)
class BestConfiguration:
    """Which configuration to run on one drafted multitask ``stream`` and what to do."""

    stream: Stream
    config: Configuration
    advice: Advice


@dataclass(frozen=True)
class Remedies:
    """The multitask loss against the oracle (``loss``), what each remedy recovers
    (``recovered``) and the drafter-memory term (``memory``): rows on modelled seconds, each
    figure with its wall-clock twin as ``<figure>_wall``; the remedies without a row
    (``absent``) and why there is no oracle (``oracle``, empty when there is one)."""

    loss: tuple[Mapping[str, Any], ...] = ()
    recovered: tuple[Mapping[str, Any], ...] = ()
    memory: tuple[Mapping[str, Any], ...] = ()
    oracle: str = ""
    absent: tuple[Absence, ...] = tuple(Absence(r, NOT_RUN) for r in REMEDIES)


@dataclass(frozen=True)
class StudyAnswer:
    """The study's answer (module docstring). ``priced``: the requests with ``modelled_s``
    and ``load_factor``; None when every run is batched (cost accounting and the
    decomposition cover unbatched runs). ``clocked``: those of them with a batch-size-1 wall
    clock (:func:`~specviz.metrics.accounting.wall_clocked`)."""

    source: str
    runs: int
    categories: tuple[str, ...]
    methods: tuple[str, ...]
    power: PowerSpec
    priced: pl.DataFrame | None = None
    clocked: pl.DataFrame | None = None
    cost_models: Mapping[str, CostModel] = field(default_factory=dict)
    streams: tuple[Stream, ...] = ()
    regimes: tuple[Regime, ...] = ()
    configurations: tuple[BestConfiguration, ...] = ()
    speedups: pl.DataFrame | None = None
    remedies: Remedies = Remedies()
    distributions: Mapping[str, Any] | None = None

    @property
    def lead(self) -> Lead | None:
        return lead([s.lead_terms() for s in self.streams])

    @property
    def tuning(self) -> list[tuple[Stream, TuningLoss]]:
        """Each stream with a tuning loss (:func:`specviz.metrics.lead.tuning_loss`)."""
        losses = [(s, tuning_loss(s.lead_terms())) for s in self.streams]
        return [(s, loss) for s, loss in losses if loss is not None]

    @property
    def changing_load(self) -> ChangingLoad | None:
        return changing_load([s.load for s in self.streams])

    @property
    def co_decoded(self) -> int:
        """How many priced requests have no batch-size-1 wall clock (co-decoded)."""
        if self.priced is None or self.clocked is None:
            return 0
        return self.priced.height - self.clocked.height

    def seconds(self, clock: str) -> float:
        """The study's ``modelled_s`` or ``wall_s`` summed over every request with a wall
        clock (:attr:`clocked`), so the two clocks cover the same requests."""
        return 0.0 if self.clocked is None else float(self.clocked[f"{clock}_s"].sum())

    def runs_table(self) -> pl.DataFrame:
        """Per method and mixture: requests, tokens, modelled and wall seconds, tokens/s (the
        wall columns null for a stream with a co-decoded request)."""
        assert self.priced is not None and self.clocked is not None
        timed = self.clocked.select("run_id", "request_id", pl.lit(True).alias("_timed"))
        return (
            self.priced.join(timed, on=["run_id", "request_id"], how="left")
            .group_by("method", "mixture")
            .agg(
                pl.len().alias("requests"),
                pl.col("new_tokens").sum().alias("tokens"),
                pl.col("modelled_s").sum(),
                pl.when(pl.col("_timed").fill_null(False).all()).then(pl.col("wall_s").sum()),
            )
            .with_columns(
                (pl.col("tokens") / pl.col("modelled_s")).alias("modelled_tokens_per_s"),
                (pl.col("tokens") / pl.col("wall_s")).alias("wall_tokens_per_s"),
                (pl.col("modelled_s") / pl.col("wall_s")).alias("modelled_over_wall"),
            )
            .sort("method", "mixture")
        )


def unbatched(requests: pl.DataFrame) -> bool:
    """Whether any request ran unbatched (cost accounting covers those)."""
    if "batch_size" not in requests.columns:
        return True
    return bool((requests["batch_size"].fill_null(1) == 1).any())


def price(
    events: pl.DataFrame, requests: pl.DataFrame, source: str
) -> tuple[pl.DataFrame, dict[str, CostModel]]:
    """Requests with ``modelled_s`` and each request's ``load_factor``, and the cost curves."""
    models = fit_cost_models(events, requests, source=source)
    priced = with_modelled_seconds(requests, events, models)
    loads = request_load_factors(events, priced)
    priced = priced.join(loads, on=["run_id", "request_id"], how="left")
    return priced.with_columns(pl.col("load_factor").fill_null(1.0)), models


def decomposable(labelled: pl.DataFrame) -> bool:
    """Whether :func:`~specviz.metrics.degradation.degradation` has a stream to decompose: a
    multitask request (``label_streams``) whose configuration was also run single-task."""
    keys = list(CONFIG)
    single = labelled.filter(~pl.col("multitask")).select(keys).unique()
    multi = labelled.filter(pl.col("multitask"))
    return multi.join(single, on=keys, how="semi", nulls_equal=True).height > 0


def _by_stream(table: pl.DataFrame) -> dict[tuple, list[dict[str, Any]]]:
    """Rows of a per-stream (per task) table grouped by the stream's configuration and mixture."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for row in table.iter_rows(named=True) if table.height else []:
        out.setdefault(tuple(row[k] for k in _STREAM_KEY), []).append(row)
    return out


def no_wall_row(modelled: Mapping[str, Any]) -> dict[str, Any]:
    """The wall-clock row of a stream without a batch-size-1 wall clock: its naming columns
    (``method``, ``mixture`` and the configuration) from its ``modelled`` row, every figure
    null."""
    return {k: (v if k in _REMEDY_KEYS or k in _STREAM_KEY else None) for k, v in modelled.items()}


def _wall_table(clocked: pl.DataFrame, inputs: StudyInputs, n_boot: int) -> pl.DataFrame | None:
    """The wall-clock decomposition of the requests with a batch-size-1 wall clock; None when
    they hold no stream and its single-task counterparts whole."""
    timed = inputs.label(label_streams(clocked).collect())
    if not decomposable(timed):
        return None
    try:
        return inputs.label(degradation(timed, n_boot=n_boot, seconds="wall_s"))
    except MissingCounterpartError:  # a counterpart decoded co-decoded: no wall clock for it
        return None


def _streams(
    priced: pl.DataFrame, clocked: pl.DataFrame, inputs: StudyInputs, n_boot: int
) -> tuple[Stream, ...]:
    """Every stream of the decomposition, its drafter-memory term inserted before carry-over
    when it has one; the wall clock from the ``clocked`` requests only."""
    labelled = inputs.label(label_streams(priced).collect())
    if not decomposable(labelled):
        return ()
    table = inputs.label(degradation(labelled, n_boot=n_boot, seconds="modelled_s"))
    wall_table = _wall_table(clocked, inputs, n_boot)
    tasks = _by_stream(composition_by_task(labelled, seconds="modelled_s"))
    loads = {k: v[0] for k, v in _by_stream(wall_clock_load(clocked)).items()}
    rows = [] if wall_table is None else wall_table.iter_rows(named=True)
    wall = {tuple(r[k] for k in _STREAM_KEY): r for r in rows}
    modelled = list(table.sort("method", "mixture", *_STREAM_KEY).iter_rows(named=True))
    keys = [tuple(m[k] for k in _STREAM_KEY) for m in modelled]
    walls = [wall.get(key) or no_wall_row(m) for m, key in zip(modelled, keys, strict=True)]
    terms = [
        [(classify_term(m, p), share_pct(w[p], w["reference_s"])) for p in TERMS]
        for m, w in zip(modelled, walls, strict=True)
    ]
    for memory in memory_terms(priced, clocked, modelled, walls, inputs.partitions, n_boot):
        at = [t.part for t, _ in terms[memory.stream]].index("carry_over")
        terms[memory.stream].insert(at, (memory.term, memory.wall_pct))
    target = inputs.power.target
    return tuple(
        Stream(
            modelled=m,
            wall=w,
            figures=stream_figures(m, w),
            mix_tasks=tuple(mix_tasks(tasks.get(key, []), m["reference_s"])),
            load=wall_load(loads.get(key) if key in wall else None, w),
            terms=tuple(StreamTerm(t, wall_pct, target(t.part)) for t, wall_pct in ts),
            clocked=key in wall,
        )
        for m, w, ts, key in zip(modelled, walls, terms, keys, strict=True)
    )


def _has_baseline(requests: pl.DataFrame) -> bool:
    """Whether every drafted request of ``requests`` has a baseline request of its prompt."""
    return bool((requests["drafter"] == BASELINE).any()) and not missing_baseline(requests).height


def _speedups(priced: pl.DataFrame, clocked: pl.DataFrame, n_boot: int) -> pl.DataFrame | None:
    """Speedup over the baseline per target and method with its 95% interval, modelled and
    wall clock (``modelled``, ``modelled_low`` ... ``wall_high``); None without a baseline. The wall clock pairs the ``clocked`` requests only (null where they
    hold no pair)."""
    if not _has_baseline(priced):
        return None
    by = ["target", "method"]

    def clock(requests: pl.DataFrame, name: str) -> pl.DataFrame:
        return speedup(requests, by=by, n_boot=n_boot, seconds=f"{name}_s").select(
            *by, *(["requests"] if name == "modelled" else []),
            *(pl.col(f"speedup_total{x}").alias(f"{name}{x}") for x in ("", "_low", "_high")),
        )  # fmt: skip

    modelled = clock(priced, "modelled")
    if not (clocked["drafter"] != BASELINE).any() or not _has_baseline(clocked):
        return modelled.with_columns(
            pl.lit(None, pl.Float64).alias(f"wall{x}") for x in ("", "_low", "_high")
        )
    return modelled.join(clock(clocked, "wall"), on=by, how="left", maintain_order="left")


def _best_configurations(
    priced: pl.DataFrame, streams: Sequence[Stream]
) -> tuple[BestConfiguration, ...]:
    """Per drafted multitask stream (:func:`specviz.metrics.advice.configurations`, on
    modelled seconds) and its advice (:func:`specviz.metrics.advice.advise`). Empty without
    an oracle."""
    out = []
    for config in configurations(priced, [s.modelled for s in streams]):
        stream = streams[config.stream]
        terms = [t.term for t in stream.terms]
        out.append(
            BestConfiguration(stream, config, advise(terms, config.routes, config.single_baseline))
        )
    return tuple(out)


def _remedy_rows(
    requests: pl.DataFrame,
    table: pl.DataFrame | None,
    partitions: Mapping[str, str],
    label: Label,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], str]:
    """Loss, recovered shares and memory term on the clock of ``requests.wall_s`` (and of the
    :func:`degradation` ``table`` of the same clock), and why there is no oracle."""
    loss: list[dict[str, Any]] = []
    recovered: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    oracle = ""
    try:
        gaps = oracle_gap(requests)
    except NoOracleError as err:
        gaps, oracle = None, f"no oracle: {err}"
    if gaps is not None and gaps.height:
        loss = label(gaps).to_dicts()
        recovered = remedies(gaps, partitions).to_dicts()
    if table is not None and table.height:
        memory = memory_term(table, partitions).to_dicts()
    return loss, recovered, memory, oracle


def _with_wall(
    modelled: list[dict[str, Any]], wall: list[dict[str, Any]], values: Sequence[str]
) -> tuple[dict[str, Any], ...]:
    """Each modelled row with ``<value>_wall`` from the wall-clock row naming the same streams
    (the same values of every :data:`_REMEDY_KEYS` column)."""

    def key(row: dict[str, Any]) -> tuple:
        return tuple(row.get(k) for k in _REMEDY_KEYS)

    by_key = {key(w): w for w in wall}
    return tuple(m | {f"{v}_wall": by_key.get(key(m), {}).get(v) for v in values} for m in modelled)


def remedies_of(
    priced: pl.DataFrame,
    clocked: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame | None],
    partitions: Mapping[str, str],
    label: Label,
) -> Remedies:
    """The multitask loss against the oracle and what each remedy recovers, modelled and wall
    clock. ``priced``: requests with ``modelled_s`` and ``wall_s``, ``clocked`` those of them
    with a batch-size-1 wall clock (the wall-clock rows' requests); ``tables``: the
    :func:`degradation` table of each clock (``modelled``, ``wall``; None without one). The
    oracle is chosen on each clock's own seconds, so the two clocks may pick different oracle
    configurations."""
    on_model = priced.with_columns(pl.col("modelled_s").alias("wall_s"))
    loss, recovered, memory, oracle = _remedy_rows(
        on_model, tables.get("modelled"), partitions, label
    )
    wall = _remedy_rows(clocked, tables.get("wall"), partitions, label)
    done = {r["remedy"] for r in recovered}
    missing = absences(on_model, partitions, done, has_oracle=not oracle)
    memory_pcts = ["interleaving_pct", "drafter_memory_pct", "other_interleaving_pct"]
    return Remedies(
        loss=_with_wall(loss, wall[0], ["gap_share"]),
        recovered=_with_wall(recovered, wall[1], ["recovered_share"]),
        memory=_with_wall(memory, wall[2], memory_pcts),
        oracle=oracle,
        absent=tuple(missing),
    )


def _run_target(meta: Mapping[str, Any]) -> str | None:
    return meta.get("config", {}).get("target", {}).get("name")


def study_regimes(
    metas: Sequence[Mapping[str, Any]], models: Mapping[str, CostModel], priced: pl.DataFrame
) -> tuple[Regime, ...]:
    """The :class:`~specviz.metrics.answer.Regime` of each target: the dtypes, reason and
    device its runs recorded in run.json (``models.target``), and T(k+1)/T(1) of its calibrated
    cost curve at the k values its drafted requests ran (an adaptive policy's initial k)."""
    out = []
    for target, model in sorted(models.items()):
        loaded = [m.get("models", {}).get("target", {}) for m in metas if _run_target(m) == target]
        recorded = [x for x in loaded if x.get("dtype")]
        gpus = [m.get("hardware", {}).get("gpu") for m in metas if _run_target(m) == target]
        drafted = priced.filter((pl.col("target") == target) & (pl.col("drafter") != BASELINE))
        dtypes = tuple(sorted({x["dtype"] for x in recorded}))
        first = recorded[0] if recorded else {}
        ratios = verify_ratios(model, drafted["k"].unique().to_list())
        gpu = next((g for g in gpus if g), "")
        reason, device = first.get("dtype_reason", ""), first.get("device", "")
        out.append(Regime(target, dtypes, reason, device, gpu, ratios))
    return tuple(out)


def study_answer(inputs: StudyInputs, n_boot: int) -> StudyAnswer:
    """The :class:`StudyAnswer` of ``inputs`` (module docstring). Runs that are all batched
    get an answer without priced requests (their comparison is the batching section,
    docs/batching.md)."""
    answer = StudyAnswer(
        inputs.source, len(inputs.metas), inputs.categories, inputs.methods, inputs.power
    )
    if not unbatched(inputs.requests):
        return answer
    priced, models = price(inputs.events, inputs.requests, inputs.source)
    clocked = wall_clocked(priced, inputs.metas)
    decoding = decode_clock(priced)  # the decomposition's clock; its batch-1 subsample below
    decoding_clocked = wall_clocked(decoding, inputs.metas)
    streams = _streams(decoding, decoding_clocked, inputs, n_boot)
    timed = [s.wall for s in streams if s.clocked]
    tables = {
        "modelled": pl.DataFrame([s.modelled for s in streams]) if streams else None,
        "wall": pl.DataFrame(timed) if timed else None,
    }
    return replace(
        answer,
        priced=priced,
        clocked=clocked,
        cost_models=models,
        streams=streams,
        regimes=study_regimes(inputs.metas, models, priced),
        configurations=_best_configurations(decoding, streams),
        speedups=_speedups(priced, clocked, n_boot),
        remedies=remedies_of(decoding, decoding_clocked, tables, inputs.partitions, inputs.label),
        distributions=study_distributions(inputs.events, inputs.requests),
    )
