"""How much slower a multitask stream is than single-task streams, and why.

The unit is seconds to serve the multitask stream's own requests, so that every part is a sum
over those requests and the parts add up exactly. A *stream* is the requests of one
``(run_id, mixture)``; it is single-task when they all share one category, multitask otherwise.
A *configuration* is ``(target, temperature, drafter, policy, k)``. For a multitask stream of
configuration c (shared k = k0), with requests r of category c_r, prompt p_r, repeat q_r and
n_r new tokens:

- ``multitask_s`` T_M = sum_r wall_r (measured);
- ``single_task_s`` T_S = sum_r n_r * spt(c, k0, p_r): each request as in its single-task run
  (same configuration), where spt is that run's seconds per token for the same prompt (same
  repeat when there is one, else pooled over repeats). Scaling by n_r makes every term "seconds
  for the multitask stream's tokens" (under greedy decoding the token counts are identical);
- ``tuned_single_task_s`` T_S* = sum_r n_r * spt(c with k = k*(c_r), p_r), where k*(task) is
  the k, among the k values run single-task for that task and covering all its prompts in the
  stream, with the least measured seconds per token on those prompts (measured, not predicted;
  see :func:`specviz.metrics.theory.best_k` for the model's choice over unrun k values);
- ``single_k_s`` T_S1 = sum_r n_r * spt(c with k = k1(h_r), p_r), where k1 is the best *single*
  k for the stream's tasks, cross-fitted as the oracle (:mod:`specviz.metrics.oracle`) does:
  each task's prompts in the stream are sorted by ``prompt_id`` and split alternately into
  halves h = 0, 1; k1(h) is the k, among those run single-task with c (k aside) on every prompt
  of the stream, with the least sum_r n_r * spt(c with k, p_r) over the stream's requests of the
  *other* half (ties: the stream's own k, then the smaller k). Choosing and scoring on the same
  prompts would favour the luckiest k; when the other half is empty (every task has one prompt)
  the choice is made in sample;
- ``reference_s`` T_ref = N * (sum W / sum N') over the whole single-task runs, at their tuned k,
  of the tasks present in the stream: the stream's N tokens at the throughput the single-task
  benchmark reports.

The measured difference ``total = T_M - T_ref`` is split into

- ``composition`` = T_S* - T_ref: the stream weights the tasks (and prompts) differently from
  the single-task benchmark (zero when it holds the same prompts);
- ``tuning`` = T_S - T_S1: the stream's k against the best single k for its tasks; what a
  better global k would save in any deployment, single-task too (not a multitask cost);
- ``k_mismatch`` = T_S1 - T_S*: one k shared by all tasks instead of each task's best; the
  multitask part of choosing k (zero when every task's best k is the same single k);
- ``carry_over`` + ``residual`` = T_M - T_S: what the interleaving itself costs. For a policy
  whose state persists across requests (``heuristic``), the constant-policy stream of the same
  target, temperature, drafter, k and mixture is the control: it has no state, so its relative
  gap rho = (T_M - T_S) / T_S of the control is the residual level (noise, cache and ordering
  effects); ``residual`` = rho * T_S and ``carry_over`` = T_M - T_S - residual. For a policy
  without cross-request state, carry-over is zero by construction and ``residual`` = T_M - T_S.
  Without a control, both are null and ``control`` says "missing".

A multitask stream whose configuration was never run single-task (for instance the baseline
when only its multitask stream was run) has no row; one whose single-task runs miss some of its
prompts raises :class:`MissingCounterpartError`.

Intervals: percentile bootstrap over the stream's requests, resampled within each task (the
mixture fixes each task's count of requests, so only which prompts a task has varies), and
independently over the control's requests for rho; T_ref's rate is held fixed. A task with
fewer than ``MIN_TASK_REQUESTS`` (:mod:`specviz.metrics.bootstrap`) requests would redraw the
same request in every resample, so the stream's such tasks are resampled as one pooled stratum
(collapsed strata, :func:`specviz.metrics.bootstrap.strata`: a mix of real traffic often holds
one request of a rare task). A lone task of one request has nothing to pool with, so a term
whose bootstrap resamples it has no interval worth the name (with one request per task it is
zero-wide): :func:`thin_tasks_of_term` says which task makes it not estimable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from specviz.errors import SpecvizError
from specviz.metrics.bootstrap import (
    METRIC_N_BOOT,
    percentile_bounds,
    strata,
    stratified_sums,
    unpooled_thin_tasks,
)
from specviz.metrics.frames import Frame, requests_frame

CONFIG = ("target", "temperature", "drafter", "policy", "k")
STREAM = ("run_id", "mixture")
PERSISTENT_POLICIES = ("heuristic",)
#: the terms that add up to a stream's total extra time (module docstring)
TERMS = ("composition", "tuning", "k_mismatch", "carry_over", "residual")
#: each term's label where it stands alone (a chart's axis, legend or tooltip): its name and, in
#: brackets, what it measures, since no sentence around it says so. Keys: exactly TERMS, in order
#: (tests/test_metrics_degradation.py checks it)
TERM_LABELS: dict[str, str] = {
    "composition": "composition (task mix differs from the benchmark)",
    "tuning": "tuning (the stream's k vs the best single k)",
    "k_mismatch": "k mismatch (one k shared by every task)",
    "carry_over": "carry-over (policy state across tasks)",
    "residual": "residual (interleaving, noise)",
}
#: what multitasking itself costs: every term but tuning (a badly chosen global k, which
#: single-task serving pays too)
MULTITASK_TERMS = ("composition", "k_mismatch", "carry_over", "residual")
#: the columns of degradation() with ``_low`` / ``_high`` bounds: the total and its terms
ESTIMATES = ("total", *TERMS)
#: the terms whose bootstrap also resamples the control stream (when there is one)
CONTROLLED_TERMS = ("carry_over", "residual")
_CONFIG_BUT_K = tuple(c for c in CONFIG if c != "k")
_STREAM_GROUP = (*CONFIG, "mixture")  # one row of degradation() per multitask stream
_FLOAT_COLUMNS = (
    "tokens",
    "multitask_s",
    "single_task_s",
    "tuned_single_task_s",
    "single_k_s",
    "reference_s",
    "multitask_tokens_per_s",
    "reference_tokens_per_s",
)


@dataclass(frozen=True)
class ThinTask:
    """A task with fewer than ``MIN_TASK_REQUESTS`` requests in a stream a bootstrap resamples
    within each task: every resample redraws the same request(s)."""

    category: str
    requests: int


_THIN_TASKS = pl.List(pl.Struct({"category": pl.String(), "requests": pl.Int64()}))


def thin_tasks(categories: Sequence[str | None]) -> list[dict[str, Any]]:
    """The tasks among ``categories`` (one per request of a stream) whose resampling stratum has
    fewer than ``MIN_TASK_REQUESTS`` requests, as ``{"category", "requests"}`` rows sorted
    by task: a lone task of one request, which no other thin task of the stream can be pooled
    with (:func:`specviz.metrics.bootstrap.strata`)."""
    thin = unpooled_thin_tasks(categories)
    return [
        {"category": str(c), "requests": n}
        for c, n in sorted(thin.items(), key=lambda cn: (cn[0] is None, cn[0]))
    ]


def thin_tasks_of_term(row: Mapping[str, Any], part: str) -> tuple[ThinTask, ...]:
    """Why the interval of ``part`` in :func:`degradation` row ``row`` is not estimable: the tasks
    with fewer than ``MIN_TASK_REQUESTS`` requests in a stream its bootstrap resamples (the
    stream's own requests for every term; also the control's for carry-over and residual when
    the control is a constant-policy stream). Empty when the interval is estimable.

    ``row`` may be any mapping with ``thin_tasks`` (and, for :data:`CONTROLLED_TERMS`,
    ``control`` and ``control_thin_tasks``): the drafter-memory interval
    (:func:`specviz.metrics.remedies.memory_interval`) gives its own ``thin_tasks``.
    """
    rows = list(row.get("thin_tasks") or [])
    if part in CONTROLLED_TERMS and row.get("control") == "constant":
        rows += row.get("control_thin_tasks") or []
    tasks = {ThinTask(r["category"], int(r["requests"])) for r in rows}
    return tuple(sorted(tasks, key=lambda t: (t.category, t.requests)))


class NoMultitaskStreamError(SpecvizError):
    """The requests hold no multitask stream (a run and mixture with several categories)."""


class MissingCounterpartError(SpecvizError):
    """Multitask requests have no single-task request of the same configuration and prompt."""

    def __init__(self, missing: pl.DataFrame) -> None:
        self.missing = missing
        lines = [
            f"{row['drafter']}/{row['policy']}/k={row['k']} on {row['target']}: {row['prompt_id']}"
            for row in missing.head(20).iter_rows(named=True)
        ]
        more = f" and {missing.height - 20} more" if missing.height > 20 else ""
        super().__init__(
            f"{missing.height} multitask request(s) have no single-task counterpart (same target, "
            f"temperature, drafter, policy, k and prompt): {'; '.join(lines)}{more}. Run the "
            "single-task mixtures of these tasks with the same configuration."
        )


def label_streams(requests: Frame, seconds: str = "wall_s") -> pl.LazyFrame:
    """The request table with ``multitask``: the request's (run_id, mixture) holds >1 category.

    Only unbatched requests (``batch_size`` 1) are streams here; batched runs are compared by
    :func:`specviz.metrics.batching.batch_composition_gap`. ``seconds``: the column that times a
    request (``wall_s``, or ``modelled_s`` from :mod:`specviz.metrics.accounting`); it is read
    into ``wall_s``, so every formula below runs unchanged on either clock.
    """
    if seconds != "wall_s":
        requests_frame(requests, [seconds])
        requests = requests.lazy().with_columns(pl.col(seconds).alias("wall_s"))
    lazy = requests_frame(
        requests,
        [
            *CONFIG,
            *STREAM,
            "category",
            "prompt_id",
            "repeat",
            "new_tokens",
            "wall_s",
            "request_id",
            "request_index",
        ],
    )
    if "batch_size" in lazy.collect_schema():  # batched runs: specviz.metrics.batching
        lazy = lazy.filter(pl.col("batch_size").fill_null(1) == 1)
    return lazy.with_columns(
        (pl.col("category").n_unique().over(list(STREAM)) > 1).alias("multitask")
    )


@dataclass(frozen=True)
class _SingleTaskSpt:
    """Single-task seconds per token, spt = sum W / sum N, of each (configuration, prompt): per
    repeat, and pooled over the repeats."""

    per_repeat: pl.LazyFrame
    pooled: pl.LazyFrame

    @classmethod
    def of(cls, single: pl.LazyFrame) -> _SingleTaskSpt:
        agg = (pl.col("wall_s").sum() / pl.col("new_tokens").cast(pl.Float64).sum()).alias("spt")
        return cls(
            per_repeat=single.group_by([*CONFIG, "prompt_id", "repeat"]).agg(agg),
            pooled=single.group_by([*CONFIG, "prompt_id"]).agg(agg.alias("spt_pooled")),
        )

    def attach(self, frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
        """``frame`` with ``name``: the spt of each row's configuration, prompt and repeat (pooled
        over repeats when that repeat was not run single-task; null when the prompt was not)."""
        return (
            frame.join(
                self.per_repeat, on=[*CONFIG, "prompt_id", "repeat"], how="left", nulls_equal=True
            )
            .join(self.pooled, on=[*CONFIG, "prompt_id"], how="left", nulls_equal=True)
            .with_columns(pl.coalesce("spt", "spt_pooled").alias(name))
            .drop("spt", "spt_pooled")
        )


def single_task_best_k(requests: Frame) -> pl.DataFrame:
    """Measured seconds per token of each single-task (task, k), over that task's single-task runs.

    Columns: target, temperature, drafter, policy, category, k, requests, tokens, wall_s,
    tokens_per_s, best (this k has the highest throughput of its task and configuration).
    """
    single = label_streams(requests).filter(~pl.col("multitask"))
    keys = list(_CONFIG_BUT_K)
    return (
        single.group_by([*keys, "category", "k"])
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            pl.col("new_tokens").cast(pl.Int64).sum().alias("tokens"),
            pl.col("wall_s").sum().alias("wall_s"),
        )
        .with_columns((pl.col("tokens") / pl.col("wall_s")).alias("tokens_per_s"))
        .with_columns(
            (
                pl.col("tokens_per_s") == pl.col("tokens_per_s").max().over([*keys, "category"])
            ).alias("best")
        )
        .sort([*keys, "category", "k"])
        .collect()
    )


# -- per request: t_m, t_s, k*, t_s* ---------------------------------------------------------


def _per_request(requests: Frame, seconds: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Multitask requests with t_m, t_s, t_s_best, k_best; and the single-task request table.

    Per-request seconds are rounded to the nanosecond, so a request priced exactly like its
    single-task counterpart (cost accounting) gives t_m == t_s bit for bit.
    """
    labelled = label_streams(requests, seconds)
    single = labelled.filter(~pl.col("multitask"))
    spt = _SingleTaskSpt.of(single)
    multi = _with_single_task_s(_multitask_requests(labelled, single), spt)
    priced = _priced_at_every_k(multi, single, spt)
    multi = _with_tuned_single_task_s(_with_best_k(multi, _best_k(priced)), spt)
    multi = _with_halves(multi)
    multi = _with_single_k_s(multi, _best_single_k(priced, multi), spt)
    # a fixed row order makes the seeded bootstrap reproducible
    return multi.sort(["run_id", "request_index"]), single.collect()


