"""Batched speculative decoding benchmark: batch sizes 1, 2, 4, 8, single-task against mixed
batches of the same prompts, tokens/s and acceptance side by side in one run.

Embedded model (SmolLM2-135M), prompt lookup, greedy, a short token budget. The policy (default
``heuristic``, initial k 5) runs at batch level: one k per round for the whole batch, lengthened
only when every row accepted every draft. With a constant k greedy rows accept exactly what they
accept alone, so acceptance can only differ between single-task and mixed batches through the
shared adaptive k.

The workload: ``--per-task`` single-turn prompts of each ``--categories`` task from the built-in
suite, each sent ``--copies`` times (the suite has 4-5 single-turn prompts per task; a batch of
8 single-task rows needs 8 requests of one task), so every batch size can be filled with one task.
Every condition decodes the same requests; ``single-task`` batches hold one task, ``mixed``
batches deal the tasks round-robin. The autoregressive baseline (drafter none, mixed batches) at
each batch size gives the speedup. Static batching (a batch runs until its last row finishes).

Columns: ``tokens_per_s`` = all new tokens / wall seconds of the run (the batch's throughput);
``speedup`` against the baseline at the same batch size; ``tokens_per_cpu_s`` and ``cpu_speedup``
the same per CPU second of this process (far less noisy than wall time on a shared machine;
``load_average`` in the JSON says how busy it was); ``acceptance`` = accepted / drafted
tokens; ``tokens_per_step`` = mean tokens a row emits per verify step; ``mean_rows`` = mean rows
per verify step; ``padding_share`` = share of verified slots that were padding
(``specviz.metrics.batch_raggedness``); ``mean_latency_s`` = mean seconds from a request's
admission to its end. Prints a table, then one JSON line.

    .venv/bin/python bench/batched.py [--max-new-tokens 32] [--k 5] [--policy heuristic]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from specviz.batch import BatchConfig
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.metrics.batching import batch_raggedness
from specviz.models import ModelCache
from specviz.rundir import scan_events, scan_requests
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts
from specviz.workloads.prompt import Prompt

SIZES = (1, 2, 4, 8)


def workload(categories: list[str], per_task: int, copies: int) -> list[Request]:
    """The stream: tasks interleaved, each prompt ``copies`` times (as repeats)."""
    by_task: dict[str, list[Prompt]] = {c: [] for c in categories}
    for p in builtin_prompts():
        if p.category in by_task and len(p.turns) == 1 and len(by_task[p.category]) < per_task:
            by_task[p.category].append(p)
    short = [c for c, ps in by_task.items() if len(ps) < per_task]
    if short:
        raise SystemExit(f"categories {short} have fewer than {per_task} single-turn prompts")
    stream = [
        (copy, by_task[c][i]) for copy in range(copies) for i in range(per_task) for c in categories
    ]
    return [Request(i, p, "bench", copy) for i, (copy, p) in enumerate(stream)]


def measure(
    config: RunConfig, batch: BatchConfig, requests: list[Request], models: ModelCache, tmp: Path
) -> dict[str, object]:
    out = tmp / f"{config.drafter.kind}-{batch.size}-{batch.composition}"
    cpu = time.process_time()
    summary = run(config, requests, out, batch=batch, models=models, progress=False)
    cpu = time.process_time() - cpu
    reqs = scan_requests(out).collect()
    events = scan_events(out)
    ragged = batch_raggedness(events).row(0, named=True)
    verify_rounds = int((reqs["rounds"] - reqs["n_turns"]).sum())
    emitted = int((reqs["new_tokens"] - reqs["n_turns"]).sum())
    return {
        "batch_size": batch.size,
        "composition": batch.composition,
        "drafter": config.drafter.kind,
        "tokens": summary.new_tokens,
        "seconds": round(summary.wall_s, 3),
        "tokens_per_s": round(summary.tokens_per_s, 2),
        "tokens_per_cpu_s": round(summary.new_tokens / cpu, 2),
        "acceptance": round(summary.accepted / summary.drafted, 4) if summary.drafted else None,
        "tokens_per_step": round(emitted / verify_rounds, 3),
        "mean_rows": round(ragged["mean_rows"], 3),
        "padding_share": round(ragged["padding_share"], 4),
        "mean_latency_s": round(float(reqs["latency_s"].mean()), 3),
        "outputs": reqs.sort("request_index")["output_text"].to_list(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--policy", default="heuristic", help="constant | heuristic | heuristic-per-request"
    )
    parser.add_argument("--categories", default="extraction,writing")
    parser.add_argument("--per-task", type=int, default=4)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    spec = ModelSpec("smollm2-135m")
    models = ModelCache()
    models.get(spec)
    requests = workload(args.categories.split(","), args.per_task, args.copies)
    baseline = RunConfig(spec, max_new_tokens=args.max_new_tokens)
    lookup = RunConfig(
        spec,
        DrafterConfig("prompt-lookup"),
        PolicyConfig(args.policy, args.k),
        max_new_tokens=args.max_new_tokens,
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            base = measure(baseline, BatchConfig(size, "mixed"), requests, models, Path(tmp))
            base["speedup"] = base["cpu_speedup"] = 1.0
            results.append(base)
            for composition in ("single-task", "mixed"):
                row = measure(lookup, BatchConfig(size, composition), requests, models, Path(tmp))
                row["speedup"] = round(row["tokens_per_s"] / base["tokens_per_s"], 3)
                row["cpu_speedup"] = round(row["tokens_per_cpu_s"] / base["tokens_per_cpu_s"], 3)
                results.append(row)
    reference = results[0]["outputs"]
    lossless = all(r["outputs"] == reference for r in results)
    for r in results:
        del r["outputs"]
    table = pl.DataFrame(results).select(
        "batch_size",
        "composition",
        "drafter",
        "tokens_per_s",
        "speedup",
        "tokens_per_cpu_s",
        "cpu_speedup",
        "acceptance",
        "tokens_per_step",
        "mean_rows",
        "padding_share",
        "mean_latency_s",
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
        print(table)
    print(
        json.dumps(
            {
                "benchmark": "batched",
                "model": spec.name,
                "max_new_tokens": args.max_new_tokens,
                "k": args.k,
                "policy": args.policy,
                "requests": len(requests),
                "categories": args.categories.split(","),
                "threads": args.threads,
                "outputs_identical_across_conditions": lossless,
                "results": results,
                "seconds": round(time.perf_counter() - start, 1),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
