"""The real llama.cpp ``llama-server`` (built by scripts/build-llama-cpp.sh) on a loopback port,
on the embedded GGUF with n-gram speculative decoding: a small study (single-task streams and
their uniform mix, a two-turn prompt among them) sent to it with ``--endpoint`` through a
recording proxy, and every per-request draft count specviz recorded checked against the bytes
the server sent. Then ``specviz summary`` and ``specviz report`` read the study, and llama-bench
gives a cost curve specviz reads.

Marked ``engines``: ``make test-engines`` builds llama.cpp (once, cached) and runs these; without
the binaries they are skipped, so ``make test`` never builds llama.cpp. The binaries are looked
up in ``$SPECVIZ_LLAMA_CPP_BIN``, else the build script's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
import uvicorn
from engine_helpers import run_cli
from fake_server import write_pld_study
from loopback import free_port, serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from specviz.endpoint.parse import server_spec
from specviz.endpoint.run import read_server_table
from specviz.llama_bench import imported_cost_model, read_llama_bench
from specviz.model_source import cache_root, embedded_gguf
from specviz.rundir import find_run_dirs
from specviz.study.local import killed_with_parent

pytestmark = pytest.mark.engines

VERSION = "0.3.36"  # scripts/build-llama-cpp.sh's default llama-cpp-python sdist
MODEL = "smollm2-135m"  # the served name (--alias), the study's model
DRAFT_MAX = 5
# n-gram drafting: look the last 3 tokens up in the context, draft up to 5 (the default 12-token
# lookup rarely matches in short answers)
SPEC = ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3",
        "--spec-ngram-simple-size-m", str(DRAFT_MAX)]  # fmt: skip
# prompts on which the 135M model's answers repeat n-grams of the context (probed on this
# server: each drafted, and drafts were accepted)
ROWS = [
    {"question_id": "extraction-0", "category": "extraction",
     "turns": ["Repeat after me: one two three four five six seven eight nine ten",
               "Now say it once more."]},
    {"question_id": "extraction-1", "category": "extraction",
     "turns": ["Extract the names from this text: Alice met Bob. Bob met Carol. Carol met Alice."]},
    {"question_id": "coding-0", "category": "coding",
     "turns": ["Write a Python function add(a, b) and call it three times."]},
    {"question_id": "coding-1", "category": "coding",
     "turns": ["Write a Python class Point with x and y and a method to add two points."]},
]  # fmt: skip


def bin_dir() -> Path:
    """Where the llama.cpp binaries are: $SPECVIZ_LLAMA_CPP_BIN or the build script's cache."""
    given = os.environ.get("SPECVIZ_LLAMA_CPP_BIN")
    return Path(given) if given else cache_root() / "llama.cpp" / VERSION / "bin"


def require(tool: str) -> Path:
    path = bin_dir() / tool
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not built: `make test-engines` builds llama.cpp and runs this")
    return path


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-server on a free loopback port, one slot, one thread, no prompt cache (every
    request decoded from scratch, so a prompt sent twice is answered alike), n-gram drafting;
    stopped when the module's tests end (and killed with the test process)."""
    binary = require("llama-server")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    args = [str(binary), "-m", str(embedded_gguf(MODEL)), "--alias", MODEL,
            "--host", "127.0.0.1", "--port", str(port), "-t", "1", "-np", "1",
            "-c", "4096", "--no-webui", "--no-cache-prompt", "-cram", "0", *SPEC]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=killed_with_parent)  # fmt: skip
    with serving(proc, f"http://127.0.0.1:{port}", 120, log.read_text) as url:
        yield url


