"""``specviz summary`` of server-measured runs: acceptance per task, single-task vs multitask.

A server reports per-request counts, not per-round events with timings, so the cost-accounted
(modelled) clock and its decomposition cannot be computed from its runs. What can be:
per (drafter, mixture, category) the draft acceptance rate (accepted / drafted) and the mean
acceptance length (1 + accepted / spec steps, vLLM's convention, :mod:`specviz.serve.metrics`)
pooled over requests, the client's time to first token and inter-chunk gaps (medians), tokens per
second of a request's own wall time; and per (drafter, category) how a multitask mixture moves the
mean acceptance length and the acceptance rate against the category's single-task mixture (the
study's question, on the acceptance side only). A server that does not report its spec steps
(llama.cpp) leaves the mean acceptance length null; its acceptance rate is still exact.
``distributions``: the per-request statistics and the accepted-length histogram of
:mod:`specviz.metrics.distributions` from the server's counts (no time split).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from specviz.endpoint.run import MEASURED_BY, read_server_table
from specviz.metrics.distributions import server_distributions
from specviz.metrics.expressions import ratio, spec_step_acceptance_length
from specviz.rundir import find_run_dirs, read_run_meta, scan_requests

KEYS = ("drafter", "mixture", "category")


def is_server_measured(source: str | Path) -> bool:
    """Whether the runs at or below ``source`` were measured through an endpoint; refuses a
    directory holding both kinds (their figures are not comparable)."""
    kinds = {read_run_meta(d).get("measured_by") == MEASURED_BY for d in find_run_dirs(source)}
    if kinds == {True, False}:
        from specviz.rundir import RunDirError

        raise RunDirError(
            f"{source} holds both server-measured and in-process runs: summarise them apart"
        )
    return kinds == {True}


def server_table(dirs: Sequence[Path]) -> pl.DataFrame:
    """The request rows of the server-measured runs ``dirs`` with the server's figures beside
    them: ``num_spec_steps``, ``metrics_source`` and ``itl_s`` (every gap between content
    chunks, all turns); joined per run, since request ids repeat across runs."""
    requests = scan_requests(dirs).collect()
    server = pl.concat(
        [
            read_server_table(d).with_columns(pl.lit(read_run_meta(d)["run_id"]).alias("run_id"))
            for d in dirs
        ],
        how="vertical",
    )
    gaps = [[g for turn in turns for g in turn] for turns in server["turn_itl_s"].to_list()]
    figures = server.select(
        "run_id", "request_id", "num_spec_steps", "metrics_source", "acceptance_histogram"
    )
    figures = figures.with_columns(pl.Series("itl_s", gaps, dtype=pl.List(pl.Float64)))
    return requests.join(figures, on=["run_id", "request_id"], how="left")


def summary_rows(table: pl.DataFrame, keys: Sequence[str] = KEYS) -> pl.DataFrame:
    """Per group of ``keys``, pooled over its requests: ``acceptance_rate`` = accepted / drafted
    (vLLM's draft acceptance rate), ``mean_acceptance_length`` = 1 + accepted / spec steps
    (vLLM's, :mod:`specviz.serve.metrics`), medians of the client's ``ttft_s`` and inter-chunk
    gaps, and ``tokens_per_s`` = new tokens / the requests' own wall seconds. A ratio whose
    denominator is zero (a baseline drafts nothing) is null, as one the server did not report."""
    return (
        table.group_by(*keys)
        .agg(
            pl.len().alias("requests"),
            ratio(pl.col("accepted").sum(), pl.col("drafted").sum()).alias("acceptance_rate"),
            spec_step_acceptance_length(
                pl.col("accepted").sum(), pl.col("num_spec_steps").sum()
            ).alias("mean_acceptance_length"),
            pl.col("ttft_s").median().alias("ttft_s_median"),
            pl.col("itl_s").explode().median().alias("itl_s_median"),
            ratio(pl.col("new_tokens").sum(), pl.col("wall_s").sum()).alias("tokens_per_s"),
        )
        .sort(*keys)
    )


def server_summary(source: str | Path) -> dict[str, Any]:
    """The rows and single-vs-multitask shifts of every server-measured run under ``source``."""
    table = server_table(find_run_dirs(source))
    rows = summary_rows(table)
    single = rows.filter(pl.col("mixture") == pl.col("category")).select(
        "drafter",
        "category",
        pl.col("mean_acceptance_length").alias("single_task"),
        pl.col("acceptance_rate").alias("single_task_rate"),
    )
    shifts = (
        rows.filter(pl.col("mixture") != pl.col("category"))
        .join(single, on=["drafter", "category"], how="inner")
        .select(
            *KEYS,
            "single_task",
            pl.col("mean_acceptance_length").alias("multitask"),
            (pl.col("mean_acceptance_length") - pl.col("single_task")).alias("shift"),
            "single_task_rate",
            pl.col("acceptance_rate").alias("multitask_rate"),
            (pl.col("acceptance_rate") - pl.col("single_task_rate")).alias("rate_shift"),
        )
        .sort(*KEYS)
    )
    return {
        "source": str(source),
        "measured_by": MEASURED_BY,
        "rows": rows.to_dicts(),
        "shifts": shifts.to_dicts(),
        "distributions": server_distributions(table),
        "note": "server-measured: acceptance from the server's per-request counts; timings from "
        "the client's clock (no cost-accounted clock, no per-round decomposition)",
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as plain-text tables."""
    lines = [f"{summary['source']}: {summary['note']}", ""]
    head = [*KEYS, "requests", "acceptance_rate", "mean_acceptance_length", "ttft_s_median",
            "itl_s_median", "tokens_per_s"]  # fmt: skip
    lines.append(" | ".join(head))
    lines += [" | ".join(_fmt(r[h]) for h in head) for r in summary["rows"]]
    lengths = [s for s in summary["shifts"] if s["shift"] is not None]
    if lengths:
        lines += ["", "mean acceptance length, multitask vs single-task:"]
        lines += [
            f"{s['drafter']} {s['category']} in {s['mixture']}: {_fmt(s['multitask'])} vs "
            f"{_fmt(s['single_task'])} alone ({s['shift']:+.3f})"
            for s in lengths
        ]
    # a server without spec-step counts (llama.cpp): the acceptance rate moves instead
    rates = [s for s in summary["shifts"] if s["shift"] is None and s["rate_shift"] is not None]
    if rates:
        lines += ["", "acceptance rate, multitask vs single-task (no spec-step counts reported):"]
        lines += [
            f"{s['drafter']} {s['category']} in {s['mixture']}: {_fmt(s['multitask_rate'])} vs "
            f"{_fmt(s['single_task_rate'])} alone ({s['rate_shift']:+.3f})"
            for s in rates
        ]
    return "\n".join(lines)
