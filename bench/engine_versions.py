"""Engine against an earlier revision of itself: does a refactor slow decoding down?

Runs the same prompts through ``specviz.runner.run`` (the embedded model, greedy, one torch
thread, events recorded) with the package of this checkout and with the package at ``--base``
(a git revision, checked out into a temporary worktree), each side in its own fresh process,
alternating sides within each repeat so drift hits both alike. Each figure is the median over
repeats of tokens per wall second and tokens per CPU second of the child process (on a shared
machine the CPU figure is far less noisy; ``load_average`` in the JSON says how busy it was).
Both sides must produce the same tokens (greedy decoding is deterministic). Prints a table, then
one JSON line with the new/old ratios.

    .venv/bin/python bench/engine_versions.py --base 2556410 [--repeats 3] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRAFTERS = ("none", "prompt-lookup")


def child(max_new_tokens: int) -> None:
    """One side: decode the bench prompts with each drafter, print tokens, wall and CPU seconds."""
    import time

    import torch

    from specviz.config import DrafterConfig, ModelSpec, RunConfig
    from specviz.models import ModelCache
    from specviz.runner import Request, run

    sys.path.insert(0, str(ROOT / "bench"))
    from engine import pick_prompts

    torch.set_num_threads(1)
    models = ModelCache()
    prompts = pick_prompts()
    out = {}
    for kind in DRAFTERS:
        config = RunConfig(
            target=ModelSpec("smollm2-135m"),
            drafter=DrafterConfig(kind=kind),
            max_new_tokens=max_new_tokens,
        )
        with tempfile.TemporaryDirectory() as tmp:
            requests = [Request(i, p, "bench") for i, p in enumerate(prompts)]
            run(config, requests[:1], Path(tmp) / "warm", models=models, progress=False)
            wall, cpu = time.perf_counter(), time.process_time()
            summary = run(config, requests, Path(tmp) / "run", models=models, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[kind] = {"tokens": summary.new_tokens, "wall_s": wall, "cpu_s": cpu}
    print("RESULT " + json.dumps(out))


def measure(source: Path, max_new_tokens: int) -> dict:
    env = os.environ | {"PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child"]
    command += ["--max-new-tokens", str(max_new_tokens)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="git revision to compare against (required)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.max_new_tokens)
        return
    if args.base is None:
        parser.error("--base REV is required: the git revision to compare against")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.base],
            check=True,
        )
        try:
            sides: dict[str, list[dict]] = {"new": [], "old": []}
            for repeat in range(args.repeats):
                order = ("new", "old") if repeat % 2 == 0 else ("old", "new")
                for side in order:
                    source = ROOT if side == "new" else old
                    sides[side].append(measure(source, args.max_new_tokens))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)])
    report(sides, args)


def report(sides: dict[str, list[dict]], args: argparse.Namespace) -> None:
    result: dict[str, object] = {"base": args.base, "repeats": args.repeats}
    print(f"{'drafter':<15}{'side':<6}{'tokens':>8}{'tok/s wall':>12}{'tok/s CPU':>12}")
    for kind in DRAFTERS:
        rates = {}
        for side, runs in sides.items():
            tokens = {r[kind]["tokens"] for r in runs}
            wall = statistics.median(r[kind]["tokens"] / r[kind]["wall_s"] for r in runs)
            cpu = statistics.median(r[kind]["tokens"] / r[kind]["cpu_s"] for r in runs)
            rates[side] = (tokens, wall, cpu)
            print(f"{kind:<15}{side:<6}{max(tokens):>8}{wall:>12.2f}{cpu:>12.2f}")
        same = rates["new"][0] == rates["old"][0] and len(rates["new"][0]) == 1
        result[kind] = {
            "same_tokens": same,
            "wall_ratio_new_over_old": round(rates["new"][1] / rates["old"][1], 3),
            "cpu_ratio_new_over_old": round(rates["new"][2] / rates["old"][2], 3),
        }
    result["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