class RecordingProxy:
    """A loopback proxy in front of ``upstream`` that passes every request and response through
    unchanged and keeps, per chat request, its messages and the raw ``data:`` payloads the
    server sent (so the test reads the server's own answer, not specviz's reading of it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.exchanges: list[tuple[list[dict[str, str]], list[str]]] = []
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def _models(self, request: Request) -> Response:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{self.upstream}/v1/models")
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def _chat(self, request: Request) -> Response:
        body = await request.body()
        payloads: list[str] = []
        self.exchanges.append((json.loads(body)["messages"], payloads))

        async def relay() -> AsyncIterator[bytes]:
            async with (
                httpx.AsyncClient(timeout=300) as client,
                client.stream(
                    "POST",
                    f"{self.upstream}/v1/chat/completions",
                    content=body,
                    headers={"content-type": "application/json"},
                ) as answer,
            ):
                async for line in answer.aiter_lines():
                    if line.startswith("data:"):
                        payloads.append(line[5:].strip())
                    yield (line + "\n").encode()

        return StreamingResponse(relay(), media_type="text/event-stream")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def server_counts(payloads: list[str]) -> tuple[int, int]:
    """(drafted, accepted) of one streamed answer, read straight from the server's last
    ``timings`` object (llama-server omits both keys when nothing was drafted)."""
    timings = [json.loads(p)["timings"] for p in payloads if p != "[DONE]" and '"timings"' in p]
    assert timings, "the server sent no timings"
    return timings[-1].get("draft_n", 0), timings[-1].get("draft_n_accepted", 0)


@pytest.fixture(scope="module")
def study(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The study sent through the recording proxy; returns its directory and, per request's
    full message list, the server's (drafted, accepted)."""
    root = tmp_path_factory.mktemp("engines")
    options = "[options]\nbaseline = false\n"
    study_file = write_pld_study(root, "llamacpp", MODEL, ROWS, 64, DRAFT_MAX, options)
    with RecordingProxy(llama_server) as proxy:
        result = run_cli(
            "study", str(study_file), "--out", str(root / "out"), "--quiet",
            "--endpoint", f"pld={proxy.url}", "--concurrency", "2", timeout=600,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the same turn sent twice (a prompt in its single-task stream and in the mix) is decoded
    # alike: greedy, no prompt cache, one slot; so each turn's messages name one answer
    answers: dict[str, set[tuple[int, int]]] = {}
    for messages, payloads in proxy.exchanges:
        answers.setdefault(json.dumps(messages), set()).add(server_counts(payloads))
    assert all(len(counts) == 1 for counts in answers.values()), answers
    return root / "out", {key: counts.pop() for key, counts in answers.items()}


def test_every_recorded_draft_count_is_the_servers_own(study: tuple[Path, dict]):
    out, answers = study
    dirs = find_run_dirs(out)
    assert len(dirs) == 3  # two single-task streams and their uniform mix
    checked = drafted_total = 0
    for run_dir in dirs:
        requests = pl.read_parquet(run_dir / "requests.parquet")
        for row in requests.iter_rows(named=True):
            # the turns as sent: each later turn carries the server's own earlier answers
            messages: list[dict[str, str]] = []
            counts = []
            for prompt, answer in zip(row["prompt_turns"], row["output_turns"], strict=True):
                messages.append({"role": "user", "content": prompt})
                counts.append(answers[json.dumps(messages)])
                messages.append({"role": "assistant", "content": answer})
            assert row["drafted"] == sum(d for d, _ in counts), row["request_id"]
            assert row["accepted"] == sum(a for _, a in counts), row["request_id"]
            checked += 1
            drafted_total += row["drafted"]
        server = read_server_table(run_dir)
        assert set(server["metrics_source"]) == {"llama.cpp"}
        assert server["num_spec_steps"].is_null().all()  # llama.cpp does not report them
    assert checked == 2 + 2 + 4
    assert drafted_total > 0  # n-gram drafting did draft on these prompts


def test_summary_and_report_give_llamacpp_acceptance_per_task(study, tmp_path):
    out, _ = study
    result = run_cli("summary", str(out), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    rates = {(r["mixture"], r["category"]): r["acceptance_rate"] for r in answer["rows"]}
    assert rates[("extraction", "extraction")] > 0  # the repeated list is drafted and accepted
    assert {s["category"] for s in answer["shifts"]} == {"coding", "extraction"}
    assert all(s["rate_shift"] is not None for s in answer["shifts"])
    report = run_cli("report", str(out), "--out", str(tmp_path / "r.html"), "--n-boot", "200")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Server-measured" in page and "llama.cpp" in page
    assert "Acceptance rate (accepted / drafted), single-task vs multitask" in page


def test_a_full_response_carries_the_same_counts_as_the_stream(llama_server: str):
    body = {"model": MODEL, "messages": [{"role": "user", "content": ROWS[0]["turns"][0]}],
            "max_tokens": 48, "temperature": 0, "seed": 0}  # fmt: skip
    url = f"{llama_server}/v1/chat/completions"
    full = httpx.post(url, json=body, timeout=300).json()
    spec = server_spec(full)
    assert spec is not None and spec.source == "llama.cpp"
    assert spec.drafted == full["timings"]["draft_n"] > 0
    streamed = body | {"stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", url, json=streamed, timeout=300) as answer:
        payloads = [line[5:].strip() for line in answer.iter_lines() if line.startswith("data:")]
    assert server_counts(payloads) == (spec.drafted, spec.accepted)  # greedy: the same drafts
    last = json.loads(payloads[-2])  # the usage chunk before [DONE] carries the timings
    assert last["choices"] == [] and "timings" in last and "usage" in last


def test_llama_bench_output_is_read_as_a_cost_curve(tmp_path: Path):
    bench = require("llama-bench")
    result = subprocess.run(
        [str(bench), "-m", str(embedded_gguf(MODEL)), "-o", "json", "-t", "1", "-r", "2",
         "-p", "1,2,4", "-n", "0", "-d", "32"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    path = tmp_path / "bench.json"
    path.write_text(result.stdout)
    model = imported_cost_model(read_llama_bench(path), {}, str(path))
    assert len(model.verify_s) == 4 and all(s > 0 for s in model.verify_s)
    assert model.verify(4) > model.verify(1)
