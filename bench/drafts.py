"""Prompt lookup and the int8 draft of the target, per category, in one dtype (bf16 by default):
modelled and wall speedups over the baseline side by side in one run, and greedy divergences.

Embedded model (SmolLM2-135M) as the target in ``--dtype``, greedy, ``--per-task`` single-turn
prompts of every category of the built-in suite decoded as one uniform multitask stream,
``--max-new-tokens`` per turn. Conditions: the baseline (drafter none, run first and again last),
prompt lookup at constant ``--k``, and ``--drafter model --draft-quant int8`` (an int8
dynamically quantized copy of the target, :func:`specviz.models.quantized_copy`) at constant ``--k``.

Modelled seconds price every verify round with a cost curve measured once before the runs
(:func:`specviz.calibrate.verify_curve` of the target for 1..k+1 rows, and one one-token
forward of the int8 draft per drafted token; prompt lookup drafts for free): draft_cost(n) +
verify_cost(n + 1). Wall seconds are the rounds' measured draft + verify seconds. Both leave out
prefills. ``speedup`` = tokens per second over the baseline's (its two runs pooled), per
category and overall; ``baseline_wall_drift`` = second baseline run's tokens/s over the first's
(the noise floor of the wall ratios). ``diverged``: requests whose output parts from the
baseline's (:func:`specviz.metrics.greedy_divergence`; expected 0 in float32, possible at
near-ties in bf16). ``draft_ms``: the int8 draft's measured one-token forward against the
target's (``verify_ms_1``). Prints a table, then one JSON line.

    .venv/bin/python bench/drafts.py [--dtype bfloat16] [--per-task 1] [--max-new-tokens 48] [--k 3]
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

from specviz.calibrate import forward_seconds, verify_curve
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.metrics import greedy_divergence
from specviz.models import ModelCache
from specviz.precision import cpu_bf16_flags
from specviz.rundir import scan_events, scan_requests
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts

BASE, AGAIN, LOOKUP, INT8 = "baseline", "baseline (again)", "prompt-lookup", "int8-draft"


def uniform_stream(per_task: int) -> list[Request]:
    by_task: dict[str, list] = {}
    for p in builtin_prompts():
        if len(p.turns) == 1 and len(by_task.setdefault(p.category, [])) < per_task:
            by_task[p.category].append(p)
    order = [ps[i] for i in range(per_task) for ps in by_task.values() if i < len(ps)]
    return [Request(i, p, "uniform") for i, p in enumerate(order)]


def verify_rounds(run_dir: Path) -> pl.DataFrame:
    """One row per verify round: category, n_drafted, accepted, emitted, wall seconds."""
    return (
        scan_events(run_dir)
        .filter(~pl.col("prefill"))
        .group_by("run_id", "request_id", "round")
        .agg(
            pl.col("category").first(),
            pl.col("n_drafted").first(),
            pl.col("accepted").sum(),
            pl.col("emitted").sum(),
            (pl.col("draft_s").first() + pl.col("verify_s").first()).alias("wall_s"),
        )
        .collect()
    )


def per_category(rounds: pl.DataFrame, verify: tuple[float, ...], draft_s: float) -> pl.DataFrame:
    modelled = [n * draft_s + verify[n] for n in rounds["n_drafted"].to_list()]
    frame = rounds.with_columns(pl.Series("modelled_s", modelled))
    agg = [
        pl.col("emitted").sum().alias("tokens"),
        pl.col("wall_s").sum(),
        pl.col("modelled_s").sum(),
        pl.col("n_drafted").sum().alias("drafted"),
        pl.col("accepted").sum(),
    ]
    by = frame.group_by("category").agg(agg)
    total = frame.select(agg).with_columns(pl.lit("all").alias("category"))
    return pl.concat([by, total.select(by.columns)]).sort("category")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--per-task", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    spec = ModelSpec("smollm2-135m", device="cpu", dtype=args.dtype)
    models = ModelCache()
    target = models.get(spec)
    int8 = models.get(spec, "int8")
    verify = verify_curve(target.model, args.k + 1)
    draft_s = forward_seconds(int8.model, 1)
    costs = {BASE: 0.0, AGAIN: 0.0, LOOKUP: 0.0, INT8: draft_s}
    policy = PolicyConfig("constant", args.k)
    configs = {
        BASE: RunConfig(spec, max_new_tokens=args.max_new_tokens),
        LOOKUP: RunConfig(
            spec, DrafterConfig("prompt-lookup"), policy, max_new_tokens=args.max_new_tokens
        ),
        INT8: RunConfig(
            spec,
            DrafterConfig("model", draft_quant="int8"),
            policy,
            max_new_tokens=args.max_new_tokens,
        ),
    }
    configs[AGAIN] = configs[BASE]
    order = [BASE, LOOKUP, INT8, AGAIN]
    requests = uniform_stream(args.per_task)
    tables: dict[str, pl.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: Path(tmp) / name.replace(" ", "_").strip("()") for name in order}
        for name in order:
            run(configs[name], requests, dirs[name], models=models, progress=False)
            tables[name] = per_category(verify_rounds(dirs[name]), verify, costs[name])
        divergence = greedy_divergence(
            scan_events([dirs[BASE], dirs[LOOKUP], dirs[INT8]]),
            scan_requests([dirs[BASE], dirs[LOOKUP], dirs[INT8]]),
        )
    base = pl.concat([tables[BASE], tables[AGAIN]]).group_by("category").sum()
    base_rate = {
        row["category"]: (row["tokens"] / row["wall_s"], row["tokens"] / row["modelled_s"])
        for row in base.iter_rows(named=True)
    }
    diverged = {
        drafter: int(divergence.filter(pl.col("drafter") == drafter)["diverged"].sum())
        for drafter in ("prompt-lookup", "model")
    }
    result: dict[str, object] = {}
    print(f"{'condition':14s} {'category':15s} {'accept':>7s} {'modelled':>9s} {'wall':>7s}")
    for name, key in ((LOOKUP, "prompt_lookup"), (INT8, "int8_draft")):
        rows = {}
        for row in tables[name].iter_rows(named=True):
            wall_b, mod_b = base_rate[row["category"]]
            acc = row["accepted"] / row["drafted"] if row["drafted"] else None
            rows[row["category"]] = {
                "acceptance": acc,
                "modelled_speedup": row["tokens"] / row["modelled_s"] / mod_b,
                "wall_speedup": row["tokens"] / row["wall_s"] / wall_b,
            }
            r = rows[row["category"]]
            shown = f"{acc:7.3f}" if acc is not None else f"{'-':>7s}"
            print(
                f"{name:14s} {row['category']:15s} {shown} {r['modelled_speedup']:9.3f} "
                f"{r['wall_speedup']:7.3f}"
            )
        result[key] = rows
    first, again = tables[BASE], tables[AGAIN]
    drift = (again["tokens"].sum() / again["wall_s"].sum()) / (
        first["tokens"].sum() / first["wall_s"].sum()
    )
    print(
        f"int8 draft {1000 * draft_s:.1f} ms per token vs target {1000 * verify[0]:.1f} ms per "
        f"1-row forward; diverged requests: {diverged} of {len(requests)} each"
    )
    result |= {
        "dtype": args.dtype,
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "k": args.k,
        "per_task": args.per_task,
        "requests": len(requests),
        "max_new_tokens": args.max_new_tokens,
        "verify_ms": [round(1000 * v, 2) for v in verify],
        "draft_ms": round(1000 * draft_s, 2),
        "diverged": diverged,
        "baseline_wall_drift": drift,
        "threads": args.threads,
        "load_average": os.getloadavg()[0],
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
