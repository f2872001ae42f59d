"""Speedup against the autoregressive baseline (``drafter == "none"``) on the same prompts.

Pairing: each request of a method is paired with the baseline requests of the same target,
prompt_id, temperature and batch size (a batched run is compared with the baseline batched
alike; see docs/batching.md). When the baseline has a request with the same ``repeat``, that one
is used; otherwise the mean over the baseline's repeats of that prompt (column
``baseline_repeat_matched`` says which). Several baseline requests with the same key (the same
prompt run in several mixtures) are averaged. A prompt with no baseline at all raises
:class:`MissingBaselineError` listing the prompt ids; :func:`missing_baseline` lists them
without raising, so callers can filter first.

Three conventions, all reported (tokens are the request table's ``new_tokens``, seconds its
``wall_s``; t = tokens, s = seconds, b = baseline):

- ``speedup_total`` = (sum t / sum s) / (sum t_b / sum s_b): ratio of total throughputs;
- ``speedup_mean`` = mean over requests of (t / s) / (t_b / s_b): mean of per-request ratios;
- ``speedup_specbench`` = mean(t / s) / mean(t_b / s_b): Spec-Bench's ``evaluation/speed.py``
  (mean per-request throughput of the method over that of the baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from specviz.errors import SpecvizError
from specviz.metrics.bootstrap import METRIC_N_BOOT, bootstrap
from specviz.metrics.frames import Frame, group_list, requests_frame

PAIR_KEYS = ("target", "prompt_id", "temperature", "batch_size")
BASELINE = "none"


class MissingBaselineError(SpecvizError):
    """Results need the autoregressive baseline (drafter none) where there is none.

    ``missing`` holds one row per missing key (for speedups: target, prompt_id, temperature,
    batch size and the number of requests affected); the message lists them.
    """

    def __init__(self, missing: pl.DataFrame, hint: str = "") -> None:
        self.missing = missing
        keys = [c for c in missing.columns if c != "requests"]
        shown = [
            " ".join(f"{c}={row[c]}" for c in keys)
            for row in missing.head(20).iter_rows(named=True)
        ]
        more = f" and {missing.height - 20} more" if missing.height > 20 else ""
        super().__init__(
            f"no baseline (drafter none) for {missing.height} key(s): {'; '.join(shown)}{more}. "
            + (
                hint
                or "Run the baseline on these prompts, or drop them first "
                "(specviz.metrics.missing_baseline lists them)."
            )
        )


def _baselines(lazy: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    base = lazy.filter(pl.col("drafter") == BASELINE)
    agg = [
        pl.col("new_tokens").cast(pl.Float64).mean().alias("baseline_tokens"),
        pl.col("wall_s").mean().alias("baseline_wall_s"),
    ]
    per_repeat = base.group_by([*PAIR_KEYS, "repeat"]).agg(agg)
    pooled = base.group_by(list(PAIR_KEYS)).agg(agg)
    return per_repeat, pooled


def missing_baseline(requests: Frame) -> pl.DataFrame:
    """Prompts of non-baseline requests without any baseline request: target, prompt_id,
    temperature and the number of requests affected."""
    lazy = requests_frame(requests, [*PAIR_KEYS, "drafter", "repeat", "new_tokens", "wall_s"])
    _, pooled = _baselines(lazy)
    return (
        lazy.filter(pl.col("drafter") != BASELINE)
        .join(pooled.select(PAIR_KEYS), on=list(PAIR_KEYS), how="anti", nulls_equal=True)
        .group_by(list(PAIR_KEYS))
        .agg(pl.len().alias("requests"))
        .sort(list(PAIR_KEYS))
        .collect()
    )


def paired_requests(requests: Frame, seconds: str = "wall_s") -> pl.DataFrame:
    """Every non-baseline request with its baseline's tokens and seconds.

    ``seconds``: the column timing each request (``wall_s``, or ``modelled_s`` from
    :mod:`specviz.metrics.accounting`), read into ``wall_s`` for both sides. Adds baseline_tokens, baseline_wall_s, baseline_repeat_matched, tokens_per_s = new_tokens /
    wall_s, baseline_tokens_per_s and speedup = tokens_per_s / baseline_tokens_per_s (the
    per-request ratio). Raises MissingBaselineError if a prompt has no baseline.
    """
    if seconds != "wall_s":
        requests_frame(requests, [seconds])
        requests = requests.lazy().with_columns(pl.col(seconds).alias("wall_s"))
    lazy = requests_frame(
        requests,
        [*PAIR_KEYS, "drafter", "repeat", "new_tokens", "wall_s", "run_id", "request_index"],
    )
    missing = missing_baseline(lazy)
    if missing.height:
        raise MissingBaselineError(missing)
    per_repeat, pooled = _baselines(lazy)
    keys = [*PAIR_KEYS, "repeat"]
    return (
        lazy.filter(pl.col("drafter") != BASELINE)
        .join(per_repeat, on=keys, how="left", nulls_equal=True)
        .join(pooled, on=list(PAIR_KEYS), how="left", nulls_equal=True, suffix="_pooled")
        .with_columns(
            pl.col("baseline_tokens").is_not_null().alias("baseline_repeat_matched"),
            pl.coalesce("baseline_tokens", "baseline_tokens_pooled").alias("baseline_tokens"),
            pl.coalesce("baseline_wall_s", "baseline_wall_s_pooled").alias("baseline_wall_s"),
        )
        .drop("baseline_tokens_pooled", "baseline_wall_s_pooled")
        .with_columns(
            (pl.col("new_tokens") / pl.col("wall_s")).alias("tokens_per_s"),
            (pl.col("baseline_tokens") / pl.col("baseline_wall_s")).alias("baseline_tokens_per_s"),
        )
        .with_columns((pl.col("tokens_per_s") / pl.col("baseline_tokens_per_s")).alias("speedup"))
        .sort(["run_id", "request_index"])
        .collect()
    )


def _total(s):
    return (s["t"] / s["s"]) / (s["bt"] / s["bs"])


def _mean(s):
    return s["r"] / s["n"]


def _specbench(s):
    return s["v"] / s["bv"]


def speedup(
    requests: Frame,
    by: str | Sequence[str] = ("drafter", "policy", "k"),
    *,
    n_boot: int = METRIC_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
    seconds: str = "wall_s",
) -> pl.DataFrame:
    """Speedup over the baseline per group, in three conventions, with bootstrap intervals.

    ``seconds``: ``wall_s`` (wall clock) or ``modelled_s`` (cost accounting); same formulas.

    Columns: the group columns; requests; tokens, wall_s, baseline_tokens, baseline_wall_s
    (sums over the paired requests); tokens_per_s = tokens / wall_s; baseline_tokens_per_s;
    speedup_total = tokens_per_s / baseline_tokens_per_s (ratio of totals); speedup_mean = mean
    of per-request ratios; speedup_specbench = mean per-request tokens/s over the mean of the
    paired baseline's; ``*_low`` / ``*_high``: percentile bootstrap over requests (group i in
    sorted order seeded with ``[seed, i]``). Raises MissingBaselineError for prompts without a
    baseline.
    """
    by = group_list(by)
    pairs = paired_requests(requests, seconds)
    requests_frame(pairs, by)
    cols = {
        "t": pl.col("new_tokens").cast(pl.Float64),
        "s": pl.col("wall_s"),
        "bt": pl.col("baseline_tokens"),
        "bs": pl.col("baseline_wall_s"),
        "r": pl.col("speedup"),
        "v": pl.col("tokens_per_s"),
        "bv": pl.col("baseline_tokens_per_s"),
        "n": pl.lit(1.0),
    }
    data = pairs.select([*by, *[e.alias(n) for n, e in cols.items()]])
    groups = data.partition_by(by, as_dict=True, maintain_order=True) if by else {(): data}
    stats = {"speedup_total": _total, "speedup_mean": _mean, "speedup_specbench": _specbench}
    rows = []
    for i, key in enumerate(sorted(groups, key=lambda k: tuple((v is None, v) for v in k))):
        part = groups[key]
        arrays = {n: part[n].to_numpy() for n in cols}
        row = {
            **dict(zip(by, key, strict=True)),
            "requests": part.height,
            "tokens": float(arrays["t"].sum()),
            "wall_s": float(arrays["s"].sum()),
            "baseline_tokens": float(arrays["bt"].sum()),
            "baseline_wall_s": float(arrays["bs"].sum()),
        }
        row["tokens_per_s"] = row["tokens"] / row["wall_s"]
        row["baseline_tokens_per_s"] = row["baseline_tokens"] / row["baseline_wall_s"]
        for name, stat in stats.items():
            iv = bootstrap(arrays, stat, n_boot=n_boot, level=level, seed=[seed, i])
            row[name], row[f"{name}_low"], row[f"{name}_high"] = iv.estimate, iv.low, iv.high
        rows.append(row)
    schema = {c: pairs.schema[c] for c in by}
    schema["requests"] = pl.Int64
    names = [
        "tokens",
        "wall_s",
        "baseline_tokens",
        "baseline_wall_s",
        "tokens_per_s",
        "baseline_tokens_per_s",
    ]
    names += [f"{s}{suffix}" for s in stats for suffix in ("", "_low", "_high")]
    schema.update(dict.fromkeys(names, pl.Float64))
    return pl.DataFrame(rows, schema=schema, orient="row")