def _multitask_requests(labelled: pl.LazyFrame, single: pl.LazyFrame) -> pl.LazyFrame:
    """The multitask requests with n_r (new tokens) and t_m = wall_r; only those of a
    configuration run single-task at least once, since only those can be decomposed."""
    configs = single.select(list(CONFIG)).unique()
    return (
        labelled.filter(pl.col("multitask"))
        .join(configs, on=list(CONFIG), how="semi", nulls_equal=True)
        .with_columns(
            pl.col("new_tokens").cast(pl.Float64).alias("n"), pl.col("wall_s").round(9).alias("t_m")
        )
    )


def _with_single_task_s(multi: pl.LazyFrame, spt: _SingleTaskSpt) -> pl.DataFrame:
    """``multi`` with spt_k0 and t_s = n_r * spt(c, k0, p_r): each request as in its single-task
    run. Raises MissingCounterpartError when a prompt was never run single-task with c."""
    priced = spt.attach(multi, "spt_k0").collect()
    missing = priced.filter(pl.col("spt_k0").is_null())
    if missing.height:
        raise MissingCounterpartError(
            missing.select([*CONFIG, "prompt_id"]).unique().sort([*CONFIG, "prompt_id"])
        )
    return priced.with_columns((pl.col("n") * pl.col("spt_k0")).round(9).alias("t_s"))


