"""Percentile bootstrap confidence intervals over requests (seeded, vectorized with numpy).

Every statistic specviz reports is a function of column *sums* over requests: a pooled ratio
(acceptance rate = sum(accepted) / sum(drafted)), a mean (sum(x) / n) or a combination (the ratio
of totals of a speedup). The bootstrap draws ``n_boot`` resamples of the requests with
replacement (one ``integers(0, n, (n_boot, n))`` index matrix, in chunks that bound memory), sums
each column over every resample at once, applies the statistic to the resampled sums and
reports the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles. Seeds are explicit: the same
data, seed and ``n_boot`` give the same interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from specviz.metrics.frames import Frame, group_list
from specviz.metrics.summary import request_table

Sums = Mapping[str, np.ndarray]
Statistic = Callable[[Sums], np.ndarray]

#: default resamples of a metric function called directly (notebooks, tests, library use); the
#: reports, the CLI and the study answer pass :data:`specviz.config.N_BOOT`
METRIC_N_BOOT = 2000

#: elements (resamples x requests) of one chunk of the index matrix
_CHUNK_ELEMENTS = 2_000_000

#: the fewest requests a task (a resampling stratum) needs in a stream for its resamples to vary;
#: fewer: pooled with the stream's other such tasks (:func:`strata`)
MIN_TASK_REQUESTS = 2


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float


def resampled_sums(
    columns: Mapping[str, np.ndarray], n_boot: int, seed: int | Sequence[int]
) -> dict[str, np.ndarray]:
    """Column sums over ``n_boot`` resamples (with replacement) of the rows: arrays of n_boot."""
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"all columns need the same length, got {sorted(lengths)}")
    (n,) = lengths
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of requests")
    rng = np.random.default_rng(seed)
    out = {name: np.empty(n_boot) for name in arrays}
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        for name, values in arrays.items():
            out[name][start:stop] = values[idx].sum(axis=1)
    return out


def strata(categories: Sequence[str | None]) -> np.ndarray:
    """Each request's resampling stratum (an int, in resampling order) for a bootstrap that
    resamples a stream's requests within each task.

    A task with at least :data:`MIN_TASK_REQUESTS` requests is its own stratum (tasks in sorted
    order, no task last). A task with fewer would redraw the same request in every resample and
    contribute no spread, so every such task of the stream goes into one pooled stratum, last,
    when the pool holds at least :data:`MIN_TASK_REQUESTS` requests: the *collapsed strata*
    technique of survey sampling (Hansen, Hurwitz and Madow 1953; Cochran, *Sampling
    Techniques*, 1977), which slightly overstates the spread (a resample may trade a request of
    one pooled task for one of another) rather than hide it. A lone thin task (the pool would
    hold one request) stays its own stratum: :func:`unpooled_thin_tasks` names it.
    """
    counts = Counter(categories)
    pooled = _pooled(counts)
    own = sorted((c for c in counts if c not in pooled), key=lambda c: (c is None, c))
    index = {c: i for i, c in enumerate(own)} | {c: len(own) for c in pooled}
    return np.asarray([index[c] for c in categories], dtype=np.int64)


def _pooled(counts: Counter[str | None]) -> set[str | None]:
    """The thin tasks of a stream that share the pooled stratum (none when too few to pool)."""
    thin = {c for c, n in counts.items() if n < MIN_TASK_REQUESTS}
    return thin if sum(counts[c] for c in thin) >= MIN_TASK_REQUESTS else set()


def unpooled_thin_tasks(categories: Sequence[str | None]) -> dict[str | None, int]:
    """The tasks of :func:`strata` whose stratum has fewer than :data:`MIN_TASK_REQUESTS`
    requests (at most one: a lone thin task), with their request counts."""
    counts = Counter(categories)
    pooled = _pooled(counts)
    return {c: n for c, n in counts.items() if n < MIN_TASK_REQUESTS and c not in pooled}


def stratified_sums(
    columns: Mapping[str, np.ndarray],
    stratum: np.ndarray,
    n_boot: int,
    seed: Sequence[int],
) -> dict[str, np.ndarray]:
    """Column sums over ``n_boot`` resamples that redraw each stratum's rows within it (so
    each stratum keeps its count of rows); the i-th stratum in order is seeded by
    (``*seed``, i). ``stratum``: one label per row (:func:`strata`)."""
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    out = {name: np.zeros(n_boot) for name in arrays}
    for i, label in enumerate(np.unique(stratum)):
        rows = stratum == label
        part = {name: values[rows] for name, values in arrays.items()}
        for name, sums in resampled_sums(part, n_boot, [*seed, i]).items():
            out[name] += sums
    return out


def percentile_bounds(sampled: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval at ``level`` of the finite resampled values: their ``(1 - level)
    / 2`` and ``(1 + level) / 2`` quantiles (numpy's linear interpolation); (nan, nan) when no
    value is finite. The one interval code path: :func:`bootstrap` and the degradation
    decomposition (:mod:`specviz.metrics.degradation`) both call it."""
    finite = np.asarray(sampled, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap(
    columns: Mapping[str, np.ndarray],
    statistic: Statistic,
    *,
    n_boot: int = METRIC_N_BOOT,
    level: float = 0.95,
    seed: int | Sequence[int] = 0,
) -> Interval:
    """Estimate ``statistic(column sums)`` and its percentile interval over resampled rows."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    full = {
        name: np.asarray([np.sum(np.asarray(v, dtype=np.float64))]) for name, v in columns.items()
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(np.asarray(statistic(full))[0])
        stats = np.asarray(statistic(resampled_sums(columns, n_boot, seed)), dtype=np.float64)
    low, high = percentile_bounds(stats, level)
    return Interval(estimate, low, high)


def bootstrap_ratio(
    numerator: np.ndarray,
    denominator: np.ndarray,
    *,
    n_boot: int = METRIC_N_BOOT,
    level: float = 0.95,
    seed: int | Sequence[int] = 0,
) -> Interval:
    """Pooled ratio sum(numerator) / sum(denominator) over requests, with its interval.

    A mean of per-request values x is ``bootstrap_ratio(x, ones)``.
    """
    return bootstrap(
        {"num": numerator, "den": denominator},
        lambda s: s["num"] / s["den"],
        n_boot=n_boot,
        level=level,
        seed=seed,
    )


def bootstrap_by(
    frame: Frame,
    by: str | Sequence[str],
    numerator: str,
    denominator: str | None = None,
    *,
    n_boot: int = METRIC_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Per group: estimate, low, high of sum(numerator) / sum(denominator) over rows (requests).

    Without a denominator the statistic is the mean of ``numerator``. Group i (in sorted order)
    uses the seed sequence ``[seed, i]``. Columns: the group columns, n (rows), estimate, low, high.
    """
    by = group_list(by)
    df = frame.lazy().collect() if isinstance(frame, pl.LazyFrame) else frame
    den_expr = pl.lit(1.0) if denominator is None else pl.col(denominator)
    df = df.select(
        [
            *by,
            pl.col(numerator).cast(pl.Float64).alias("_num"),
            den_expr.cast(pl.Float64).alias("_den"),
        ]
    )
    groups = df.partition_by(by, as_dict=True, maintain_order=True) if by else {(): df}
    rows = []
    for i, key in enumerate(sorted(groups, key=lambda k: tuple((v is None, v) for v in k))):
        part = groups[key]
        iv = bootstrap_ratio(
            part["_num"].to_numpy(),
            part["_den"].to_numpy(),
            n_boot=n_boot,
            level=level,
            seed=[seed, i],
        )
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n": part.height,
                "estimate": iv.estimate,
                "low": iv.low,
                "high": iv.high,
            }
        )
    schema = {
        **{c: df.schema[c] for c in by},
        "n": pl.Int64,
        "estimate": pl.Float64,
        "low": pl.Float64,
        "high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


#: metric -> (numerator, denominator) over the columns of :func:`specviz.metrics.request_table`
RATIO_METRICS: dict[str, tuple[str, str]] = {
    "acceptance_rate": ("accepted", "drafted"),
    "alpha": ("accepted", "verified_drafts"),
    "mean_accepted_length": ("verify_tokens", "verify_rounds"),
    "tokens_per_s": ("tokens", "round_s"),
}


def metric_intervals(
    events: Frame,
    by: str | Sequence[str] = (),
    metrics: Sequence[str] = tuple(RATIO_METRICS),
    *,
    n_boot: int = METRIC_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Bootstrap intervals over requests of pooled event metrics, one row per group and metric.

    ``metrics`` are names of :data:`RATIO_METRICS` (each a ratio of per-request sums; the
    estimate equals the column of :func:`specviz.metrics.summary`). Columns: the group columns,
    metric, n (requests), estimate, low, high.
    """
    unknown = [m for m in metrics if m not in RATIO_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(RATIO_METRICS)}")
    by = group_list(by)
    table = request_table(events, by).with_columns(
        (pl.col("draft_s") + pl.col("verify_s") + pl.col("prefill_s")).alias("round_s")
    )
    parts = []
    for metric in metrics:
        num, den = RATIO_METRICS[metric]
        part = bootstrap_by(table, by, num, den, n_boot=n_boot, level=level, seed=seed)
        parts.append(part.with_columns(pl.lit(metric).alias("metric")))
    return pl.concat(parts).select([*by, "metric", "n", "estimate", "low", "high"])
