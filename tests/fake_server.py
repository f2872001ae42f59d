"""A scripted chat-completions server on a free loopback port, for the endpoint client's tests.

``FakeServer(answer)`` runs uvicorn in a thread; ``answer(n, body)`` (n: 0-based count of chat
requests so far) returns the response. Leaving the ``with`` block stops it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Answer = Callable[[int, dict[str, Any]], Response]
MODEL = "fake-model"


class FakeServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.times: list[float] = []  # time.monotonic() of each chat request's arrival
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.times.append(time.monotonic())
        self.requests.append(body)
        return self.answer(len(self.requests) - 1, body)

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(timeout=10)


def sse(chunks: list[str]) -> Response:
    """An event stream of the given ``data:`` payloads, then ``[DONE]``."""
    from starlette.responses import StreamingResponse

    async def body() -> AsyncIterator[str]:
        for data in chunks:
            yield f"data: {data}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def chunk(payload: dict[str, Any]) -> str:
    return json.dumps({"id": "x", "object": "chat.completion.chunk", "model": MODEL} | payload)


def stream_answer(figures: dict[str, Any]) -> Response:
    """A three-chunk answer; ``figures`` merged into the final usage chunk."""
    delta = [{"index": 0, "delta": {"content": c}} for c in ("Hel", "lo", "!")]
    chunks = [chunk({"choices": [d]}) for d in delta]
    chunks.append(chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    chunks.append(chunk({"choices": [], "usage": usage} | figures))
    return sse(chunks)


def write_pld_study(
    root: Path, name: str, model: str, rows: list[dict], max_new_tokens: int, k: int, options: str
) -> Path:
    """A study of ``rows`` (MT-Bench-shaped questions, written as ``q.jsonl``) in single-task
    streams and their uniform mix, decoded by prompt lookup named ``pld`` at constant ``k``:
    the shape every served-path test sends. ``options``: an ``[options]`` table or ``""``."""
    (root / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    study = root / f"{name}.toml"
    study.write_text(
        f"""name = "{name}"
max_new_tokens = {max_new_tokens}
models = ["{model}"]
policies = ["constant"]
k = [{k}]
[workload]
source = "{root / "q.jsonl"}"
per_category = 2
[mixtures]
single = true
uniform = ["interleaved"]
[[drafters]]
kind = "prompt-lookup"
name = "pld"
{options}"""
    )
    return study


def llamacpp_timings(predicted: int, drafted: int, accepted: int) -> dict[str, Any]:
    """llama.cpp ``llama-server``'s ``timings`` object (tools/server/server-common.cpp,
    ``server_slot_stats::to_json``), with the same keys: ``draft_n`` and ``draft_n_accepted``
    only when the request drafted at least one token, as the server writes it."""
    timings: dict[str, Any] = {
        "cache_n": 0,
        "prompt_n": 7,
        "prompt_ms": 20.0,
        "prompt_per_token_ms": 20.0 / 7,
        "prompt_per_second": 7 / 0.02,
        "predicted_n": predicted,
        "predicted_ms": 10.0 * predicted,
        "predicted_per_token_ms": 10.0,
        "predicted_per_second": 100.0,
    }
    if drafted > 0:
        timings |= {"draft_n": drafted, "draft_n_accepted": accepted}
    return timings
