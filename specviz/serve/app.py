"""``specviz serve``: the engine behind an OpenAI-compatible chat-completions API (Starlette +
uvicorn).

Routes: ``POST /v1/chat/completions`` (streaming SSE and not), ``GET /v1/models``, ``GET /health``.
Each response carries vLLM's per-request speculative-decoding figures (vLLM PR #48915) in its
top-level ``metrics.speculative_decoding`` object, computed from the engine's rounds
(:mod:`specviz.serve.metrics`): in a full response always, in a stream in the final usage chunk
(``choices == []``) when the request asks ``stream_options.include_usage``, as vLLM does. A
server without a drafter reports none, like vLLM without speculation. A stream sends one chunk
per target forward pass that added text, so a client's inter-chunk gaps are the engine's steps.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from specviz.config import SamplingConfig
from specviz.serve.engine import DEFAULT_TASK, Done, Piece, RequestError, ServeEngine, TurnRequest

METRICS_LEVELS = ("none", "summary", "detailed")


@dataclass(frozen=True)
class ServeConfig:
    """How the server answers: the model name it serves, where, and its metrics level."""

    model_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    metrics: str = "summary"  # none | summary | detailed (vLLM's --per-request-spec-decode-metrics)

    def __post_init__(self) -> None:
        if self.metrics not in METRICS_LEVELS:
            raise RequestError(
                f"--per-request-spec-decode-metrics {self.metrics!r} is not one of "
                f"{', '.join(METRICS_LEVELS)}"
            )
        if not 0 <= self.port < 65536:
            raise RequestError(f"--port {self.port} is not a port number (0..65535)")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """An error in OpenAI's shape."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


