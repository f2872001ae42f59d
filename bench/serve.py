"""Serving benchmark: what the HTTP path costs against in-process decoding, and throughput at
concurrency 1, 4 and 8 through ``specviz serve``, side by side in one run.

Same embedded model (SmolLM2-135M), same prompts, same configuration (prompt lookup, constant k,
greedy), same token budget. ``specviz serve`` runs in a subprocess on a free loopback port and is
stopped at the end; the in-process run and the endpoint runs alternate within each repeat, so
machine load hits all alike. Throughput is generated tokens over the run's wall seconds (the
in-process figure: its requests' decoding time; the endpoint figures: from the first request
sent to the last answer, HTTP, streaming and the client included), and over CPU seconds (this
process's, plus the server's for the endpoint runs: HTTP, streaming and client included), which
a shared machine's load moves far less than wall time. The server decodes one
request at a time (batch size 1), so concurrency shows queueing, not batching: throughput stays
near the concurrency-1 figure while latency grows. Outputs are checked equal across all paths.
Prints a table, then one JSON line.

    .venv/bin/python bench/serve.py [--prompts 8] [--max-new-tokens 32] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import polars as pl

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.endpoint.client import EndpointConfig
from specviz.endpoint.run import run_endpoint
from specviz.runner import Request, run
from specviz.study.local import killed_with_parent
from specviz.workloads import builtin_prompts

TARGET = "smollm2-135m"
K = 5
CONCURRENCY = (1, 4, 8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, max_new_tokens: int) -> subprocess.Popen[str]:
    args = ["--target", TARGET, "--drafter", "prompt-lookup", "--k", str(K), "--device", "cpu",
            "--max-new-tokens", str(max_new_tokens), "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "specviz", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        preexec_fn=killed_with_parent,
    )
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"specviz serve exited: {proc.communicate()[0]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("specviz serve did not start in 300 s")
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    config = RunConfig(
        ModelSpec(TARGET, device="cpu"),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("constant", K),
        max_new_tokens=args.max_new_tokens,
    )
    requests = [Request(i, p, "bench") for i, p in enumerate(builtin_prompts()[: args.prompts])]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, args.max_new_tokens)
    rates: dict[str, list[float]] = {"in-process": [], **{f"http-c{c}": [] for c in CONCURRENCY}}
    cpu: dict[str, list[float]] = {name: [] for name in rates}
    tokens: dict[str, int] = {}
    outputs: dict[str, list[str]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeats):
                out = Path(tmp) / f"in-process-{rep}"
                before = time.process_time()
                s = run(config, requests, out, progress=False)
                cpu["in-process"].append(s.new_tokens / (time.process_time() - before))
                rates["in-process"].append(s.tokens_per_s)
                tokens["in-process"] = s.new_tokens
                outputs["in-process"] = _texts(out)
                for c in CONCURRENCY:
                    out = Path(tmp) / f"http-c{c}-{rep}"
                    before = cpu_seconds(server.pid) + time.process_time()
                    e = run_endpoint(
                        config, requests, out, EndpointConfig(url, concurrency=c), progress=False
                    )
                    spent = cpu_seconds(server.pid) + time.process_time() - before
                    cpu[f"http-c{c}"].append(e.new_tokens / spent)
                    rates[f"http-c{c}"].append(e.tokens_per_s)
                    tokens[f"http-c{c}"] = e.new_tokens
                    outputs[f"http-c{c}"] = _texts(out)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    median = {name: statistics.median(v) for name, v in rates.items()}
    per_cpu = {name: statistics.median(v) for name, v in cpu.items()}
    base, cpu_base = median["in-process"], per_cpu["in-process"]
    print(f"{'path':<12} {'tokens':>7} {'tok/s':>8} {'vs in-proc':>11} {'tok/cpu-s':>10} {'vs':>7}")
    for name, value in median.items():
        print(
            f"{name:<12} {tokens[name]:>7} {value:>8.1f} {value / base:>10.2f}x "
            f"{per_cpu[name]:>10.1f} {per_cpu[name] / cpu_base:>6.2f}x"
        )
    same = all(texts == outputs["in-process"] for texts in outputs.values())
    print(f"outputs equal on every path: {same}")
    result = {
        "bench": "serve",
        "target": TARGET,
        "drafter": f"prompt-lookup k={K} constant, greedy",
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "tokens_per_s": median,
        "http_over_in_process": {name: v / base for name, v in median.items()},
        "tokens_per_cpu_s": per_cpu,
        "cpu_http_over_in_process": {name: v / cpu_base for name, v in per_cpu.items()},
        "outputs_equal": same,
        "load_average": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


def _texts(run_dir: Path) -> list[str]:
    frame = pl.read_parquet(run_dir / "requests.parquet").sort("request_index")
    return frame["output_text"].to_list()


if __name__ == "__main__":
    main()
