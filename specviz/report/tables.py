"""Reshaping metric tables for the notebooks: labels and joins only, no metric formula.

The numbers themselves come from :mod:`specviz.metrics`; these helpers add the ``method`` and
``stream`` labels the charts group by, put bootstrap intervals beside their estimates, and pick
which run a per-run view shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from specviz.metrics.study import decomposable
from specviz.plots.common import method_label

__all__ = ["decomposable", "first_requests", "stream_labels", "trajectory_run_id", "with_intervals"]


def stream_labels(table: pl.DataFrame) -> pl.DataFrame:
    """Add ``method`` (from drafter, policy, k) and ``stream`` (from ``multitask``) when possible."""
    out = table
    if "method" not in out.columns and {"drafter", "policy", "k"} <= set(out.columns):
        out = out.with_columns(method_label())
    if "multitask" in out.columns and "stream" not in out.columns:
        out = out.with_columns(
            pl.when(pl.col("multitask"))
            .then(pl.lit("multitask"))
            .otherwise(pl.lit("single-task"))
            .alias("stream")
        )
    return out


def with_intervals(table: pl.DataFrame, intervals: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """``table`` plus ``<metric>_low`` / ``<metric>_high`` columns from ``metric_intervals``."""
    by = list(by)
    wide = intervals.pivot(on="metric", index=by, values=["low", "high"])
    renames = {}
    for column in wide.columns:
        for bound in ("low", "high"):
            prefix = f"{bound}_"
            if column.startswith(prefix):
                renames[column] = f"{column.removeprefix(prefix)}_{bound}"
    return table.join(wide.rename(renames), on=by, how="left", nulls_equal=True)


def trajectory_run_id(requests: pl.DataFrame) -> str | None:
    """The run whose k trajectory is most telling: a multitask run with a drafter, preferring a
    policy whose state persists across requests (``heuristic``); None if no run drafts."""
    drafted = requests.filter(pl.col("drafter") != "none")
    if drafted.height == 0:
        return None
    if "multitask" in drafted.columns and drafted["multitask"].any():
        drafted = drafted.filter(pl.col("multitask"))
    ranked = drafted.with_columns((pl.col("policy") != "heuristic").alias("_rank")).sort(
        "_rank", "run_id"
    )
    return str(ranked["run_id"][0])


def first_requests(requests: pl.DataFrame) -> list[str]:
    """The first request (stream order) of each category, in category order."""
    firsts = requests.sort("request_index").group_by("category", maintain_order=True).first()
    return firsts.sort("category")["request_id"].to_list()