def _priced_at_every_k(
    multi: pl.DataFrame, single: pl.LazyFrame, spt: _SingleTaskSpt
) -> pl.LazyFrame:
    """Each multitask request (its own k as k_stream) once per k its configuration ran
    single-task, with spt_alt = spt(c with that k, p_r) (null where that k missed the prompt)."""
    ks = single.select([*_CONFIG_BUT_K, pl.col("k").alias("k_alt")]).unique()
    candidates = (
        multi.lazy()
        .select(
            [
                *_CONFIG_BUT_K,
                *("k", "mixture", "run_id", "request_id", "category", "prompt_id", "repeat", "n"),
            ]
        )
        .join(ks, on=list(_CONFIG_BUT_K), how="inner", nulls_equal=True)
        .with_columns(pl.col("k").alias("k_stream"), pl.col("k_alt").alias("k"))
        .drop("k_alt")
    )
    return spt.attach(candidates, "spt_alt")


def _best_k(priced: pl.LazyFrame) -> pl.LazyFrame:
    """k_best = k*(task) of each stream and task: among the k that ran all the task's prompts in
    the stream, the one with the least sum_r n_r * spt(c with k, p_r) (ties: the smaller k)."""
    stream_task = [*_CONFIG_BUT_K, "k_stream", "mixture", "category"]
    return (
        priced.group_by([*stream_task, "k"])
        .agg(
            pl.col("spt_alt").is_null().any().alias("incomplete"),
            # to the nanosecond: a tie stays a tie whatever order the threads sum in
            (pl.col("n") * pl.col("spt_alt")).sum().round(9).alias("cost"),
        )
        .filter(~pl.col("incomplete"))
        .group_by(stream_task)
        .agg(pl.col("k").sort_by(["cost", "k"]).first().alias("k_best"))
    )


