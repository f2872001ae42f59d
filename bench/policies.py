"""Task-aware policies and the suffix drafter on the built-in suite: per category, beside the
baseline, modelled and wall clock side by side in one run.

Embedded model (SmolLM2-135M), greedy, ``--per-task`` single-turn prompts of every category of
the built-in suite, ``--max-new-tokens`` per turn. Every condition decodes the same uniform
multitask stream (categories interleaved), except ``suffix single-task``: one run per category
(its memory fills with its own task only).

The cost model is measured once before the runs (:func:`specviz.calibrate.calibrate`) and given
to the cost-aware policy explicitly, so its k choices do not depend on a second measurement;
the same model's verify curve prices every condition's rounds (model-free drafters: draft 0) for the *modelled* columns:
modelled seconds = sum over verify rounds of draft_cost(n_drafted) + verify_cost(n_drafted + 1).
*Wall* columns use the measured draft and verify seconds of the same rounds. Both leave out
prefills (identical in every condition). The baseline runs first and again last: wall and CPU
speedups divide by both runs together, and ``baseline_wall_drift`` (the second run's tokens/s
over the first's) says how far the clock moved while the conditions ran, the noise floor of
every wall-clock ratio (the modelled columns do not move with it). ``tokens_per_s`` = tokens emitted by verify rounds /
those seconds; ``speedup`` = over the baseline's, per category and overall. ``cpu_speedup``:
whole runs' tokens per CPU second of this process over the baseline's (less noisy than wall
time on a shared machine).

Checks in the JSON line: ``no_regret_modelled`` / ``no_regret_wall``: the cost-aware policy is
no slower than the baseline on any category; ``beats_best_constant_*``: at least as fast overall
as the best constant k; the suffix drafter's acceptance in single-task and uniform multitask
streams (shared and per-task memory). Wall figures on a shared machine are noisy: compare the
ratios of one run. Prints a table, then one JSON line.

    .venv/bin/python bench/policies.py [--per-task 2] [--max-new-tokens 96] [--k 6] [--constants 2,3,4]
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

from specviz.calibrate import calibrate
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.cost import CostModel
from specviz.models import ModelCache
from specviz.rundir import scan_events, scan_requests
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts
from specviz.workloads.prompt import Prompt

AGAIN = "baseline (again)"


def prompts_by_task(per_task: int) -> dict[str, list[Prompt]]:
    by_task: dict[str, list[Prompt]] = {}
    for p in builtin_prompts():
        if len(p.turns) == 1 and len(by_task.setdefault(p.category, [])) < per_task:
            by_task[p.category].append(p)
    return by_task


def uniform_stream(by_task: dict[str, list[Prompt]]) -> list[Request]:
    width = max(len(ps) for ps in by_task.values())
    order = [ps[i] for i in range(width) for ps in by_task.values() if i < len(ps)]
    return [Request(i, p, "uniform") for i, p in enumerate(order)]


def rounds(run_dirs: list[Path]) -> pl.DataFrame:
    """One row per verify round: category, n_drafted, accepted, emitted, seconds."""
    return (
        scan_events(run_dirs)
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


def price(frame: pl.DataFrame, curve: CostModel) -> pl.DataFrame:
    modelled = [
        (curve.draft("prompt-lookup", n) if n else 0.0) + curve.verify(n + 1)
        for n in frame["n_drafted"].to_list()
    ]
    return frame.with_columns(pl.Series("modelled_s", modelled))


def per_category(frame: pl.DataFrame, label: str) -> pl.DataFrame:
    agg = [
        pl.col("emitted").sum().alias("tokens"),
        pl.col("wall_s").sum(),
        pl.col("modelled_s").sum(),
        pl.col("n_drafted").sum().alias("drafted"),
        pl.col("accepted").sum(),
    ]
    by = frame.group_by("category").agg(agg)
    total = frame.select(agg).with_columns(pl.lit("all").alias("category"))
    return (
        pl.concat([by, total.select(by.columns)])
        .with_columns(
            pl.lit(label).alias("condition"),
            (pl.col("tokens") / pl.col("wall_s")).alias("wall_tps"),
            (pl.col("tokens") / pl.col("modelled_s")).alias("modelled_tps"),
            (pl.col("accepted") / pl.col("drafted")).alias("acceptance"),
        )
        .sort("category")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--k", type=int, default=6, help="k_max of the cost-aware policy")
    parser.add_argument(
        "--constants", default="2,3,4", help="the constant k of prompt lookup to compare with"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    spec = ModelSpec("smollm2-135m")
    models = ModelCache()
    lookup = DrafterConfig("prompt-lookup")
    probe = RunConfig(spec, lookup, PolicyConfig("cost-aware", args.k))
    curve = calibrate(probe, models)
    by_task = prompts_by_task(args.per_task)
    stream = uniform_stream(by_task)

    def config(drafter: DrafterConfig, policy: PolicyConfig) -> RunConfig:
        return RunConfig(spec, drafter, policy, max_new_tokens=args.max_new_tokens)

    cost_aware = PolicyConfig("cost-aware", args.k, cost_model=curve)
    constants = [int(k) for k in args.constants.split(",")]
    conditions = {
        "baseline": config(DrafterConfig(), PolicyConfig()),
        **{f"lookup k={k}": config(lookup, PolicyConfig("constant", k)) for k in constants},
        "lookup cost-aware": config(lookup, cost_aware),
        "suffix multitask": config(DrafterConfig("suffix"), PolicyConfig("constant", 4)),
        "suffix multitask per-task": config(
            DrafterConfig("suffix", partition="task"), PolicyConfig("constant", 4)
        ),
        AGAIN: config(DrafterConfig(), PolicyConfig()),  # brackets the runs: the clock's drift
    }
    tables = []
    outputs: dict[str, dict[str, list[str]]] = {}
    cpu_tps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, cfg) in enumerate(conditions.items()):
            out = Path(tmp) / f"c{i}"
            cpu = time.process_time()
            summary = run(cfg, stream, out, models=models, progress=False)
            cpu_tps[label] = summary.new_tokens / (time.process_time() - cpu)
            tables.append(per_category(price(rounds([out]), curve), label))
            reqs = scan_requests(out).collect()
            outputs[label] = dict(zip(reqs["prompt_id"], reqs["output_text"], strict=True))
        singles = []
        for task, prompts in by_task.items():
            out = Path(tmp) / f"single-{task}"
            requests = [Request(i, p, task) for i, p in enumerate(prompts)]
            run(conditions["suffix multitask"], requests, out, models=models, progress=False)
            singles.append(out)
        tables.append(per_category(price(rounds(singles), curve), "suffix single-task"))
    table = pl.concat(tables)
    base = (
        table.filter(pl.col("condition").is_in(["baseline", AGAIN]))
        .group_by("category")
        .agg(
            (pl.col("tokens").sum() / pl.col("wall_s").sum()).alias("base_wall"),
            pl.col("modelled_tps").first().alias("base_mod"),
        )
    )
    table = table.join(base, on="category").with_columns(
        (pl.col("wall_tps") / pl.col("base_wall")).round(3).alias("wall_speedup"),
        (pl.col("modelled_tps") / pl.col("base_mod")).round(3).alias("modelled_speedup"),
    )
    shown = table.select(
        "condition", "category", "tokens", "acceptance", "wall_tps", "wall_speedup",
        "modelled_speedup",
    ).with_columns(pl.col("acceptance", "wall_tps").round(3))  # fmt: skip
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
        print(shown)

    def value(condition: str, category: str, column: str) -> float:
        row = table.filter((pl.col("condition") == condition) & (pl.col("category") == category))
        return float(row[column][0])

    aware = table.filter(pl.col("condition") == "lookup cost-aware")
    best = {
        col: max(value(f"lookup k={k}", "all", col) for k in constants)
        for col in ("wall_speedup", "modelled_speedup")
    }
    cpu_base = (cpu_tps["baseline"] + cpu_tps[AGAIN]) / 2
    cpu_speedup = {label: round(v / cpu_base, 3) for label, v in cpu_tps.items()}
    drift = value(AGAIN, "all", "wall_tps") / value("baseline", "all", "wall_tps")
    print("speedup per CPU second of this process (whole runs, prefills included):", cpu_speedup)
    reference = outputs["baseline"]
    print(
        json.dumps(
            {
                "benchmark": "policies",
                "model": spec.name,
                "max_new_tokens": args.max_new_tokens,
                "per_task": args.per_task,
                "k_max": args.k,
                "requests": len(stream),
                "cost_model_s": curve.to_dict(),
                "outputs_identical_across_conditions": all(
                    o == reference for o in outputs.values()
                ),
                "no_regret_modelled": bool((aware["modelled_speedup"] >= 1.0).all()),
                "no_regret_wall": bool((aware["wall_speedup"] >= 1.0).all()),
                "worst_category_modelled_speedup": float(aware["modelled_speedup"].min()),
                "worst_category_wall_speedup": float(aware["wall_speedup"].min()),
                "baseline_wall_drift": round(drift, 3),
                "best_constant_speedup": best,
                "beats_best_constant_modelled": value(
                    "lookup cost-aware", "all", "modelled_speedup"
                )
                >= best["modelled_speedup"],
                "beats_best_constant_wall": value("lookup cost-aware", "all", "wall_speedup")
                >= best["wall_speedup"],
                "cpu_speedup": cpu_speedup,
                "beats_best_constant_cpu": cpu_speedup["lookup cost-aware"]
                >= max(cpu_speedup[f"lookup k={k}"] for k in constants),
                "suffix_acceptance": {
                    label: value(label, "all", "acceptance")
                    for label in (
                        "suffix single-task",
                        "suffix multitask",
                        "suffix multitask per-task",
                    )
                },
                "results": shown.to_dicts(),
                "seconds": round(time.perf_counter() - start, 1),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
