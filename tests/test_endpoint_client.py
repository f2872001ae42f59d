"""The endpoint client against scripted servers: vLLM's and SGLang's documented shapes, a server
without figures, and bad input (unreachable, errors, a stall, malformed JSON) with resume."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from engine_helpers import run_cli
from fake_server import MODEL, FakeServer, chunk, sse, stream_answer
from loopback import free_port
from starlette.responses import JSONResponse, Response, StreamingResponse

from specviz.endpoint.parse import server_spec
from specviz.endpoint.run import read_server_table
from specviz.rundir import read_run_meta
from specviz.serve.metrics import SpecSteps

# vLLM PR #48915's documented example (summary level)
VLLM_SUMMARY = {
    "mean_acceptance_length": 1.2325581395348837,
    "draft_acceptance_rate": 0.07751937984496124,
    "acceptance_histogram": [39, 1, 0, 3],
    "num_spec_steps": 43,
    "num_accepted_draft_tokens": 10,
    "num_draft_tokens": 129,
    "num_spec_tokens": 3,
}
# SGLang's per-request fields (PRs #11144, #18332) as meta_info carries them
SGLANG_META = {
    "completion_tokens": 106,
    "spec_accept_rate": 0.2930232558139535,
    "spec_accept_length": 2.4651162790697674,
    "spec_verify_ct": 43,
    "spec_accept_histogram": [11, 14, 11, 4, 0, 3],
}


def test_vllm_documented_metrics_are_parsed():
    spec = server_spec({"choices": [], "metrics": {"speculative_decoding": VLLM_SUMMARY}})
    assert spec is not None and spec.source == "vllm"
    assert spec.histogram == (39, 1, 0, 3)
    assert (spec.steps, spec.accepted, spec.drafted, spec.spec_tokens) == (43, 10, 129, 3)
    assert spec.per_step_accepted is None


def test_vllm_detailed_metrics_carry_per_step_counts():
    detailed = VLLM_SUMMARY | {"per_step_accepted": [0, 3], "per_step_drafted": [3, 3]}
    spec = server_spec({"metrics": {"speculative_decoding": detailed}})
    assert spec is not None
    assert spec.per_step_accepted == (0, 3) and spec.per_step_drafted == (3, 3)


def test_vllm_early_choice_shape_with_keyed_histogram_is_parsed():
    stats = VLLM_SUMMARY | {"acceptance_histogram": {"0": 39, "1": 1, "3": 3}}
    spec = server_spec({"choices": [{"index": 0, "speculative_decoding_stats": stats}]})
    assert spec is not None and spec.histogram == (39, 1, 0, 3)


@pytest.mark.parametrize("where", ["meta_info", "sglext", None])
def test_sglang_fields_are_parsed(where):
    obj: dict[str, Any] = {"choices": []}
    obj |= {where: SGLANG_META} if where else SGLANG_META
    spec = server_spec(obj)
    assert spec is not None and spec.source == "sglang"
    assert spec.steps == 43 and sum(spec.histogram) == 43
    assert spec.accepted == sum(j * h for j, h in enumerate(SGLANG_META["spec_accept_histogram"]))
    assert spec.drafted == round(spec.accepted / SGLANG_META["spec_accept_rate"])


def test_a_response_without_figures_has_no_spec():
    assert server_spec({"choices": [], "usage": {"completion_tokens": 3}}) is None


def test_served_figures_follow_vllm_definitions():
    fields = SpecSteps((3, 3, 2, 1, 0), (3, 3, 3, 1, 1), 3).vllm_fields(detailed=True)
    assert fields["acceptance_histogram"] == [1, 1, 1, 2]
    assert fields["num_spec_steps"] == 5 and fields["num_accepted_draft_tokens"] == 9
    assert fields["mean_acceptance_length"] == pytest.approx(1 + 9 / 5)
    assert fields["draft_acceptance_rate"] == pytest.approx(9 / 11)
    assert fields["per_step_accepted"] == [3, 3, 2, 1, 0]


# -- scripted servers ---------------------------------------------------------------------


def _run(url: str, out: Path, *extra: str, drafter: str = "prompt-lookup"):
    return run_cli(
        "run",
        "--target",
        MODEL,
        "--drafter",
        drafter,
        "--k",
        "3",
        "--limit",
        "2",
        "--max-new-tokens",
        "8",
        "--endpoint",
        url,
        "--out",
        str(out),
        "--quiet",
        *extra,
        timeout=120,
    )


@pytest.mark.parametrize(
    "figures, source",
    [
        ({"metrics": {"speculative_decoding": VLLM_SUMMARY}}, "vllm"),
        ({"meta_info": SGLANG_META}, "sglang"),
    ],
)
def test_endpoint_run_records_the_servers_figures(tmp_path, figures, source):
    with FakeServer(lambda n, body: stream_answer(figures)) as server:
        result = _run(server.url, tmp_path / "r", "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["stream"] and server.requests[0]["stream_options"]["include_usage"]
    table = read_server_table(tmp_path / "r")
    assert set(table["metrics_source"]) == {source}
    requests = pl.read_parquet(tmp_path / "r" / "requests.parquet")
    turns = requests["n_turns"].to_list()
    spec = server_spec(figures)
    assert spec is not None
    assert requests["accepted"].to_list() == [spec.accepted * n for n in turns]
    assert requests["new_tokens"].to_list() == [3 * n for n in turns]
    assert requests["output_turns"].to_list() == [["Hello!"] * n for n in turns]
    assert read_run_meta(tmp_path / "r")["measured_by"] == "server"
    # every turn names its prompt's task in OpenAI's metadata map
    sent = sorted(body["metadata"]["task"] for body in server.requests)
    categories = requests["category"].to_list()
    assert sent == sorted(c for c, n in zip(categories, turns, strict=True) for _ in range(n))


def test_serve_reads_the_task_from_the_requests_metadata():
    from types import SimpleNamespace

    from specviz.config import SamplingConfig
    from specviz.serve.app import parse_request
    from specviz.serve.engine import DEFAULT_TASK, RequestError

    config = SimpleNamespace(max_new_tokens=8, sampling=SamplingConfig(0.0, 1.0), seed=0)
    engine: Any = SimpleNamespace(config=config)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert parse_request(body, engine).category == DEFAULT_TASK
    assert parse_request(body | {"metadata": {"task": "coding"}}, engine).category == "coding"
    with pytest.raises(RequestError, match="metadata"):
        parse_request(body | {"metadata": ["coding"]}, engine)


def test_a_server_without_figures_is_said_and_timings_still_recorded(tmp_path):
    with FakeServer(lambda n, body: stream_answer({})) as server:
        result = _run(server.url, tmp_path / "r")
    assert result.returncode == 0, result.stderr
    assert "reported no speculative-decoding metrics" in result.stdout
    table = read_server_table(tmp_path / "r")
    assert table["metrics_source"].is_null().all()
    assert all(len(itl[0]) == 2 for itl in table["turn_itl_s"].to_list())  # 3 chunks, 2 gaps
    requests = pl.read_parquet(tmp_path / "r" / "requests.parquet")
    assert requests["ttft_s"].is_not_null().all() and (requests["wall_s"] > 0).all()
    assert requests["accepted"].is_null().all()  # unknown, not zero


def _one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_an_unreachable_endpoint_exits_2_before_writing(tmp_path):
    result = _run(f"http://127.0.0.1:{free_port()}", tmp_path / "r")
    _one_line_error(result, "cannot reach")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def _error_500(n: int, body: dict[str, Any]) -> Response:
    return JSONResponse({"error": {"message": "engine overloaded"}}, status_code=500)


def _malformed(n: int, body: dict[str, Any]) -> Response:
    return sse([chunk({"choices": [{"index": 0, "delta": {"content": "a"}}]}), "{not json"])


def _stall(n: int, body: dict[str, Any]) -> Response:
    async def body_() -> Any:
        yield "data: " + chunk({"choices": [{"index": 0, "delta": {"content": "a"}}]}) + "\n\n"
        await asyncio.sleep(30)

    return StreamingResponse(body_(), media_type="text/event-stream")


@pytest.mark.parametrize(
    "answer, words",
    [
        (_error_500, ("HTTP 500", "engine overloaded", "--resume")),
        (_malformed, ("malformed JSON",)),
        (_stall, ("stalled",)),
    ],
)
def test_bad_server_answers_exit_2_with_one_line(tmp_path, answer, words):
    with FakeServer(answer) as server:
        result = _run(server.url, tmp_path / "r", "--retries", "1", "--request-timeout", "1")
    _one_line_error(result, *words)
    assert not (tmp_path / "r" / "requests.parquet").exists()
    meta = read_run_meta(tmp_path / "r")
    assert not meta["complete"]
    if answer is _error_500:
        assert len(server.requests) == 2  # one retry, then the error


def test_a_failed_run_resumes_without_resending_finished_requests(tmp_path):
    broken = {"on": True}
    seen: list[str] = []

    def answer(n: int, body: dict[str, Any]) -> Response:
        seen.extend([] if seen else [body["messages"][0]["content"]])
        if broken["on"] and body["messages"][0]["content"] != seen[0]:
            return _error_500(n, body)
        return stream_answer({"metrics": {"speculative_decoding": VLLM_SUMMARY}})

    out = tmp_path / "r"
    with FakeServer(answer) as server:
        first = _run(server.url, out, "--retries", "0", "--limit", "3")
        _one_line_error(first, "HTTP 500")
        saved = pl.read_parquet(list((out / "parts").glob("requests-*.parquet")))
        assert saved.height == 1
        sent_before = len(server.requests)
        broken["on"] = False
        second = _run(server.url, out, "--retries", "0", "--limit", "3", "--resume")
    assert second.returncode == 0, second.stderr
    assert "1 already done" in second.stdout
    requests = pl.read_parquet(out / "requests.parquet")
    assert requests["request_id"].n_unique() == requests.height == 3
    resent = [r["messages"][0]["content"] for r in server.requests[sent_before:]]
    assert saved["prompt_turns"][0][0] not in resent
    assert read_server_table(out).height == 3


def _two_drafter_units() -> list[Any]:
    from specviz.study import parse_study, plan_study

    study = parse_study(
        {
            "models": ["served-model"],
            "k": [3],
            "drafters": [{"kind": "prompt-lookup", "name": "pld"}, {"kind": "suffix"}],
            "workload": {"per_category": 1, "categories": ["coding"]},
        },
        "two.toml",
    )
    return list(plan_study(study).units)


def test_a_study_sends_each_drafter_to_its_named_endpoint():
    from specviz.endpoint.client import EndpointConfig
    from specviz.study.endpoints import assign_endpoints

    urls = {n: EndpointConfig(f"http://127.0.0.1:{p}") for n, p in
            (("pld", 1), ("suffix", 2), ("baseline", 3))}  # fmt: skip
    assigned = assign_endpoints(_two_drafter_units(), urls)
    by_drafter = {u.config.drafter.label: assigned[u.id].url for u in _two_drafter_units()}
    assert by_drafter == {"pld": urls["pld"].url, "suffix": urls["suffix"].url,
                          "none": urls["baseline"].url}  # fmt: skip


@pytest.mark.parametrize(
    "names, message",
    [({""}, "runs one speculative configuration"), ({"pld", "baseline"}, "--endpoint suffix=URL")],
)
def test_a_study_refuses_configurations_sharing_a_server_or_missing_one(names, message):
    from specviz.endpoint.client import EndpointConfig
    from specviz.study.endpoints import assign_endpoints
    from specviz.study.spec import StudyError

    with pytest.raises(StudyError, match=message.replace(".", r"\.")):
        assign_endpoints(
            _two_drafter_units(),
            {n: EndpointConfig(f"http://127.0.0.1:{9 + i}") for i, n in enumerate(sorted(names))},
        )


def test_serve_refuses_an_unknown_metrics_level_before_loading_a_model():
    result = run_cli(
        "serve", "--target", "no-such-model", "--per-request-spec-decode-metrics", "full"
    )
    _one_line_error(result, "--per-request-spec-decode-metrics", "summary, detailed")


def test_open_loop_arrivals_are_seeded_poisson_and_all_at_once_without_a_rate():
    from specviz.endpoint.run import arrival_times

    times = arrival_times(2000, 4.0, seed=1)
    assert times == arrival_times(2000, 4.0, seed=1) and times[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0 and abs(sum(gaps) / len(gaps) - 0.25) < 0.02
    assert arrival_times(3, float("inf"), seed=1) == [0.0, 0.0, 0.0]


def _slow_answer(in_flight: list[int], peak: list[int]) -> Any:
    def answer(n: int, body: dict[str, Any]) -> Response:
        async def body_() -> Any:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            try:
                await asyncio.sleep(0.3)
                payload = stream_answer({}).body_iterator
                async for part in payload:
                    yield part
            finally:
                in_flight[0] -= 1

        return StreamingResponse(body_(), media_type="text/event-stream")

    return answer


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bounds_the_requests_in_flight(tmp_path, concurrency):
    from specviz.config import ModelSpec, RunConfig
    from specviz.endpoint.client import EndpointConfig
    from specviz.endpoint.run import run_endpoint
    from specviz.workloads.prompt import Prompt
    from specviz.workloads.request import Request

    requests = [Request(i, Prompt(f"p{i}", "chat", ("hi",))) for i in range(6)]
    in_flight, peak = [0], [0]
    with FakeServer(_slow_answer(in_flight, peak)) as server:
        endpoint = EndpointConfig(server.url, concurrency=concurrency)
        summary = run_endpoint(
            RunConfig(ModelSpec(MODEL)), requests, tmp_path / "r", endpoint, progress=False
        )
    assert summary.requests_done == 6 and peak[0] == concurrency


def test_a_damaged_server_table_is_named_in_one_line(tmp_path):
    with FakeServer(lambda n, body: stream_answer({})) as server:
        assert _run(server.url, tmp_path / "r").returncode == 0
    (tmp_path / "r" / "server.parquet").write_bytes(b"not parquet")
    _one_line_error(run_cli("summary", str(tmp_path / "r")), "server.parquet is damaged")


def test_requests_are_sent_no_earlier_than_their_open_loop_arrival(tmp_path):
    from specviz.config import ModelSpec, RunConfig
    from specviz.endpoint.client import EndpointConfig
    from specviz.endpoint.run import arrival_times, run_endpoint
    from specviz.workloads.prompt import Prompt
    from specviz.workloads.request import Request

    requests = [Request(i, Prompt(f"p{i}", "chat", ("hi",))) for i in range(5)]
    config = RunConfig(ModelSpec(MODEL), seed=3)
    with FakeServer(lambda n, body: stream_answer({})) as server:
        endpoint = EndpointConfig(server.url, concurrency=5, request_rate=2.0)
        run_endpoint(config, requests, tmp_path / "r", endpoint, progress=False)
    sent = [t - server.times[0] for t in server.times]
    planned = arrival_times(5, 2.0, seed=3)
    assert planned[-1] > 1.0  # the schedule spreads the requests out
    # offsets from the first arrival; the first request also opened the client's first
    # connection, so later ones may land up to a connection setup earlier than planned
    assert all(p - 0.2 <= s <= p + 1.0 for p, s in zip(planned, sent, strict=True)), (planned, sent)