def _with_best_k(multi: pl.DataFrame, best: pl.LazyFrame) -> pl.DataFrame:
    """``multi`` with k_best, the best k of each request's stream and task."""
    return (
        multi.lazy()
        .join(
            best.rename({"k_stream": "k"}),
            on=[*_CONFIG_BUT_K, "k", "mixture", "category"],
            how="left",
            nulls_equal=True,
        )
        .collect()
    )


def _with_tuned_single_task_s(multi: pl.DataFrame, spt: _SingleTaskSpt) -> pl.DataFrame:
    """``multi`` with spt_best and t_s_best = n_r * spt(c with k = k*(c_r), p_r)."""
    at_best = (
        multi.lazy()
        .select([*_CONFIG_BUT_K, "k_best", "prompt_id", "repeat", "request_id", "run_id"])
        .rename({"k_best": "k"})
    )
    at_best = spt.attach(at_best, "spt_best").collect()
    return multi.join(
        at_best.select(["run_id", "request_id", "spt_best"]),
        on=["run_id", "request_id"],
        how="left",
    ).with_columns((pl.col("n") * pl.col("spt_best")).round(9).alias("t_s_best"))


def _with_halves(multi: pl.DataFrame) -> pl.DataFrame:
    """``multi`` with ``half``: each task's prompts in the stream, sorted by ``prompt_id``,
    alternately 0 and 1 (the oracle's split, :func:`specviz.metrics.oracle.prompt_halves`)."""
    rank = (pl.col("prompt_id").rank("dense") - 1) % 2
    return multi.with_columns(rank.over([*_STREAM_GROUP, "category"]).cast(pl.Int8).alias("half"))


