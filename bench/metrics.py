"""Benchmark: aggregate 10 million synthetic event rows from Parquet, lazily.

Writes the rows as 10 Parquet files (like 10 run directories) in a temporary directory, then
times :func:`specviz.metrics.summary` and :func:`specviz.metrics.per_position` over a lazy scan
of all of them, grouped by mixture, category and (configured) k. Prints both tables and ends
with one JSON line: rows, seconds (the aggregation), rows_per_s, peak_rss_bytes (the process's
peak resident memory, generation included), generate_seconds, parquet_bytes.

    python bench/metrics.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="specviz-bench-") as tmp:
        start = time.perf_counter()
        rows = 0
        for i in range(FILES):
            part = synthetic_events(args.rows // FILES, seed=i, k=3 + i % 4, run_id=f"run{i}")
            part = part.with_columns(pl.lit(f"mix{i % 2}").alias("mixture"))
            part.write_parquet(Path(tmp) / f"events-{i:02d}.parquet")
            rows += part.height
            del part
        generate = time.perf_counter() - start
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
                "generate_seconds": round(generate, 3),
                "parquet_bytes": size,
            }
        )
    )


if __name__ == "__main__":
    main()
