"""Threads under a busy core: one cached forward with specviz's thread choice against all cores.

A torch CPU forward waits for its slowest OpenMP thread at every operator; when its threads fill
every core and another process takes one, each forward stalls (``specviz.threads``). This bench
times one cached forward of the embedded model (1 row and ``--rows`` rows after a
``specviz.calibrate.CONTEXT``-token prefill) with ``specviz.threads.torch_threads(1, cores)``
threads and with one thread per core, first on the machine as it is, then with a CPU burner
(a process spinning on one core) running; lengths and thread counts are interleaved round-robin.
Prints a table (median ms), then one JSON line.

    .venv/bin/python bench/threads.py [--repeats 8] [--rows 4] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from specviz.calibrate import forward_samples
from specviz.config import ModelSpec
from specviz.models import ModelCache
from specviz.threads import torch_threads, usable_cores

BURN = "while True: pass"


def measure(model: torch.nn.Module, counts: list[int], rows: list[int], repeats: int) -> dict:
    """Median ms of one forward per (threads, rows), measured round-robin."""
    times: dict[tuple[int, int], list[float]] = {(t, n): [] for t in counts for n in rows}
    for _ in range(repeats):
        for t in counts:
            torch.set_num_threads(t)
            for n in rows:
                times[(t, n)].extend(forward_samples(model, [n]))
    return {key: 1000 * statistics.median(v) for key, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--rows", type=int, default=4, help="the verify size besides 1 row")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    cores = usable_cores()
    chosen = torch_threads(1, cores)
    counts = sorted({chosen, cores})
    rows = [1, args.rows]
    model = ModelCache().get(ModelSpec("smollm2-135m", device="cpu", dtype=args.dtype)).model
    measure(model, counts, rows, 1)  # warm-up
    load_before = os.getloadavg()[0]
    idle = measure(model, counts, rows, args.repeats)
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        time.sleep(1.0)
        busy = measure(model, counts, rows, args.repeats)
    finally:
        burner.kill()
        burner.wait()
    print(f"cores {cores}; specviz's choice {chosen} thread(s); load average {load_before:.2f}")
    print(f"{'threads':>8s} {'rows':>5s} {'as is ms':>9s} {'burner ms':>10s} {'slowdown':>9s}")
    for t in counts:
        for n in rows:
            a, b = idle[(t, n)], busy[(t, n)]
            print(f"{t:8d} {n:5d} {a:9.1f} {b:10.1f} {b / a:9.2f}")
    key = {f"threads{t}_rows{n}": (t, n) for t in counts for n in rows}
    result = {
        "cores": cores,
        "chosen_threads": chosen,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "ms_as_is": {k: idle[v] for k, v in key.items()},
        "ms_with_burner": {k: busy[v] for k, v in key.items()},
        "burner_vs_chosen_rows": {
            str(n): busy[(cores, n)] / busy[(chosen, n)] for n in rows
        },  # > 1: all cores is that much slower than the choice while a core is busy
        "load_average": load_before,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