def _best_single_k(priced: pl.LazyFrame, multi: pl.DataFrame) -> pl.DataFrame:
    """k_single of each stream and half: the one k for all the stream's tasks, among the k run
    single-task on every prompt of the stream, with the least sum_r n_r * spt(c with k, p_r) over
    the stream's requests of the *other* half (in sample when the other half is empty); ties:
    the stream's own k, then the smaller k."""
    stream = [*_CONFIG_BUT_K, "k_stream", "mixture"]
    halves = multi.lazy().select(
        [*_CONFIG_BUT_K, pl.col("k").alias("k_stream"), "mixture", "run_id", "request_id", "half"]
    )
    costs = (
        priced.join(halves, on=[*stream, "run_id", "request_id"], nulls_equal=True)
        .group_by([*stream, "k"])
        .agg(
            pl.col("spt_alt").is_null().any().alias("incomplete"),
            *[
                (pl.col("n") * pl.col("spt_alt"))
                .filter(pl.col("half") == h)
                .sum()
                .round(9)  # as in _best_k: ties independent of summation order
                .alias(f"c{h}")
                for h in (0, 1)
            ],
            *[(pl.col("half") == h).any().alias(f"has{h}") for h in (0, 1)],
        )
        .filter(~pl.col("incomplete"))
    )
    choices = []
    for half in (0, 1):
        other = 1 - half
        cost = pl.when(pl.col(f"has{other}")).then(pl.col(f"c{other}")).otherwise(f"c{half}")
        choices.append(
            costs.with_columns(
                cost.alias("cost"), (pl.col("k") != pl.col("k_stream")).alias("moved")
            )
            .group_by(stream)
            .agg(pl.col("k").sort_by(["cost", "moved", "k"]).first().alias("k_single"))
            .with_columns(pl.lit(half, pl.Int8).alias("half"))
        )
    return pl.concat(choices).collect()


def _with_single_k_s(
    multi: pl.DataFrame, single_k: pl.DataFrame, spt: _SingleTaskSpt
) -> pl.DataFrame:
    """``multi`` with k_single (its half's best single k) and t_s_single = n_r * spt(c with
    k = k_single, p_r)."""
    multi = multi.join(
        single_k.rename({"k_stream": "k"}),
        on=[*_CONFIG_BUT_K, "k", "mixture", "half"],
        how="left",
        nulls_equal=True,
    )
    at_single = (
        multi.lazy()
        .select([*_CONFIG_BUT_K, "k_single", "prompt_id", "repeat", "request_id", "run_id"])
        .rename({"k_single": "k"})
    )
    at_single = spt.attach(at_single, "spt_single").collect()
    return multi.join(
        at_single.select(["run_id", "request_id", "spt_single"]), on=["run_id", "request_id"]
    ).with_columns((pl.col("n") * pl.col("spt_single")).round(9).alias("t_s_single"))


# -- per stream: sums, control, parts and their intervals --------------------------------------


def _reference_rows(
    single: pl.DataFrame, config: dict[str, Any], best: dict[str, int]
) -> pl.DataFrame:
    """The single-task requests of ``config`` (k aside) of each task at its best k."""
    chosen = pl.DataFrame(
        {"category": list(best), "k": list(best.values())},
        schema={"category": single.schema["category"], "k": single.schema["k"]},
    )
    # eq_missing: a null configuration value matches itself, as in the joins above (nulls_equal)
    return single.filter(*[pl.col(c).eq_missing(config[c]) for c in _CONFIG_BUT_K]).join(
        chosen, on=["category", "k"], how="semi"
    )


def _reference_rate(single: pl.DataFrame, config: dict[str, Any], best: dict[str, int]) -> float:
    """The single-task benchmark's seconds per token, sum W / sum N', over the single-task
    requests of ``config`` (k aside) at each task's best k."""
    rows = _reference_rows(single, config, best)
    return float(rows["wall_s"].sum() / rows["new_tokens"].cast(pl.Float64).sum())


