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


def _route(drafters: list[str], ks: list[int]) -> str:
    """``prompt-lookup k=5``, or ``prompt-lookup k=4 / k=5`` when the two halves chose apart."""
    choices = list(dict.fromkeys(f"{d} k={k}" for d, k in zip(drafters, ks, strict=True)))
    return " / ".join(choices)


def oracle_routes(requests: Frame) -> pl.DataFrame:
    """Each task's oracle choice in words: target, temperature, category, route (``drafter
    k=K``; both halves' choices when they differ) and speculate (false when every half chose
    the baseline)."""
    choices = oracle_choices(requests).sort(*SETTING, "category", "half")
    rows = [
        {
            **dict(zip((*SETTING, "category"), key, strict=True)),
            "route": _route(group["drafter"].to_list(), group["k"].to_list()),
            "speculate": bool((group["drafter"] != "none").any()),
        }
        for key, group in choices.partition_by(
            [*SETTING, "category"], as_dict=True, maintain_order=True
        ).items()
    ]
    return pl.DataFrame(rows)


def best_single_configuration(requests: Frame) -> pl.DataFrame:
    """Per multitask stream: the best *single* static configuration for its traffic, cross-fitted.

    For each static configuration s (drafter and k under ``constant``, or the baseline) measured
    single-task on every prompt of the stream, cost_h(s) = sum_r n_r * spt(s, p_r) over the
    stream's requests whose prompt is in half h (:func:`prompt_halves`); half h's choice is the
    s with the least cost on the *other* half (in sample when that half is empty; ties: the first
    in drafter, k order). ``single_s`` T_1 = sum_h cost_h(choice(h)): one configuration for all
    of this traffic, against ``oracle_s`` T_O (one per task, :func:`oracle_gap`).

    Columns: target, temperature, drafter, policy, k, run_id, mixture, single (the choice in
    words), single_baseline (both halves chose the baseline), single_s.
    """
    streams = (
        label_streams(requests)
        .filter(pl.col("multitask"))
        .collect()
        .join(prompt_halves(requests), on=[*SETTING, "category", "prompt_id"], how="left")
    )
    per_prompt = (
        static_requests(requests)
        .group_by(*SETTING, "prompt_id", *STATIC)
        .agg(_spt().alias("spt_s"))
        .collect()
        .rename({"drafter": "s_drafter", "k": "s_k"})
    )
    keys = [*STREAM_CONFIG, "run_id", "mixture"]
    sizes = streams.group_by(keys).agg(pl.len().alias("size"))
    costs = (
        streams.join(per_prompt, on=[*SETTING, "prompt_id"])
        .group_by(*keys, "s_drafter", "s_k")
        .agg(
            pl.len().alias("covered"),
            *[
                (pl.col("new_tokens") * pl.col("spt_s"))
                .filter(pl.col("half") == h)
                .sum()
                .alias(f"c{h}")
                for h in (0, 1)
            ],
            *[(pl.col("half") == h).any().alias(f"has{h}") for h in (0, 1)],
        )
        .join(sizes, on=keys, nulls_equal=True)
        .filter(pl.col("covered") == pl.col("size"))
    )
    return _cross_fitted_choice(costs, keys)


def _cross_fitted_choice(costs: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """From per-half costs c0, c1 of each candidate: each half's choice made on the other half,
    and the cost of scoring every half with its choice."""
    rows = []
    for key, group in costs.sort("s_drafter", "s_k").partition_by(keys, as_dict=True).items():
        chosen = []
        for half in (0, 1):
            if not group[f"has{half}"].any():
                continue
            other = 1 - half if group[f"has{1 - half}"].any() else half
            best = group.sort(f"c{other}", "s_drafter", "s_k").row(0, named=True)
            chosen.append((best["s_drafter"], best["s_k"], best[f"c{half}"]))
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "single": _route([c[0] for c in chosen], [c[1] for c in chosen]),
                "single_baseline": all(c[0] == "none" for c in chosen),
                "single_s": sum(c[2] for c in chosen),
            }
        )
    return pl.DataFrame(rows).sort(keys) if rows else pl.DataFrame()
