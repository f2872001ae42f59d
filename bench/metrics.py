"""Benchmark: aggregate 10 million synthetic event rows from Parquet, lazily.

A child process writes the rows as 10 Parquet files (like 10 run directories) in a temporary
directory; this process then times :func:`specviz.metrics.summary` and
:func:`specviz.metrics.per_position` over one lazy scan of all of them, grouped by mixture,
category and (configured) k. Prints both tables and ends with one JSON line: rows, seconds (the
aggregation), rows_per_s, peak_rss_bytes (this process's peak resident memory: imports and
aggregation, not the data generation), generate_seconds, generate_peak_rss_bytes (the child's),
parquet_bytes.

    python bench/metrics.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from specviz.metrics import per_position, summary
from specviz.metrics.synthetic import synthetic_events

FILES = 10


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def generate(directory: str, rows: int) -> int:
    """Write ``rows`` synthetic event rows as FILES Parquet files; return the rows written."""
    written = 0
    for i in range(FILES):
        part = synthetic_events(rows // FILES, seed=i, k=3 + i % 4, run_id=f"run{i}")
        part = part.with_columns(pl.lit(f"mix{i % 2}").alias("mixture"))
        part.write_parquet(Path(directory) / f"events-{i:02d}.parquet")
        written += part.height
    return written


def children_peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="specviz-bench-") as tmp:
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            rows = pool.apply(generate, (tmp, args.rows))
        generate_seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(tmp).glob("*.parquet"))

        start = time.perf_counter()
        scan = pl.scan_parquet(Path(tmp) / "*.parquet")
        by = ["mixture", "category", "k"]
        table = summary(scan, by)
        positions = per_position(scan, by)
        seconds = time.perf_counter() - start

    with pl.Config(tbl_rows=12, tbl_cols=9):
        print(
            table.select(
                *by,
                "requests",
                "tokens",
                "acceptance_rate",
                "alpha",
                "mean_accepted_length",
                "tokens_per_s",
            )
        )
        print(positions.select(*by, "position", "verified", "conditional_acceptance"))
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds),
                "peak_rss_bytes": peak_rss_bytes(),
                "generate_seconds": round(generate_seconds, 3),
                "generate_peak_rss_bytes": children_peak_rss_bytes(),
                "parquet_bytes": size,
            }
        )
    )


if __name__ == "__main__":
    main()