@dataclass(frozen=True)
class _Bootstrap:
    """Percentile bootstrap over a stream's requests: ``n_boot`` resamples at ``level``; each
    resampling is seeded by (``seed``, the stream's index, 0 for the stream or 1 its control)."""

    n_boot: int
    level: float
    seed: int

    def sums(
        self, frame: pl.DataFrame, columns: Sequence[str], stream: int, draw: int
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Sums of ``columns`` over ``frame``'s rows (arrays of one) and over each resample.

        Requests are resampled within each task (stratified by ``category``, the i-th stratum
        seeded by (seed, stream, draw, i); tasks of one request pooled,
        :func:`specviz.metrics.bootstrap.strata`): a mixture fixes how many requests each task
        has, so a resample keeps those counts and varies only which prompts a task has.
        """
        cols = {c: frame[c].to_numpy() for c in columns}
        point = {c: np.asarray([v.sum()]) for c, v in cols.items()}
        stratum = strata(frame["category"].to_list())
        sampled = stratified_sums(cols, stratum, self.n_boot, [self.seed, stream, draw])
        return point, sampled

    def bounds(self, sampled: np.ndarray) -> tuple[float, float]:
        """The percentile interval of the finite resampled values; (nan, nan) when none is
        (:func:`specviz.metrics.bootstrap.percentile_bounds`, the interval of every bootstrap)."""
        return percentile_bounds(sampled, self.level)


@dataclass(frozen=True)
class _Streams:
    """The multitask streams, keyed by (configuration, mixture), and what their rows need."""

    by_key: dict[tuple[Any, ...], pl.DataFrame]
    single: pl.DataFrame
    persistent_policies: Sequence[str]
    boot: _Bootstrap

    def in_order(self) -> list[tuple[Any, ...]]:
        """The stream keys sorted column by column, nulls last."""
        return sorted(self.by_key, key=lambda key: tuple((v is None, v) for v in key))

    def control(self, config: dict[str, Any]) -> tuple[str, pl.DataFrame | None]:
        """The control of stream ``config``: ("not needed", None) for a policy without state
        across requests; else the constant-policy stream of the same target, temperature,
        drafter, k and mixture, ("constant", its requests), or ("missing", None)."""
        if config["policy"] not in self.persistent_policies:
            return "not needed", None
        key = tuple("constant" if g == "policy" else v for g, v in config.items())
        control = self.by_key.get(key)
        return ("missing", None) if control is None else ("constant", control)

    def rho(
        self, control: pl.DataFrame | None, stream: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The control's relative gap rho = (T_M - T_S) / T_S, point and resampled (None, None
        without a control)."""
        if control is None:
            return None, None
        point, sampled = self.boot.sums(control, ("t_m", "t_s"), stream, 1)
        return _relative_gap(point), _relative_gap(sampled)

    def row(self, stream: int, key: tuple[Any, ...]) -> dict[str, Any]:
        """The :func:`degradation` row of stream ``key`` (the ``stream``-th in order)."""
        config = dict(zip(_STREAM_GROUP, key, strict=True))
        frame = self.by_key[key]
        best = dict(frame.select("category", "k_best").unique().iter_rows())
        single_k = dict(frame.select("half", "k_single").unique().iter_rows())
        rate = _reference_rate(self.single, config, best)
        columns = ("n", "t_m", "t_s", "t_s_best", "t_s_single")
        point, sampled = self.boot.sums(frame, columns, stream, 0)
        state, control = self.control(config)
        rho_point, rho_sampled = self.rho(control, stream)
        return {
            **config,
            **_totals(frame.height, point, rate, best, state),
            "best_single_k": _halves_text(single_k),
            "thin_tasks": thin_tasks(frame["category"].to_list()),
            "control_thin_tasks": None
            if control is None
            else thin_tasks(control["category"].to_list()),
            **_parts(
                _decompose(point, rate, rho_point, state),
                _decompose(sampled, rate, rho_sampled, state),
                self.boot,
            ),
        }


def _relative_gap(sums: dict[str, np.ndarray]) -> np.ndarray:
    """(T_M - T_S) / T_S from sums of t_m and t_s."""
    return (sums["t_m"] - sums["t_s"]) / sums["t_s"]


def _decompose(
    s: dict[str, np.ndarray], rate: float, rho: np.ndarray | None, control: str
) -> dict[str, np.ndarray]:
    """The parts from sums of n, t_m, t_s, t_s_best, t_s_single (point: length 1; bootstrap:
    n_boot).

    total = T_M - N * rate, composition = T_S* - N * rate, tuning = T_S - T_S1, k_mismatch =
    T_S1 - T_S*; the gap
    T_M - T_S is all residual without state across requests ("not needed"), unknown without a
    control ("missing"), else residual = rho * T_S and carry_over = T_M - T_S - residual.
    """
    gap = s["t_m"] - s["t_s"]
    out = {
        "total": s["t_m"] - s["n"] * rate,
        "composition": s["t_s_best"] - s["n"] * rate,
        "tuning": s["t_s"] - s["t_s_single"],
        "k_mismatch": s["t_s_single"] - s["t_s_best"],
    }
    if control == "not needed":
        out["carry_over"], out["residual"] = np.zeros_like(gap), gap
    elif control == "missing":
        out["carry_over"] = out["residual"] = np.full_like(gap, np.nan)
    else:
        out["residual"] = rho * s["t_s"]
        out["carry_over"] = gap - out["residual"]
    return out


def _totals(
    requests: int, s: dict[str, np.ndarray], rate: float, best: dict[str, int], control: str
) -> dict[str, Any]:
    """A stream's requests, N, T_M, T_S, T_S*, T_ref = N * rate, N / T_M, 1 / rate, its best k
    per task and its control, from the point sums ``s``."""
    n, t_m = s["n"][0], s["t_m"][0]
    return {
        "requests": requests,
        "tokens": float(n),
        "multitask_s": float(t_m),
        "single_task_s": float(s["t_s"][0]),
        "tuned_single_task_s": float(s["t_s_best"][0]),
        "single_k_s": float(s["t_s_single"][0]),
        "reference_s": float(n * rate),
        "multitask_tokens_per_s": float(n / t_m),
        "reference_tokens_per_s": 1.0 / rate,
        "best_k": ", ".join(f"{c}={k}" for c, k in sorted(best.items())),
        "control": control,
    }


def _parts(
    point: dict[str, np.ndarray], sampled: dict[str, np.ndarray], boot: _Bootstrap
) -> dict[str, float | None]:
    """Each part with its ``_low`` / ``_high`` bootstrap bounds, to the nanosecond (null when
    undefined: no control, or no finite resample)."""
    row: dict[str, float | None] = {}
    for name in ESTIMATES:
        low, high = boot.bounds(sampled[name])
        row[name] = _ns_or_null(float(point[name][0]))
        row[f"{name}_low"] = _ns_or_null(low)
        row[f"{name}_high"] = _ns_or_null(high)
    return row


def _halves_text(single_k: dict[int, int]) -> str:
    """The best single k: ``"5"`` when both halves chose it, else ``"4/5"`` (half 0 / half 1)."""
    ks = [single_k[h] for h in sorted(single_k)]
    return str(ks[0]) if len(set(ks)) == 1 else "/".join(map(str, ks))


def _ns_or_null(value: float) -> float | None:
    return None if np.isnan(value) else _ns(value)


def _ns(value: float) -> float:
    """Seconds rounded to the nanosecond (+0.0 for a negative zero)."""
    return round(float(value), 9) + 0.0


def _table_schema(multi: pl.DataFrame) -> dict[str, pl.DataType]:
    """The schema of :func:`degradation`'s table (the stream columns typed as in ``multi``)."""
    schema: dict[str, pl.DataType] = {c: multi.schema[c] for c in _STREAM_GROUP}
    schema["requests"] = pl.Int64()
    schema.update(dict.fromkeys(_FLOAT_COLUMNS, pl.Float64()))
    schema.update({"best_k": pl.String(), "control": pl.String(), "best_single_k": pl.String()})
    schema.update({"thin_tasks": _THIN_TASKS, "control_thin_tasks": _THIN_TASKS})
    schema.update({f"{p}{s}": pl.Float64() for p in ESTIMATES for s in ("", "_low", "_high")})
    return schema


def degradation(
    requests: Frame,
    *,
    persistent_policies: Sequence[str] = PERSISTENT_POLICIES,
    n_boot: int = METRIC_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
    seconds: str = "wall_s",
) -> pl.DataFrame:
    """Decompose each multitask stream's extra seconds against the single-task reference.

    ``seconds``: the request column timing each request: ``wall_s`` (the wall clock) or
    ``modelled_s`` (cost accounting, :mod:`specviz.metrics.accounting`); the formulas are the
    same. Parts are rounded to the nanosecond: a part that is zero by construction reads 0.0.

    One row per multitask (target, temperature, drafter, policy, k, mixture): requests, tokens,
    multitask_s, single_task_s, tuned_single_task_s, single_k_s, reference_s,
    multitask_tokens_per_s, reference_tokens_per_s, best_k (task=k, ...), control (constant |
    not needed | missing), best_single_k (the cross-fitted one k: "5", or "4/5" by half),
    thin_tasks and control_thin_tasks (the stream's and its control's tasks with fewer than
    ``MIN_TASK_REQUESTS`` requests, as category/requests structs; null without a control:
    read by :func:`thin_tasks_of_term`), and
    total = composition + tuning + k_mismatch + carry_over + residual (seconds; positive =
    slower),
    each with ``_low`` / ``_high`` percentile bootstrap bounds. Formulas: module docstring and
    docs/metrics.md. Raises MissingCounterpartError when a multitask request has no single-task
    request of the same configuration and prompt, NoMultitaskStreamError when there is no
    multitask stream at all.
    """
    multi, single = _per_request(requests, seconds)
    if multi.height == 0:
        raise NoMultitaskStreamError(
            "no multitask stream to decompose: need a (run_id, mixture) holding several "
            "categories whose configuration was also run single-task"
        )
    streams = _Streams(
        by_key=multi.partition_by(list(_STREAM_GROUP), as_dict=True, maintain_order=True),
        single=single,
        persistent_policies=persistent_policies,
        boot=_Bootstrap(n_boot, level, seed),
    )
    rows = [streams.row(i, key) for i, key in enumerate(streams.in_order())]
    return pl.DataFrame(rows, schema=_table_schema(multi), orient="row")


def request_parts(requests: Frame, seconds: str = "wall_s") -> pl.DataFrame:
    """The per-request figures :func:`degradation` sums and resamples, one row per multitask
    request (the power plan, :mod:`specviz.metrics.power`, reads their spread): the stream's
    configuration and mixture, run_id, request_index, category, prompt_id, ``n`` (new tokens),
    ``t_m``, ``t_s``, ``t_s_best``, ``t_s_single`` (module docstring) and ``rate``, the stream's
    single-task reference seconds per token (T_ref = N * rate). ``seconds`` as in
    :func:`degradation`."""
    multi, single = _per_request(requests, seconds)
    rates = []
    for key, frame in multi.partition_by(list(_STREAM_GROUP), as_dict=True).items():
        config = dict(zip(_STREAM_GROUP, key, strict=True))
        best = dict(frame.select("category", "k_best").unique().iter_rows())
        rates.append(pl.DataFrame([{**config, "rate": _reference_rate(single, config, best)}]))
    columns = [*_STREAM_GROUP, "run_id", "request_index", "category", "prompt_id", "n", "t_m",
               "t_s", "t_s_best", "t_s_single"]  # fmt: skip
    if not rates:
        return multi.select(columns).with_columns(pl.lit(None, pl.Float64).alias("rate"))
    table = pl.concat(rates, how="vertical_relaxed").cast(
        {c: multi.schema[c] for c in _STREAM_GROUP}
    )
    return multi.select(columns).join(table, on=list(_STREAM_GROUP), nulls_equal=True)


def degradation_long(table: pl.DataFrame) -> pl.DataFrame:
    """:func:`degradation`'s parts in long form, one row per stream and part (for charts).

    Columns: target, temperature, drafter, policy, k, mixture, part (composition, tuning,
    k_mismatch, carry_over, residual, total), seconds, low, high, share (seconds / total; null
    when total is 0).
    """
    group = [*CONFIG, "mixture"]
    # each estimate with its bounds: the long form reads all three
    needed = [*group, *(f"{p}{s}" for p in ESTIMATES for s in ("", "_low", "_high"))]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"not a degradation() table: missing columns {', '.join(missing)}")
    frames = [
        table.select(
            *group,
            pl.lit(part).alias("part"),
            pl.col(part).alias("seconds"),
            pl.col(f"{part}_low").alias("low"),
            pl.col(f"{part}_high").alias("high"),
            pl.when(pl.col("total") != 0).then(pl.col(part) / pl.col("total")).alias("share"),
        )
        for part in (*TERMS, "total")
    ]
    return pl.concat(frames)


