"""Claims about the one run scaffold (:mod:`specviz.rundir.scaffold`) that in-process runs
(:func:`specviz.runner.run`) and server-measured runs (:func:`specviz.endpoint.run.run_endpoint`)
share: refusals before the lock, a part flushed per request, totals summed from the request rows,
``run.json`` marked complete last, resume by the recorded request ids."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fake_server import MODEL, FakeServer, stream_answer

import specviz.endpoint.run as endpoint_run
import specviz.rundir.scaffold as scaffold
from specviz.config import ModelSpec, RunConfig
from specviz.endpoint.client import EndpointConfig
from specviz.endpoint.run import (
    SERVER_FILE,
    SERVER_SCHEMA,
    Conversation,
    EndpointWriter,
    run_endpoint,
)
from specviz.rundir import (
    EVENT_SCHEMA,
    REQUEST_SCHEMA,
    REQUESTS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    Finished,
    OutPathError,
    RunDirError,
    RunWriter,
    locked,
    opened_run,
    read_run_meta,
    record_run,
    start_run,
)
from specviz.workloads.prompt import Prompt
from specviz.workloads.request import Request

IDENTITY = {"schema_version": SCHEMA_VERSION, "config": {"target": "t"}, "workload": "w"}


def _requests(n: int) -> list[Request]:
    return [Request(i, Prompt(f"p{i}", "chat", ("hi",))) for i in range(n)]


def _finished(request: Request, counts: tuple[int | None, ...], wall_s: float) -> Finished:
    tokens, drafted, accepted = counts
    row = {
        "request_id": request.id,
        "request_index": request.index,
        "new_tokens": tokens,
        "drafted": drafted,
        "accepted": accepted,
    }
    rows = pl.DataFrame([row], schema=REQUEST_SCHEMA)
    return Finished(pl.DataFrame(schema=EVENT_SCHEMA), rows, wall_s)


def _begun(out: Path, requests: list[Request]) -> dict[str, Any]:
    return start_run(out, IDENTITY, requests, 0, {})


def test_each_request_is_flushed_as_it_finishes_and_run_json_is_marked_complete_last(
    tmp_path: Path,
) -> None:
    out, requests = tmp_path / "run", _requests(2)
    meta = _begun(out, requests)

    def decode(done: set[str]) -> Iterator[Finished]:
        assert done == set()
        yield _finished(requests[0], (5, 4, 3), 1.0)
        assert (out / "parts" / "requests-000000.parquet").is_file()
        assert not read_run_meta(out)["complete"]
        yield _finished(requests[1], (7, 2, 2), 2.5)

    summary = record_run(RunWriter(out), meta, requests, decode, progress=False)
    assert read_run_meta(out)["complete"]
    assert pl.read_parquet(out / REQUESTS_FILE)["request_index"].to_list() == [0, 1]
    assert not list((out / "parts").glob("*.parquet"))
    assert (summary.requests_done, summary.requests_skipped) == (2, 0)
    assert (summary.new_tokens, summary.drafted, summary.accepted) == (12, 6, 5)
    assert summary.wall_s == 2.5 and summary.run_id == meta["run_id"]


def test_a_servers_null_counts_add_nothing_to_the_totals(tmp_path: Path) -> None:
    out, requests = tmp_path / "run", _requests(2)
    finished = [
        _finished(requests[0], (5, 4, 3), 1.0),
        _finished(requests[1], (7, None, None), 2.0),
    ]
    summary = record_run(
        RunWriter(out), _begun(out, requests), requests, lambda done: iter(finished), False
    )
    assert (summary.new_tokens, summary.drafted, summary.accepted) == (12, 4, 3)


def test_a_resumed_record_decodes_only_what_is_not_recorded(tmp_path: Path) -> None:
    out, requests = tmp_path / "run", _requests(3)
    meta = _begun(out, requests)
    first = _finished(requests[0], (5, 4, 3), 1.0)
    RunWriter(out).append(first.events, first.request)
    asked: list[set[str]] = []

    def decode(done: set[str]) -> Iterator[Finished]:
        asked.append(set(done))
        return iter([_finished(r, (1, 0, 0), 0.5) for r in requests if r.id not in done])

    summary = record_run(RunWriter(out), meta, requests, decode, progress=False)
    assert asked == [{requests[0].id}]
    assert (summary.requests_done, summary.requests_skipped, summary.new_tokens) == (2, 1, 2)
    assert pl.read_parquet(out / REQUESTS_FILE)["request_index"].to_list() == [0, 1, 2]


def test_a_failing_decode_keeps_the_finished_requests_and_leaves_the_run_unfinished(
    tmp_path: Path,
) -> None:
    out, requests = tmp_path / "run", _requests(2)

    def decode(done: set[str]) -> Iterator[Finished]:
        yield _finished(requests[0], (5, 4, 3), 1.0)
        raise RuntimeError("the server went away")

    with pytest.raises(RuntimeError, match="went away"):
        record_run(RunWriter(out), _begun(out, requests), requests, decode, progress=False)
    assert not read_run_meta(out)["complete"]
    assert RunWriter(out).finished_request_ids() == {requests[0].id}


def test_finish_adds_its_keys_to_the_completed_run_json(tmp_path: Path) -> None:
    out, requests = tmp_path / "run", _requests(1)
    meta = _begun(out, requests)
    done = iter([_finished(requests[0], (1, 1, 1), 1.0)])
    record_run(RunWriter(out), meta, requests, lambda _: done, False, lambda: {"extra": "x"})
    written = read_run_meta(out)
    assert written["extra"] == meta["extra"] == "x" and written["complete"]


def test_an_empty_workload_is_refused_before_the_check_and_creates_nothing(tmp_path: Path):
    checked: list[bool] = []
    check = lambda: checked.append(True)  # noqa: E731
    with (
        pytest.raises(RunDirError, match="the workload is empty"),
        opened_run(tmp_path / "run", IDENTITY, [], False, check),
    ):
        pass
    assert not checked and not (tmp_path / "run").exists()


def test_the_check_runs_before_the_lock_and_a_refusal_there_creates_nothing(tmp_path: Path):
    out = tmp_path / "run"

    def check() -> None:
        assert not out.exists()  # taking the lock creates the directory
        raise RunDirError("refused by the check")

    with (
        pytest.raises(RunDirError, match="refused by the check"),
        opened_run(out, IDENTITY, _requests(1), False, check),
    ):
        pass
    assert not out.exists()


def test_the_directory_is_locked_while_the_run_is_open(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with (
        opened_run(out, IDENTITY, _requests(1), False, lambda: None),
        pytest.raises(OutPathError, match="in use by another specviz process"),
        locked(out),
    ):
        pass


def test_a_directory_holding_this_run_is_refused_without_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _begun(out, _requests(1))
    with (
        pytest.raises(RunDirError, match="pass --resume"),
        opened_run(out, IDENTITY, _requests(1), False, lambda: None),
    ):
        pass
    with opened_run(out, IDENTITY, _requests(1), True, lambda: None):
        pass


def test_a_server_part_without_its_request_row_is_dropped_at_consolidation(tmp_path: Path):
    out, requests = tmp_path / "run", _requests(2)
    writer = EndpointWriter(out)
    for r in requests:
        server = {"request_id": r.id, "request_index": r.index, "metrics_source": "vllm"}
        writer.append_part(SERVER_FILE, pl.DataFrame([server], schema=SERVER_SCHEMA), r.index)
    first = _finished(requests[0], (5, 4, 3), 1.0)
    writer.append(first.events, first.request)  # request 1 crashed before its row
    writer.consolidate()
    assert pl.read_parquet(out / SERVER_FILE)["request_id"].to_list() == [requests[0].id]
    assert not list((out / "parts").glob("*.parquet"))


class _Client:
    """An HTTP client that notes whether it was closed inside a running event loop."""

    closed_in_loop: bool | None = None

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            asyncio.get_running_loop()
            self.closed_in_loop = True
        except RuntimeError:
            self.closed_in_loop = False


def test_leaving_the_conversations_early_cancels_the_requests_in_flight_and_closes_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cancelled: list[int] = []

    async def converse(client: Any, config: Any, endpoint: Any, request: Request) -> Conversation:
        if request.index == 0:
            return Conversation(request, (), 0.0, ())
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(request.index)
            raise
        raise AssertionError("a request in flight outlived its reader")

    client = _Client()
    monkeypatch.setattr(endpoint_run, "_converse", converse)
    monkeypatch.setattr(EndpointConfig, "client", lambda self: client)
    endpoint = EndpointConfig("http://127.0.0.1:9", concurrency=3)
    stream = endpoint_run._conversations(RunConfig(ModelSpec(MODEL)), endpoint, _requests(3))
    assert next(stream).request.index == 0
    stream.close()
    assert sorted(cancelled) == [1, 2]
    assert client.closed_in_loop is True


def test_both_kinds_of_run_are_marked_complete_by_the_one_scaffold(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specviz.runner import run

    completed: list[str] = []

    def spy(path: Path, payload: dict[str, Any]) -> None:
        if path.name == RUN_FILE and payload.get("complete"):
            completed.append(path.parent.name)
        write_json(path, payload)

    write_json = scaffold.write_json
    monkeypatch.setattr(scaffold, "write_json", spy)
    requests = _requests(1)
    run(
        RunConfig(ModelSpec(str(tiny_model_dir)), max_new_tokens=2),
        requests,
        tmp_path / "in",
        progress=False,
    )
    with FakeServer(lambda n, body: stream_answer({})) as server:
        endpoint = EndpointConfig(server.url)
        run_endpoint(
            RunConfig(ModelSpec(MODEL)), requests, tmp_path / "served", endpoint, progress=False
        )
    assert completed == ["in", "served"]
    assert read_run_meta(tmp_path / "in")["complete"]
    assert read_run_meta(tmp_path / "served")["server_metrics"] is None
