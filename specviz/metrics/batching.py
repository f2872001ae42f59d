"""Batch raggedness: what uneven rows cost a batched verify pass, and the gap between mixed and
single-task batches of the same prompts.

A batched verify *step* (one target forward, ``batch_step``) feeds every row ``n_drafted + 1``
tokens, right-padded to the step's longest feed ``T``: the forward computes ``rows x T`` slots,
of which ``sum(n_drafted + 1)`` are real. With ``fed`` the real slots and ``emitted`` the tokens
that reached the output:

| Column | Formula |
|---|---|
| ``steps`` | batched verify forwards of the group |
| ``mean_rows`` | mean rows per step |
| ``padding_share`` | 1 - sum fed / sum (rows x T): slots computed for padding (raggedness of drafts) |
| ``useful_share`` | sum emitted / sum (rows x T): slots that became output |
| ``accept_spread`` | mean over steps of (max - min accepted drafts among its rows) |
| ``ragged_s`` | sum over steps of verify seconds x (1 - fed / (rows x T)) |

``ragged_s`` charges each step's verify time to its padding in proportion to slots (the cost of a
forward grows with the slots it computes; on CPUs not linearly, see ``verify_cost``, so this is
an estimate). An unbatched round is a step of one row: no padding.

:func:`batch_composition_gap` compares, per configuration and batch size, the run of mixed
batches with the run of single-task batches of the same prompts: ``total_s = mixed_s -
single_task_s`` (wall seconds of the same requests, positive = mixed batches are slower) splits
exactly into ``raggedness_s`` (the change in ``ragged_s``) and ``other_s`` (the rest: fewer
accepted tokens per step, more steps, and timing noise).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from specviz.metrics.expressions import ratio
from specviz.metrics.frames import Frame, collect, events_frame, group_list, requests_frame

CONFIG = ["target", "temperature", "drafter", "policy", "k", "batch_size"]


def _steps(events: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """One row per (group, verify step) with its rows, T, fed and emitted slots."""
    verify = events.filter(~pl.col("prefill"))
    step = (
        pl.when(pl.col("batch_step").is_not_null())
        .then(pl.col("batch_step").cast(pl.String))
        .otherwise(
            pl.concat_str(pl.col("request_id"), pl.lit("/"), pl.col("round").cast(pl.String))
        )
    )
    rounds = (
        verify.with_columns(step.alias("_step"))
        .group_by([*dict.fromkeys(["run_id", *by]), "_step", "request_id", "round"])
        .agg(
            pl.col("n_drafted").first().alias("fed"),
            pl.col("emitted").sum().alias("emitted"),
            (pl.col("accepted").fill_null(False)).sum().alias("accepted"),
            pl.col("verify_s").first().alias("verify_s"),
        )
        .with_columns(pl.col("fed") + 1)
    )
    return rounds.group_by([*dict.fromkeys(["run_id", *by]), "_step"]).agg(
        pl.len().alias("rows"),
        pl.col("fed").max().alias("width"),
        pl.col("fed").sum().alias("fed"),
        pl.col("emitted").sum().alias("emitted"),
        (pl.col("accepted").max() - pl.col("accepted").min()).alias("spread"),
        pl.col("verify_s").sum().alias("verify_s"),
    )


def batch_raggedness(events: Frame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """Raggedness of batched verify steps per group (columns in the module docstring)."""
    keys = group_list(by)
    cols = [
        "run_id",
        "request_id",
        "round",
        "prefill",
        "n_drafted",
        "emitted",
        "accepted",
        "verify_s",
        "batch_step",
        *keys,
    ]
    steps = _steps(events_frame(events, cols), keys)
    slots = pl.col("rows") * pl.col("width")
    aggs = [
        pl.len().alias("steps"),
        pl.col("rows").mean().alias("mean_rows"),
        (1 - pl.col("fed").sum() / slots.sum()).alias("padding_share"),
        (pl.col("emitted").sum() / slots.sum()).alias("useful_share"),
        pl.col("spread").mean().alias("accept_spread"),
        (pl.col("verify_s") * (1 - pl.col("fed") / slots)).sum().alias("ragged_s"),
    ]
    if keys:
        return collect(steps.group_by(keys).agg(aggs).sort(keys))
    return collect(steps.select(aggs))


def batch_composition_gap(requests: Frame, events: Frame) -> pl.DataFrame:
    """Mixed against single-task batches of the same prompts, per configuration and batch size.

    Needs, for each configuration (:data:`CONFIG`), one run with ``batch_composition ==
    "mixed"`` and one with ``"single-task"`` over the same prompts (same repeats). Columns:
    ``single_task_s``, ``mixed_s`` (sum of wall_s over the requests), ``total_s`` = mixed_s -
    single_task_s = ``raggedness_s`` + ``other_s``; ``single_task_tokens_per_s``,
    ``mixed_tokens_per_s``; ``single_task_acceptance``, ``mixed_acceptance`` (accepted /
    drafted); ``single_task_padding_share``, ``mixed_padding_share``.
    """
    req = requests_frame(
        requests,
        [
            *CONFIG,
            "run_id",
            "batch_composition",
            "prompt_id",
            "repeat",
            "new_tokens",
            "wall_s",
            "drafted",
            "accepted",
        ],
    ).filter(pl.col("batch_composition").is_in(["single-task", "mixed"]))
    per_run = collect(
        req.group_by([*CONFIG, "batch_composition", "run_id"]).agg(
            pl.col("wall_s").sum().alias("s"),
            pl.col("new_tokens").sum().alias("tokens"),
            pl.col("drafted").sum().alias("drafted"),
            pl.col("accepted").sum().alias("accepted"),
            pl.concat_str(pl.col("prompt_id"), pl.lit("#"), pl.col("repeat").cast(pl.String))
            .sort()
            .alias("prompts"),
        )
    )
    ragged = batch_raggedness(events, ["run_id"]).select("run_id", "ragged_s", "padding_share")
    per_run = per_run.join(ragged, on="run_id", how="left")
    single = per_run.filter(pl.col("batch_composition") == "single-task").drop("batch_composition")
    mixed = per_run.filter(pl.col("batch_composition") == "mixed").drop("batch_composition")
    pairs = single.join(mixed, on=CONFIG, suffix="_mixed", nulls_equal=True)
    same = pairs.filter(pl.col("prompts") == pl.col("prompts_mixed"))
    return same.select(
        *CONFIG,
        pl.col("s").alias("single_task_s"),
        pl.col("s_mixed").alias("mixed_s"),
        (pl.col("s_mixed") - pl.col("s")).alias("total_s"),
        (pl.col("ragged_s_mixed") - pl.col("ragged_s")).alias("raggedness_s"),
        ((pl.col("s_mixed") - pl.col("s")) - (pl.col("ragged_s_mixed") - pl.col("ragged_s"))).alias(
            "other_s"
        ),
        (pl.col("tokens") / pl.col("s")).alias("single_task_tokens_per_s"),
        (pl.col("tokens_mixed") / pl.col("s_mixed")).alias("mixed_tokens_per_s"),
        ratio(pl.col("accepted"), pl.col("drafted")).alias("single_task_acceptance"),
        ratio(pl.col("accepted_mixed"), pl.col("drafted_mixed")).alias("mixed_acceptance"),
        pl.col("padding_share").alias("single_task_padding_share"),
        pl.col("padding_share_mixed").alias("mixed_padding_share"),
    ).sort(CONFIG)