def composition_by_task(requests: Frame, seconds: str = "wall_s") -> pl.DataFrame:
    """Each task's part of each multitask stream's composition term (exactly; docs/metrics.md).

    With w_t the task's share of the stream's N tokens, w'_t its share of the single-task
    reference's tokens (the runs behind T_ref, each task at its best k), s'_t the reference's
    seconds per token on that task and rate = T_ref / N (= sum_t w'_t s'_t), and s_t the stream's
    own tasks' seconds per token at k* (T_S* restricted to the task, over its tokens):

    composition = T_S* - T_ref = sum_t [``shares_s`` + ``prompts_s``],
    ``shares_s`` = N (w_t - w'_t)(s'_t - rate): the mix gives the task more (or less) of its
    tokens than the benchmark, at a cost per token above (or below) the benchmark's average;
    ``prompts_s`` = N w_t (s_t - s'_t): within the task, the stream's prompts cost more (or less)
    per token than the task's benchmark prompts.

    One row per multitask stream (target, temperature, drafter, policy, k, mixture) and
    category: tokens, share, reference_share, spt (s_t), reference_spt (s'_t), rate, shares_s,
    prompts_s. ``seconds`` as in :func:`degradation`.
    """
    multi, single = _per_request(requests, seconds)
    rows = []
    for key, frame in multi.partition_by(list(_STREAM_GROUP), as_dict=True).items():
        config = dict(zip(_STREAM_GROUP, key, strict=True))
        best = dict(frame.select("category", "k_best").unique().iter_rows())
        reference = _reference_rows(single, config, best)
        ref_tokens = reference["new_tokens"].cast(pl.Float64).sum()
        rate = float(reference["wall_s"].sum() / ref_tokens)
        n = float(frame["n"].sum())
        for category in sorted(best):
            mine = frame.filter(pl.col("category") == category)
            ref = reference.filter(pl.col("category") == category)
            w, s = float(mine["n"].sum()) / n, float(mine["t_s_best"].sum() / mine["n"].sum())
            w_ref = float(ref["new_tokens"].cast(pl.Float64).sum()) / ref_tokens
            s_ref = float(ref["wall_s"].sum() / ref["new_tokens"].cast(pl.Float64).sum())
            rows.append(
                {
                    **config,
                    "category": category,
                    "tokens": float(mine["n"].sum()),
                    "share": w,
                    "reference_share": w_ref,
                    "spt": s,
                    "reference_spt": s_ref,
                    "rate": rate,
                    "shares_s": n * (w - w_ref) * (s_ref - rate),
                    "prompts_s": n * w * (s - s_ref),
                }
            )
    return pl.DataFrame(rows).sort([*_STREAM_GROUP, "category"]) if rows else pl.DataFrame()
