"""The oracle: each task's best static configuration, chosen on one half of its prompts and
scored on the other, and the gap between a multitask stream and it.

A *static configuration* is a drafter and k under the ``constant`` policy, or the
autoregressive baseline (drafter ``none``, k = 0: "do not speculate"), measured in single-task
streams (unbatched requests, :func:`specviz.metrics.degradation.label_streams`). For every
target, temperature and task, the task's prompts (those of its single-task streams) are sorted
by ``prompt_id`` and split into two halves, alternately (half 0: 1st, 3rd, ...; half 1: 2nd,
4th, ...). Cross-fitting:

- ``choice(task, h)`` = the configuration with the least seconds per token,
  spt = sum wall_s / sum new_tokens, over the requests of the task's prompts in half h, among
  the configurations measured on every prompt of the task (ties: the first in drafter, k
  order);
- a prompt p of half h is scored with the configuration chosen on the *other* half:
  ``oracle_spt(p) = spt(choice(task, 1 - h), p)`` (pooled over repeats). Choosing and scoring on
  the same prompts would favour the luckiest configuration; a task with a single prompt is
  scored with the choice made on that prompt (``held_out`` false).

For a multitask stream (a run and mixture with several tasks) of any configuration, with
requests r of prompt p_r and n_r new tokens (the specviz convention of
:mod:`specviz.metrics.degradation`: seconds for the stream's own tokens):

- ``multitask_s`` T_M = sum_r wall_r;
- ``oracle_s`` T_O = sum_r n_r * oracle_spt(p_r);
- ``gap_s`` = T_M - T_O: what a per-task choice of (drafter, k) could recover at most (by
  static choices; negative when the stream beats it); ``gap_share`` = gap_s / T_M.

:func:`recovered_share` says which share of a reference method's gap a remedy recovers:
(T_M(reference) - T_M(remedy)) / (T_M(reference) - T_O).
"""

from __future__ import annotations

import polars as pl

from specviz.errors import SpecvizError
from specviz.metrics.degradation import label_streams
from specviz.metrics.frames import Frame

SETTING = ("target", "temperature")
STATIC = ("drafter", "k")
STREAM_CONFIG = ("target", "temperature", "drafter", "policy", "k")


class NoOracleError(SpecvizError):
    """A task of a multitask stream has no static configuration measured on all its prompts."""


def _spt() -> pl.Expr:
    return pl.col("wall_s").sum() / pl.col("new_tokens").cast(pl.Float64).sum()


def static_requests(requests: Frame) -> pl.LazyFrame:
    """Single-task requests of static configurations (constant policy, or the baseline)."""
    lazy = label_streams(requests)
    static = (pl.col("policy") == "constant") | (pl.col("drafter") == "none")
    return lazy.filter(~pl.col("multitask") & static)


def prompt_halves(requests: Frame) -> pl.DataFrame:
    """target, temperature, category, prompt_id, half (0 or 1: alternate in prompt_id order)."""
    prompts = (
        static_requests(requests)
        .select(*SETTING, "category", "prompt_id")
        .unique()
        .sort(*SETTING, "category", "prompt_id")
        .collect()
    )
    return prompts.with_columns(
        (pl.int_range(pl.len()).over(*SETTING, "category") % 2).cast(pl.Int8).alias("half")
    )


def oracle_choices(requests: Frame) -> pl.DataFrame:
    """Each task's choice on each half: target, temperature, category, half, drafter, k,
    spt (seconds per token of the choice on that half), prompts (in that half)."""
    halves = prompt_halves(requests)
    static = (
        static_requests(requests).collect().join(halves, on=[*SETTING, "category", "prompt_id"])
    )
    n_prompts = halves.group_by(*SETTING, "category").agg(pl.len().alias("n_prompts"))
    complete = (
        static.group_by(*SETTING, "category", *STATIC)
        .agg(pl.col("prompt_id").n_unique().alias("covered"))
        .join(n_prompts, on=[*SETTING, "category"])
        .filter(pl.col("covered") == pl.col("n_prompts"))
        .select(*SETTING, "category", *STATIC)
    )
    per_half = (
        static.join(complete, on=[*SETTING, "category", *STATIC])
        .group_by(*SETTING, "category", "half", *STATIC)
        .agg(_spt().alias("spt"), pl.col("prompt_id").n_unique().alias("prompts"))
        .sort(*SETTING, "category", "half", "spt", *STATIC)
    )
    return per_half.group_by(*SETTING, "category", "half", maintain_order=True).first()


