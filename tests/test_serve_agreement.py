"""``specviz serve`` on a free loopback port, a study sent to it with ``--endpoint``, and the same
study in process: every request's acceptance (histogram and per-step counts) and text agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from engine_helpers import run_cli
from fake_server import write_pld_study
from loopback import free_port, serving

from specviz.endpoint.run import read_server_table
from specviz.metrics.distributions import accepted_histogram, request_distributions, request_values
from specviz.rundir import find_run_dirs, scan_events, scan_requests
from specviz.serve.metrics import event_spec_steps
from specviz.study import load_study, run_study
from specviz.study.local import killed_with_parent

K = 3


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[str]:
    """``specviz serve`` (prompt lookup, constant k = 3, detailed figures) in a subprocess,
    stopped when the module's tests end."""
    port = free_port()
    args = ["--target", str(tiny_model_dir), "--drafter", "prompt-lookup", "--k", str(K)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "specviz", "serve", *args, "--port", str(port),
         "--per-request-spec-decode-metrics", "detailed", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        preexec_fn=killed_with_parent,
    )  # fmt: skip
    with serving(proc, f"http://127.0.0.1:{port}", 240, lambda: proc.communicate()[0]) as url:
        yield url


@pytest.fixture(scope="module")
def study_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agree")
    rows = [
        {"question_id": f"{c}-{i}", "category": c,
         "turns": [f"{c} {i}: say hi hi hi"] + (["again, hi hi"] if i == 0 else [])}
        for c in ("coding", "math")
        for i in range(2)
    ]  # fmt: skip
    options = '[options]\nbaseline = false\ndevice = "cpu"\n'
    return write_pld_study(
        root, "agree", str(tiny_model_dir), rows, max_new_tokens=16, k=K, options=options
    )


def test_a_study_through_specviz_serve_agrees_with_the_in_process_study(
    server: str, study_file: Path, tmp_path: Path
):
    in_process = tmp_path / "in-process"
    run_study(load_study(study_file), in_process, progress=False)
    served = tmp_path / "served"
    result = run_cli(
        "study", str(study_file), "--out", str(served), "--endpoint", f"pld={server}",
        "--concurrency", "2", "--quiet", timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    dirs = find_run_dirs(in_process)
    assert len(dirs) == 3 and [d.name for d in find_run_dirs(served)] == [d.name for d in dirs]
    checked = 0
    for run_dir in dirs:
        mine = event_spec_steps(pl.read_parquet(run_dir / "events.parquet"), K)
        theirs = read_server_table(served / run_dir.relative_to(in_process))
        for rid, hist in theirs.select("request_id", "acceptance_histogram").iter_rows():
            assert hist == mine[rid].vllm_fields(detailed=False)["acceptance_histogram"], rid
            checked += 1
        # detailed: the server's per-step counts, written as events, are the engine's steps
        server_steps = event_spec_steps(
            pl.read_parquet(served / run_dir.relative_to(in_process) / "events.parquet"), K
        )
        assert server_steps == mine
        texts = [
            pl.read_parquet(d / "requests.parquet").sort("request_id")["output_text"].to_list()
            for d in (run_dir, served / run_dir.relative_to(in_process))
        ]
        assert texts[0] == texts[1]
    assert checked == 2 + 2 + 4
    assert sum(sum(h) for h in theirs["acceptance_histogram"].to_list()) > 0
    # summary reads the server's figures: each category alone vs in the uniform mix
    summary = run_cli("summary", str(served), "--json")
    assert summary.returncode == 0, summary.stderr
    answer = json.loads(summary.stdout)
    assert answer["measured_by"] == "server"
    shifted = {(s["category"], s["mixture"]) for s in answer["shifts"]}
    assert shifted == {("coding", "uniform-interleaved"), ("math", "uniform-interleaved")}
    # its accepted-length histogram and per-request acceptance rates are the in-process ones
    events, requests = scan_events(in_process).collect(), scan_requests(in_process).collect()
    mine = accepted_histogram(events, requests).select("category", "accepted", "steps").rows()
    found = answer["distributions"]
    theirs = [(h["category"], h["accepted"], h["steps"]) for h in found["accepted_histogram"]]
    assert sorted(theirs) == sorted(mine) and mine
    rates = request_distributions(request_values(events, requests))
    served_rates = {
        (r["category"], r["stream"]): r["acceptance_rate_mean"] for r in found["requests"]
    }
    rates_in_process = {
        (c, st): x for c, st, x in rates.select("category", "stream", "acceptance_rate_mean").rows()
    }
    assert served_rates == pytest.approx(rates_in_process)
    # the report reads them too, each figure marked as the server's (tests/test_report_served.py)
    report = run_cli("report", str(served), "--out", str(tmp_path / "r.html"), "--n-boot", "200")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Server-measured" in page and "mean acceptance length" in page


def test_serve_refuses_a_bad_request_in_openai_shape(server: str):
    response = httpx.post(f"{server}/v1/chat/completions", content=b"{nope", timeout=30)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    response = httpx.post(
        f"{server}/v1/chat/completions", json={"model": "other", "messages": []}, timeout=30
    )
    assert response.status_code == 404


def test_serve_answers_without_streaming_with_vllm_figures(server: str):
    body = {"messages": [{"role": "user", "content": "hi hi hi"}], "max_tokens": 8,
            "temperature": 0}  # fmt: skip
    answer = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120).json()
    fields = answer["metrics"]["speculative_decoding"]
    assert answer["usage"]["completion_tokens"] == 8
    assert sum(fields["acceptance_histogram"]) == fields["num_spec_steps"]
    assert sum(fields["per_step_accepted"]) == fields["num_accepted_draft_tokens"]
    assert fields["num_spec_tokens"] == K
