"""Sending one conversation turn to an OpenAI-compatible server (httpx, streaming on).

Bounds: a connect timeout, a read timeout that is also the longest silence allowed inside a
stream (a server that stalls mid-stream fails the attempt), and a bounded number of retries of
the whole turn on what may pass (connection errors, timeouts, 5xx, 429). A 4xx or malformed JSON
is not retried: sending the same request again would get the same answer.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from specviz.config import SamplingConfig
from specviz.endpoint.parse import (
    ProtocolError,
    ServerSpec,
    Usage,
    delta_text,
    load_json,
    server_spec,
    sse_data,
    usage_of,
)
from specviz.errors import SpecvizError

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class EndpointError(SpecvizError):
    """The server could not be used (unreachable, an error answer, a stall past the limits)."""


@dataclass(frozen=True)
class EndpointConfig:
    """Where requests go and how: ``url`` (``http://HOST:PORT`` or ``.../v1``), requests in flight
    at once, the open-loop arrival rate (requests per second, Poisson; ``inf``: all at once),
    time limits (seconds) and retries per turn; ``api_key`` (the CLI reads ``OPENAI_API_KEY``)
    is sent as a bearer token and never recorded."""

    url: str
    concurrency: int = 1
    request_rate: float = math.inf
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    retries: int = 2
    api_key: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise EndpointError(f"--endpoint {self.url!r} must start with http:// or https://")
        if self.concurrency < 1:
            raise EndpointError(f"--concurrency must be >= 1 (got {self.concurrency})")
        if not self.request_rate > 0:
            raise EndpointError(f"--request-rate must be > 0 (got {self.request_rate})")
        if self.retries < 0 or self.read_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise EndpointError("--retries must be >= 0 and --request-timeout > 0")

    @property
    def base(self) -> str:
        """The API root, ending in ``/v1``."""
        root = self.url.rstrip("/")
        return root if root.endswith("/v1") else root + "/v1"

    def to_dict(self) -> dict[str, Any]:
        """What run.json records (never the key)."""
        return {
            "url": self.url,
            "concurrency": self.concurrency,
            "request_rate": None if math.isinf(self.request_rate) else self.request_rate,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "retries": self.retries,
        }

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)
        limits = httpx.Limits(max_connections=self.concurrency + 1)
        return httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits)


@dataclass(frozen=True)
class TurnResult:
    """One turn as the client saw it: text, why it stopped, the server's counts and figures,
    and the client's clock (time to first content, gaps between content chunks, the whole)."""

    text: str
    finish_reason: str | None
    usage: Usage | None
    spec: ServerSpec | None
    ttft_s: float | None
    itl_s: tuple[float, ...]
    wall_s: float


class _Retryable(Exception):
    """An attempt failed in a way another attempt may not."""


def check_models(config: EndpointConfig, model: str) -> None:
    """Refuse an endpoint that cannot be reached or does not serve ``model`` (GET /v1/models),
    before anything is written."""
    try:
        with httpx.Client(timeout=httpx.Timeout(config.connect_timeout_s)) as client:
            headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
            response = client.get(f"{config.base}/models", headers=headers)
    except httpx.HTTPError as err:
        raise EndpointError(
            f"cannot reach {config.base} ({type(err).__name__}: {err or 'no answer'}): start the "
            "server, or check --endpoint"
        ) from err
    if response.status_code != 200:
        raise EndpointError(
            f"{config.base}/models answered HTTP {response.status_code}: is --endpoint an "
            "OpenAI-compatible server?"
        )
    listed = load_json(response.text, f"{config.base}/models").get("data")
    names = [m.get("id") for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    if names and model not in names:
        raise EndpointError(
            f"{config.base} does not serve {model!r} (it serves {', '.join(map(str, names))}): "
            "pass the served name as --target"
        )


def _error_message(response: httpx.Response, body: bytes) -> str:
    try:
        err = load_json(body.decode("utf-8", "replace"), "the server").get("error")
        message = err.get("message") if isinstance(err, dict) else err
    except ProtocolError:
        message = body[:120].decode("utf-8", "replace")
    return f"HTTP {response.status_code}: {message}"


async def _attempt(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> TurnResult:
    start = time.perf_counter()
    text: list[str] = []
    arrivals: list[float] = []
    finish = None
    usage = None
    spec = None
    async with client.stream("POST", url, json=payload) as response:
        if response.status_code != 200:
            body = await response.aread()
            message = _error_message(response, body)
            if response.status_code in RETRY_STATUS:
                raise _Retryable(message)
            raise EndpointError(f"{url} refused a request ({message})")
        async for line in response.aiter_lines():
            data = sse_data(line)
            if data is None or not data:
                continue
            if data == "[DONE]":
                break
            chunk = load_json(data, url)
            if "error" in chunk:  # an error after the stream began
                raise _Retryable(f"error inside the stream: {str(chunk['error'])[:120]}")
            content, reason = delta_text(chunk)
            if content:
                arrivals.append(time.perf_counter() - start)
                text.append(content)
            finish = reason or finish
            usage = usage_of(chunk) or usage
            spec = server_spec(chunk) or spec
    if finish is None:
        raise _Retryable("the stream ended before the turn finished (no finish_reason)")
    itl = tuple(b - a for a, b in itertools.pairwise(arrivals))
    ttft = arrivals[0] if arrivals else None
    return TurnResult("".join(text), finish, usage, spec, ttft, itl, time.perf_counter() - start)


async def send_turn(
    client: httpx.AsyncClient,
    config: EndpointConfig,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    sampling: SamplingConfig,
    seed: int,
    task: str,
    errors: list[str],
) -> TurnResult:
    """One streamed chat completion, retried up to ``config.retries`` times; the errors of
    failed attempts are appended to ``errors``. Raises EndpointError when every attempt failed.

    ``task`` (the prompt's category) goes in OpenAI's ``metadata`` map as ``{"task": ...}``, so
    a server that reads it (``specviz serve``: per-task policy state) or logs it labels the
    request; vLLM and SGLang accept and ignore it."""
    payload = {
        "model": model,
        "messages": messages,
        "metadata": {"task": task},
        "max_tokens": max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = f"{config.base}/chat/completions"
    for attempt in range(config.retries + 1):
        try:
            return await _attempt(client, url, payload)
        except (_Retryable, httpx.TransportError) as err:
            what = str(err) or type(err).__name__
            if isinstance(err, httpx.ReadTimeout):
                what = f"no data for {config.read_timeout_s:g} s (the server stalled)"
            elif isinstance(err, httpx.ConnectError):
                what = f"cannot connect ({err})"
            errors.append(what)
            if attempt == config.retries:
                raise EndpointError(
                    f"{url} failed {config.retries + 1} time(s), last: {what}; finished "
                    "requests are saved (--resume continues)"
                ) from err
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
    raise AssertionError("unreachable")