def _content(message: Any) -> tuple[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError("each message must be an object with a role and content")
    content = message.get("content")
    if isinstance(content, list):  # content parts: the text ones, joined
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    if not isinstance(content, str):
        raise RequestError(f"message content must be text, not {type(content).__name__}")
    return message["role"], content


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{key} must be a number, not {value!r}")
    return float(value)


def parse_request(body: Any, engine: ServeEngine) -> TurnRequest:
    """A chat-completions body as the engine's request; RequestError names what is wrong."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    default = engine.config
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = default.max_new_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError(f"max_tokens must be an integer >= 1, not {max_tokens!r}")
    temperature = _number(body, "temperature", default.sampling.temperature)
    top_p = _number(body, "top_p", default.sampling.top_p)
    if temperature < 0 or not 0 < top_p <= 1:
        raise RequestError("temperature must be >= 0 and top_p in (0, 1]")
    seed = body.get("seed", default.seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RequestError(f"seed must be an integer, not {seed!r}")
    return TurnRequest(
        tuple(_content(m) for m in messages),
        max_tokens,
        SamplingConfig(temperature, top_p),
        seed % (2**63),
        _task(body),
    )


def _task(body: dict[str, Any]) -> str:
    """The request's task: OpenAI's ``metadata`` map's ``task`` (``specviz run/study
    --endpoint`` sends the prompt's category there), else ``chat``."""
    metadata = body.get("metadata")
    if metadata is None:
        return DEFAULT_TASK
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise RequestError("metadata must be an object of string values")
    return metadata.get("task") or DEFAULT_TASK


def _check_room(body: dict[str, Any], prompt_tokens: int, window: int | None) -> None:
    """Refuse a request whose prompt plus its own ``max_tokens`` (or ``max_completion_tokens``)
    exceeds the context window, naming both numbers, as vLLM does. A request that asks for no
    maximum gets the server's ``--max-new-tokens``, cut at the window (as in process)."""
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    if window is None or asked is None or prompt_tokens + asked <= window:
        return
    key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    raise RequestError(
        f"{key} is too large: {asked}. This model's maximum context length is {window} tokens "
        f"and your request has {prompt_tokens} input tokens ({asked} > {window} - "
        f"{prompt_tokens}): ask for at most {max(window - prompt_tokens, 0)}"
    )


class Server:
    """The ASGI application around one :class:`ServeEngine`."""

    def __init__(self, engine: ServeEngine, config: ServeConfig) -> None:
        self.engine = engine
        self.config = config
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        entry = {"id": self.config.model_name, "object": "model", "owned_by": "specviz"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return _error(400, f"the request body is not valid JSON ({err})")
        model = body.get("model") if isinstance(body, dict) else None
        if model is not None and model != self.config.model_name:
            return _error(
                404,
                f"The model `{model}` does not exist (this server serves "
                f"`{self.config.model_name}`).",
                "NotFoundError",
            )
        try:
            turn = parse_request(body, self.engine)
            ids = self.engine.encode(turn)  # a prompt too long is refused before anything streams
            _check_room(body, len(ids), self.engine.target.context_window)
        except RequestError as err:
            return _error(400, str(err))
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": self.config.model_name,
        }
        if body.get("stream"):
            options = body.get("stream_options") or {}
            usage = bool(isinstance(options, dict) and options.get("include_usage"))
            return StreamingResponse(
                self._stream(turn, head, usage), media_type="text/event-stream"
            )
        return await self._full(turn, head)

    def _metrics(self, done: Done) -> dict[str, Any]:
        if not self.engine.speculative or self.config.metrics == "none":
            return {}
        fields = done.steps.vllm_fields(self.config.metrics == "detailed")
        return {"metrics": {"speculative_decoding": fields}}

    @staticmethod
    def _usage(done: Done) -> dict[str, int]:
        return {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        }

    async def _full(self, turn: TurnRequest, head: dict[str, Any]) -> Response:
        done = None
        async for item in _decode(self.engine, turn):
            if isinstance(item, Done):
                done = item
        assert done is not None
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": done.text},
            "finish_reason": done.finish_reason,
        }
        return JSONResponse(
            {
                **head,
                "object": "chat.completion",
                "choices": [choice],
                "usage": self._usage(done),
                **self._metrics(done),
            }
        )

    async def _stream(
        self, turn: TurnRequest, head: dict[str, Any], usage: bool
    ) -> AsyncIterator[str]:
        chunk = {**head, "object": "chat.completion.chunk"}

        def event(payload: dict[str, Any]) -> str:
            return f"data: {json.dumps(chunk | payload)}\n\n"

        yield event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        async for item in _decode(self.engine, turn):
            if isinstance(item, Piece) and item.text:
                yield event({"choices": [{"index": 0, "delta": {"content": item.text}}]})
            elif isinstance(item, Done):
                finish = {"index": 0, "delta": {}, "finish_reason": item.finish_reason}
                yield event({"choices": [finish]})
                if usage:
                    yield event({"choices": [], "usage": self._usage(item), **self._metrics(item)})
        yield "data: [DONE]\n\n"


async def _decode(engine: ServeEngine, turn: TurnRequest) -> AsyncIterator[Piece | Done]:
    """The engine's pieces as they are made, decoded on a worker thread one request at a time
    (the engine's lock is the batch-1 queue). A client that goes away stops its decoding at the
    next round."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Piece | Done | BaseException | None] = asyncio.Queue()
    gone = threading.Event()

    def put(item: Piece | Done | BaseException | None) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            with engine.lock:
                for item in engine.complete(turn):
                    if gone.is_set():
                        return
                    put(item)
        except BaseException as err:  # handed to the request's task, which raises it
            put(err)
        finally:
            put(None)

    threading.Thread(target=work, name="specviz-serve-decode", daemon=True).start()
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        gone.set()


def serve(engine: ServeEngine, config: ServeConfig) -> None:
    """Run the server until interrupted (loopback by default)."""
    import uvicorn

    print(
        f"specviz serve: {config.model_name} at http://{config.host}:{config.port}/v1 "
        f"(metrics: {config.metrics}); Ctrl-C stops it",
        flush=True,
    )
    uvicorn.run(Server(engine, config).app, host=config.host, port=config.port, log_level="warning")
