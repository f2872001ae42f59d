"""``specviz serve`` checks a request's prompt plus its ``max_tokens`` against the model's
context window (as vLLM does), not the prompt alone: the ASGI app on the tiny model, in process
(Starlette's test client, no port)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.serve.app import ServeConfig, Server, parse_request
from specviz.serve.engine import ServeEngine


@pytest.fixture(scope="module")
def app(tiny_model_dir: Path) -> tuple[TestClient, ServeEngine]:
    config = RunConfig(
        ModelSpec(str(tiny_model_dir), device="cpu"),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("constant", 3),
        max_new_tokens=4,
    )
    engine = ServeEngine(config)
    server = Server(engine, ServeConfig(str(tiny_model_dir)))
    return TestClient(server.app), engine


def _body(max_tokens: int | None, key: str = "max_tokens") -> dict:
    # a long prompt, so the room left in the 512-token window is small
    body: dict = {"messages": [{"role": "user", "content": "hi " * 200}], "temperature": 0}
    return body | ({key: max_tokens} if max_tokens is not None else {})


def _prompt_tokens(engine: ServeEngine) -> int:
    return len(engine.encode(parse_request(_body(None), engine)))


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_prompt_plus_max_tokens_past_the_window_is_a_400_naming_both(app, key):
    client, engine = app
    window = engine.target.context_window
    prompt = _prompt_tokens(engine)
    assert window == 512 and 100 < prompt < window
    response = client.post("/v1/chat/completions", json=_body(1_000_000_000, key))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert key in message and "1000000000" in message
    assert f"{prompt} input tokens" in message and f"context length is {window}" in message
    # one token past the window is refused too
    over = client.post("/v1/chat/completions", json=_body(window - prompt + 1, key))
    assert (
        over.status_code == 400 and f"at most {window - prompt}" in over.json()["error"]["message"]
    )


def test_prompt_plus_max_tokens_that_fills_the_window_exactly_is_answered(app):
    client, engine = app
    room = engine.target.context_window - _prompt_tokens(engine)
    response = client.post("/v1/chat/completions", json=_body(room))
    assert response.status_code == 200, response.text
    assert 1 <= response.json()["usage"]["completion_tokens"] <= room


def test_a_request_without_max_tokens_is_not_refused_for_the_window(app):
    client, _ = app
    response = client.post("/v1/chat/completions", json=_body(None))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 4  # the server's --max-new-tokens