def oracle_prompt_spt(requests: Frame) -> pl.DataFrame:
    """Per prompt: the configuration chosen on the other half (drafter, k), its seconds per
    token on this prompt (oracle_spt), and held_out (false when the task has one half only)."""
    choices = oracle_choices(requests)
    halves = prompt_halves(requests)
    other = choices.with_columns((1 - pl.col("half")).cast(pl.Int8).alias("half"))
    scored = (
        halves.join(other, on=[*SETTING, "category", "half"], how="left")
        .join(
            choices.rename({"drafter": "own_drafter", "k": "own_k", "spt": "own_spt"}),
            on=[*SETTING, "category", "half"],
            how="left",
        )
        .with_columns(
            pl.col("drafter").is_not_null().alias("held_out"),
            pl.coalesce("drafter", "own_drafter").alias("drafter"),
            pl.coalesce("k", "own_k").alias("k"),
        )
        .select(*SETTING, "category", "prompt_id", "half", "drafter", "k", "held_out")
    )
    per_prompt = (
        static_requests(requests)
        .group_by(*SETTING, "category", "prompt_id", *STATIC)
        .agg(_spt().alias("oracle_spt"))
        .collect()
    )
    return scored.join(per_prompt, on=[*SETTING, "category", "prompt_id", *STATIC], how="left")


def oracle_gap(requests: Frame) -> pl.DataFrame:
    """One row per multitask stream: its configuration (target, temperature, drafter, policy,
    k), run_id, mixture, requests, multitask_s, oracle_s, gap_s, gap_share and held_out (every
    prompt scored by a choice made on other prompts). Raises NoOracleError when a task of the
    stream has no static configuration measured on its prompts."""
    streams = label_streams(requests).filter(pl.col("multitask")).collect()
    oracle = oracle_prompt_spt(requests)
    joined = streams.join(
        oracle.rename({"drafter": "oracle_drafter", "k": "oracle_k"}),
        on=[*SETTING, "category", "prompt_id"],
        how="left",
    )
    missing = joined.filter(pl.col("oracle_spt").is_null())
    if missing.height:
        first = missing.row(0, named=True)
        raise NoOracleError(
            f"{missing.height} multitask request(s) have no oracle: no static configuration "
            f"(constant policy or the baseline) ran single-task on all prompts of task "
            f"{first['category']!r} (target {first['target']}, temperature "
            f"{first['temperature']}). Run its single-task mixtures with the baseline."
        )
    out = (
        joined.group_by(*STREAM_CONFIG, "run_id", "mixture")
        .agg(
            pl.len().alias("requests"),
            pl.col("wall_s").sum().alias("multitask_s"),
            (pl.col("new_tokens") * pl.col("oracle_spt")).sum().alias("oracle_s"),
            pl.col("held_out").all().alias("held_out"),
        )
        .with_columns((pl.col("multitask_s") - pl.col("oracle_s")).alias("gap_s"))
        .with_columns((pl.col("gap_s") / pl.col("multitask_s")).alias("gap_share"))
    )
    return out.sort(*STREAM_CONFIG, "run_id", "mixture")


def recovered_share(gaps: pl.DataFrame, reference: pl.Expr, remedy: pl.Expr) -> pl.DataFrame:
    """Share of the reference method's oracle gap that a remedy recovers, per mixture.

    ``gaps``: :func:`oracle_gap`'s rows; ``reference`` and ``remedy`` select one stream each per
    (target, temperature, mixture), e.g. ``pl.col("policy") == "heuristic"`` and
    ``pl.col("policy") == "heuristic-per-task"``. share = (T_M(reference) - T_M(remedy)) /
    (T_M(reference) - T_O(reference)): 1 = the remedy reaches the oracle, 0 = no better, < 0 worse.
    """
    keys = [*SETTING, "mixture"]
    ref = gaps.filter(reference).select(
        *keys, pl.col("multitask_s").alias("reference_s"), pl.col("oracle_s")
    )
    rem = gaps.filter(remedy).select(*keys, pl.col("multitask_s").alias("remedy_s"))
    return (
        ref.join(rem, on=keys)
        .with_columns(
            (
                (pl.col("reference_s") - pl.col("remedy_s"))
                / (pl.col("reference_s") - pl.col("oracle_s"))
            ).alias("recovered_share")
        )
        .sort(keys)
    )
