"""Co-decoding benchmark: a small study decoded one run at a time, then with its runs in lanes.

The study: the embedded SmolLM2-135M on MT-Bench (first turns), ``--categories`` single-task
streams of 2 prompts each plus their uniform interleaved stream, greedy, ``--max-new-tokens``
per turn; the default study's conditions (the baseline; the suffix drafter with one memory under
constant, persistent heuristic and cost-aware k = 5, the cost-aware policy with a fixed cost
curve so that every run of it is deterministic; the per-task suffix memory at constant k = 2
and 5). It runs in this process (``workers = 1``, one torch thread) once with ``co_decode = 1``
and once per ``--lanes`` value, each into a fresh directory, side by side in one invocation
(``--workers N``: N worker processes, the study option; cpu_s then counts this process only);
copies of earlier decodes (docs/studies.md, "No decode twice") are made in every mode.

Columns: ``study_s`` = wall seconds of ``run_study``; ``speedup`` = study_s of the one-at-a-time
run / this one; ``cpu_s`` = CPU seconds of this process (less noisy on a shared machine;
``load_average`` in the JSON says how busy it was); ``same_rounds`` = every run's rounds (k,
drafts, verdicts, emitted tokens) equal the one-at-a-time run's (``runs_differing`` in the JSON:
how many do not); ``engine`` = the engines the runs' targets ran on (``run.json``; on
``lean-invariant``, bf16's default, the lanes verify on it too, so their rounds are exact in
bf16); ``verify_1_s`` (JSON) = the
calibrated seconds of a 1-row verify forward (``cost_model.json``, fitted from rounds verified
alone). Prints a table, then one JSON line.

    .venv/bin/python bench/co_decode.py [--lanes 4 8] [--dtype float32] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import polars as pl

from specviz.precision import cpu_bf16_flags
from specviz.rundir import find_run_dirs, scan_events
from specviz.study import parse_study, run_study

ROUND = ["request_id", "turn", "round", "position", "kind", "k", "n_drafted", "accepted"]
ROUND += ["draft_token", "target_token", "emitted"]
COST_CURVE = {"verify_s": [1.0, 1.06, 1.12, 1.2, 1.3, 1.45], "draft_s": {"suffix": [0.0]}}


def study_data(
    categories: list[str], max_new: int, dtype: str, lanes: int, workers: int
) -> dict[str, object]:
    return {
        "name": "co-decode-bench",
        "models": ["smollm2-135m"],
        "policies": ["constant"],
        "k": [5],
        "max_new_tokens": max_new,
        "workload": {
            "source": "mt-bench",
            "per_category": 2,
            "categories": categories,
            "mapping": {"max_turns": 1},
        },
        "mixtures": {"uniform": ["interleaved"]},
        "drafters": [
            {
                "kind": "suffix",
                "name": "suffix",
                "policies": [
                    "constant",
                    "heuristic",
                    {"kind": "cost-aware", "cost_model": COST_CURVE},
                ],
            },
            {
                "kind": "suffix",
                "name": "suffix-task",
                "partition": "task",
                "policies": ["constant"],
                "k": [2, 5],
            },
        ],
        "options": {"device": "cpu", "dtype": dtype, "workers": workers, "co_decode": lanes},
    }


def rounds(out: Path) -> dict[str, pl.DataFrame]:
    return {
        d.name: scan_events(d).select(ROUND).sort(ROUND[:5]).collect() for d in find_run_dirs(out)
    }


def engines(out: Path) -> list[str]:
    """The engines the runs' targets ran on (``run.json``): co-decoded runs verify on it too
    (lean-invariant: per-row lean caches; otherwise the transformers batch cache)."""
    found = set()
    for d in find_run_dirs(out):
        meta = json.loads((d / "run.json").read_text())
        found.add(meta["models"]["target"]["engine"])
    return sorted(found)


def measure(data: dict[str, object], out: Path) -> tuple[float, float]:
    study = parse_study(data, "co-decode-bench.toml")
    wall, cpu = time.perf_counter(), time.process_time()
    assert run_study(study, out, progress=False).complete
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--categories", nargs="+", default=["coding", "writing", "roleplay"])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("SPECVIZ_THREADS", "1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        for lanes in [1, *args.lanes]:
            out = Path(tmp) / f"lanes-{lanes}"
            data = study_data(args.categories, args.max_new_tokens, args.dtype, lanes, args.workers)
            study_s, cpu_s = measure(data, out)
            got = rounds(out)
            reference = reference or got
            differ = [n for n, f in got.items() if n not in reference or not f.equals(reference[n])]
            same = sorted(got) == sorted(reference) and not differ
            runs = len(got)
            curve = json.loads((out / "cost_model.json").read_text())["targets"]
            verify_1 = next(iter(curve.values()))["verify_s"][0]
            rows.append({"lanes": lanes, "runs": runs, "study_s": study_s, "cpu_s": cpu_s,
                         "same_rounds": same, "runs_differing": len(differ),
                         "verify_1_s": verify_1, "engines": engines(out)})  # fmt: skip
    base = rows[0]["study_s"]
    print(f"{'lanes':>5} {'runs':>5} {'study_s':>9} {'speedup':>8} {'cpu_s':>8} same_rounds engine")
    for r in rows:
        r["speedup"] = base / r["study_s"]
        print(
            f"{r['lanes']:>5} {r['runs']:>5} {r['study_s']:>9.1f} {r['speedup']:>8.2f} "
            f"{r['cpu_s']:>8.1f} {r['same_rounds']!s:>11} {','.join(r['engines'])}"
        )
    print(
        json.dumps(
            {
                "bench": "co_decode",
                "dtype": args.dtype,
                "workers": args.workers,
                "max_new_tokens": args.max_new_tokens,
                "categories": args.categories,
                "cpu_bf16_flags": cpu_bf16_flags(),
                "load_average": os.getloadavg(),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
