"""Reproducibility benchmark: one small study run twice, into two directories, then compared.

The study is a scaled-down default study (``studies/default.toml``): 4 categories x 2 prompts
single-task, a 5-request multitask stream with other task shares, prompt lookup at k = 2 and 5
with the constant and the persistent heuristic policy, the baseline, greedy, 40 new tokens per
turn. On 2
cores it takes a few minutes per run. The comparison (:func:`specviz.report.reproducibility.compare`)
says whether every request recorded identical round counts in both runs, whether both lead with
the same finding, and each run's modelled and wall-clock extra time of the headline stream with
their gap in percentage points. Prints a table, then one JSON line.

    .venv/bin/python bench/reproducibility.py [--out DIR] [--max-new-tokens 40] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from specviz.report.reproducibility import compare
from specviz.study import parse_study, run_study

CATEGORIES = ["writing", "coding", "extraction", "reasoning"]


def study_dict(max_new_tokens: int) -> dict:
    return {
        "name": "reproducibility",
        "max_new_tokens": max_new_tokens,
        "models": ["smollm2-135m"],
        "policies": ["constant", "heuristic"],
        "k": [2, 5],
        "workload": {"source": "builtin", "per_category": 2, "categories": CATEGORIES},
        "mixtures": {
            "single": True,
            "uniform": [],
            "size": 5,
            "order": "interleaved",
            # other shares than the single-task set; no task above its 2 single-task prompts
            "custom": {"chat-mix": "writing=2,coding=2,reasoning=1"},
        },
        "drafters": [{"kind": "prompt-lookup"}],
        "sampling": {"temperature": 0.0},
        "options": {"device": "cpu", "baseline": True, "workers": 2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help="parent of the two study directories (default: temp)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    parent = args.out or Path(tempfile.mkdtemp(prefix="specviz-repro-"))
    study = parse_study(study_dict(args.max_new_tokens), "bench/reproducibility.py")
    seconds = []
    for name in ("first", "second"):
        start = time.perf_counter()
        run_study(study, parent / name, resume=True, progress=False)
        seconds.append(time.perf_counter() - start)
    result = compare(parent / "first", parent / "second", n_boot=args.n_boot)
    m, w = result["modelled_extra_pct"], result["wall_extra_pct"]
    print(f"{'':28s} {'first':>10s} {'second':>10s}")
    print(f"{'study seconds':28s} {seconds[0]:10.1f} {seconds[1]:10.1f}")
    print(f"{'modelled extra time (%)':28s} {m[0]:+10.2f} {m[1]:+10.2f}")
    print(f"{'wall-clock extra time (%)':28s} {w[0]:+10.2f} {w[1]:+10.2f}")
    print(f"requests: {result['requests']}; identical round counts per request: "
          f"{result['identical_rounds']}; same headline: {result['same_headline']}")  # fmt: skip
    print(f"headline (first):  {result['headline'][0]}")
    print(f"headline (second): {result['headline'][1]}")
    print(
        json.dumps(
            {
                "requests": result["requests"],
                "identical_rounds": result["identical_rounds"],
                "same_headline": result["same_headline"],
                "modelled_extra_pct": m,
                "wall_extra_pct": w,
                "modelled_gap_pp": result["modelled_gap_pp"],
                "wall_gap_pp": abs(w[0] - w[1]),
                "study_seconds": seconds,
                "max_new_tokens": args.max_new_tokens,
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
