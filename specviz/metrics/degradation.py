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
- ``reference_s`` T_ref = N * (sum W / sum N') over the whole single-task runs, at their tuned k,
  of the tasks present in the stream: the stream's N tokens at the throughput the single-task
  benchmark reports.

The measured difference ``total = T_M - T_ref`` is split into

- ``composition`` = T_S* - T_ref: the stream weights the tasks (and prompts) differently from
  the single-task benchmark (zero when it holds the same prompts);
- ``k_mismatch`` = T_S - T_S*: one k for all tasks instead of each task's best;
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

Intervals: percentile bootstrap over the stream's requests (and, independently, over the
control's requests for rho); T_ref's rate is held fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from specviz.errors import SpecvizError
from specviz.metrics.bootstrap import resampled_sums
from specviz.metrics.frames import Frame, requests_frame

CONFIG = ("target", "temperature", "drafter", "policy", "k")
STREAM = ("run_id", "mixture")
PERSISTENT_POLICIES = ("heuristic",)
PARTS = ("total", "composition", "k_mismatch", "carry_over", "residual")


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


def _single_spt(single: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    agg = (pl.col("wall_s").sum() / pl.col("new_tokens").cast(pl.Float64).sum()).alias("spt")
    per_repeat = single.group_by([*CONFIG, "prompt_id", "repeat"]).agg(agg)
    pooled = single.group_by([*CONFIG, "prompt_id"]).agg(agg.alias("spt_pooled"))
    return per_repeat, pooled


def _attach_spt(frame: pl.LazyFrame, per_repeat, pooled, name: str) -> pl.LazyFrame:
    return (
        frame.join(per_repeat, on=[*CONFIG, "prompt_id", "repeat"], how="left", nulls_equal=True)
        .join(pooled, on=[*CONFIG, "prompt_id"], how="left", nulls_equal=True)
        .with_columns(pl.coalesce("spt", "spt_pooled").alias(name))
        .drop("spt", "spt_pooled")
    )


def single_task_best_k(requests: Frame) -> pl.DataFrame:
    """Measured seconds per token of each single-task (task, k), over that task's single-task runs.

    Columns: target, temperature, drafter, policy, category, k, requests, tokens, wall_s,
    tokens_per_s, best (this k has the highest throughput of its task and configuration).
    """
    single = label_streams(requests).filter(~pl.col("multitask"))
    keys = [c for c in CONFIG if c != "k"]
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


def _per_request(requests: Frame, seconds: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Multitask requests with t_m, t_s, t_s_best, k_best; and the single-task request table.

    Per-request seconds are rounded to the nanosecond, so a request priced exactly like its
    single-task counterpart (cost accounting) gives t_m == t_s bit for bit.
    """
    labelled = label_streams(requests, seconds)
    single = labelled.filter(~pl.col("multitask"))
    # only configurations run single-task at least once can be decomposed
    configs = single.select(list(CONFIG)).unique()
    multi = (
        labelled.filter(pl.col("multitask"))
        .join(configs, on=list(CONFIG), how="semi", nulls_equal=True)
        .with_columns(
            pl.col("new_tokens").cast(pl.Float64).alias("n"), pl.col("wall_s").round(9).alias("t_m")
        )
    )
    per_repeat, pooled = _single_spt(single)
    multi = _attach_spt(multi, per_repeat, pooled, "spt_k0").collect()
    missing = multi.filter(pl.col("spt_k0").is_null())
    if missing.height:
        raise MissingCounterpartError(
            missing.select([*CONFIG, "prompt_id"]).unique().sort([*CONFIG, "prompt_id"])
        )
    multi = multi.with_columns((pl.col("n") * pl.col("spt_k0")).round(9).alias("t_s"))

    # candidate k per multitask request: every single-task k of the same config but k
    keys = [c for c in CONFIG if c != "k"]
    ks = single.select([*keys, pl.col("k").alias("k_alt")]).unique()
    cand = (
        multi.lazy()
        .select(
            [*keys, "k", "mixture", "run_id", "request_id", "category", "prompt_id", "repeat", "n"]
        )
        .join(ks, on=keys, how="inner", nulls_equal=True)
    )
    cand = _attach_spt(
        cand.with_columns(pl.col("k").alias("k_stream"), pl.col("k_alt").alias("k")).drop("k_alt"),
        per_repeat,
        pooled,
        "spt_alt",
    )
    stream_task = [*keys, "k_stream", "mixture", "category"]
    cost = (
        cand.group_by([*stream_task, "k"])
        .agg(
            pl.col("spt_alt").is_null().any().alias("incomplete"),
            (pl.col("n") * pl.col("spt_alt")).sum().alias("cost"),
        )
        .filter(~pl.col("incomplete"))
        .group_by(stream_task)
        .agg(pl.col("k").sort_by(["cost", "k"]).first().alias("k_best"))
    )
    multi = (
        multi.lazy()
        .join(
            cost.rename({"k_stream": "k"}),
            on=[*keys, "k", "mixture", "category"],
            how="left",
            nulls_equal=True,
        )
        .collect()
    )
    best = (
        multi.lazy()
        .select([*keys, "k_best", "prompt_id", "repeat", "request_id", "run_id"])
        .rename({"k_best": "k"})
    )
    best = _attach_spt(best, per_repeat, pooled, "spt_best").collect()
    multi = multi.join(
        best.select(["run_id", "request_id", "spt_best"]), on=["run_id", "request_id"], how="left"
    ).with_columns((pl.col("n") * pl.col("spt_best")).round(9).alias("t_s_best"))
    # a fixed row order makes the seeded bootstrap reproducible
    return multi.sort(["run_id", "request_index"]), single.collect()


def _reference_rate(single: pl.DataFrame, config: dict, best: dict[str, int]) -> float:
    keys = [c for c in CONFIG if c != "k"]
    chosen = pl.DataFrame(
        {"category": list(best), "k": list(best.values())},
        schema={"category": single.schema["category"], "k": single.schema["k"]},
    )
    rows = single.filter(*[pl.col(c) == config[c] for c in keys]).join(
        chosen, on=["category", "k"], how="semi"
    )
    return float(rows["wall_s"].sum() / rows["new_tokens"].cast(pl.Float64).sum())


def _gap_sums(frame: pl.DataFrame, n_boot: int, seed: Sequence[int]) -> tuple[dict, dict]:
    cols = {"t_m": frame["t_m"].to_numpy(), "t_s": frame["t_s"].to_numpy()}
    full = {k: np.asarray([v.sum()]) for k, v in cols.items()}
    return full, resampled_sums(cols, n_boot, seed)


def _decompose(
    s: dict[str, np.ndarray], rate: float, rho: np.ndarray | None, control: str
) -> dict[str, np.ndarray]:
    """The parts from sums of n, t_m, t_s, t_s_best (point: length 1; bootstrap: n_boot)."""
    gap = s["t_m"] - s["t_s"]
    out = {
        "total": s["t_m"] - s["n"] * rate,
        "composition": s["t_s_best"] - s["n"] * rate,
        "k_mismatch": s["t_s"] - s["t_s_best"],
    }
    if control == "not needed":
        out["carry_over"], out["residual"] = np.zeros_like(gap), gap
    elif control == "missing":
        out["carry_over"] = out["residual"] = np.full_like(gap, np.nan)
    else:
        out["residual"] = rho * s["t_s"]
        out["carry_over"] = gap - out["residual"]
    return out


def _ns(value: float) -> float:
    """Seconds rounded to the nanosecond (+0.0 for a negative zero)."""
    return round(float(value), 9) + 0.0


def degradation(
    requests: Frame,
    *,
    persistent_policies: Sequence[str] = PERSISTENT_POLICIES,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    seconds: str = "wall_s",
) -> pl.DataFrame:
    """Decompose each multitask stream's extra seconds against the single-task reference.

    ``seconds``: the request column timing each request: ``wall_s`` (the wall clock) or
    ``modelled_s`` (cost accounting, :mod:`specviz.metrics.accounting`); the formulas are the
    same. Parts are rounded to the nanosecond: a part that is zero by construction reads 0.0.

    One row per multitask (target, temperature, drafter, policy, k, mixture): requests, tokens,
    multitask_s, single_task_s, tuned_single_task_s, reference_s, multitask_tokens_per_s,
    reference_tokens_per_s, best_k (task=k, ...), control (constant | not needed | missing),
    and total = composition + k_mismatch + carry_over + residual (seconds; positive = slower),
    each with ``_low`` / ``_high`` percentile bootstrap bounds. Formulas: module docstring and
    docs/metrics.md. Raises MissingCounterpartError when a multitask request has no single-task
    request of the same configuration and prompt, NoMultitaskStreamError when there is no
    multitask stream at all.
    """
    multi, single = _per_request(requests, seconds)
    group = [*CONFIG, "mixture"]
    if multi.height == 0:
        raise NoMultitaskStreamError(
            "no multitask stream to decompose: need a (run_id, mixture) holding several "
            "categories whose configuration was also run single-task"
        )
    parts = multi.partition_by(group, as_dict=True, maintain_order=True)
    order = sorted(parts, key=lambda key: tuple((v is None, v) for v in key))
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    rows = []
    for i, key in enumerate(order):
        frame = parts[key]
        config = dict(zip(group, key, strict=True))
        best = dict(frame.select("category", "k_best").unique().iter_rows())
        rate = _reference_rate(single, config, best)
        cols = {c: frame[c].to_numpy() for c in ("n", "t_m", "t_s", "t_s_best")}
        full = {c: np.asarray([v.sum()]) for c, v in cols.items()}
        boot = resampled_sums(cols, n_boot, [seed, i, 0])

        control_state = "not needed"
        rho_full = rho_boot = None
        if config["policy"] in persistent_policies:
            ctrl_key = tuple("constant" if g == "policy" else config[g] for g in group)
            control = parts.get(ctrl_key)
            if control is None:
                control_state = "missing"
            else:
                control_state = "constant"
                c_full, c_boot = _gap_sums(control, n_boot, [seed, i, 1])
                rho_full = (c_full["t_m"] - c_full["t_s"]) / c_full["t_s"]
                rho_boot = (c_boot["t_m"] - c_boot["t_s"]) / c_boot["t_s"]

        point = _decompose(full, rate, rho_full, control_state)
        sampled = _decompose(boot, rate, rho_boot, control_state)
        row = {
            **config,
            "requests": frame.height,
            "tokens": float(full["n"][0]),
            "multitask_s": float(full["t_m"][0]),
            "single_task_s": float(full["t_s"][0]),
            "tuned_single_task_s": float(full["t_s_best"][0]),
            "reference_s": float(full["n"][0] * rate),
            "multitask_tokens_per_s": float(full["n"][0] / full["t_m"][0]),
            "reference_tokens_per_s": 1.0 / rate,
            "best_k": ", ".join(f"{c}={k}" for c, k in sorted(best.items())),
            "control": control_state,
        }
        for name in PARTS:
            value = float(point[name][0])
            row[name] = None if np.isnan(value) else _ns(value)
            finite = sampled[name][np.isfinite(sampled[name])]
            low, high = np.quantile(finite, [lo_q, hi_q]) if finite.size else (np.nan, np.nan)
            row[f"{name}_low"] = None if np.isnan(low) else _ns(low)
            row[f"{name}_high"] = None if np.isnan(high) else _ns(high)
        rows.append(row)
    schema = {c: multi.schema[c] for c in group}
    schema.update({"requests": pl.Int64})
    schema.update(
        dict.fromkeys(
            [
                "tokens",
                "multitask_s",
                "single_task_s",
                "tuned_single_task_s",
                "reference_s",
                "multitask_tokens_per_s",
                "reference_tokens_per_s",
            ],
            pl.Float64,
        )
    )
    schema.update({"best_k": pl.String, "control": pl.String})
    schema.update({f"{p}{s}": pl.Float64 for p in PARTS for s in ("", "_low", "_high")})
    return pl.DataFrame(rows, schema=schema, orient="row")


def degradation_long(table: pl.DataFrame) -> pl.DataFrame:
    """:func:`degradation`'s parts in long form, one row per stream and part (for charts).

    Columns: target, temperature, drafter, policy, k, mixture, part (composition, k_mismatch,
    carry_over, residual, total), seconds, low, high, share (seconds / total; null when total is 0).
    """
    group = [*CONFIG, "mixture"]
    missing = [c for c in [*group, *PARTS] if c not in table.columns]
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
        for part in (*PARTS[1:], PARTS[0])
    ]
    return pl.concat(frames)
