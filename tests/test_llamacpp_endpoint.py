"""llama.cpp's ``llama-server`` behind ``--endpoint``, from scripted servers that answer in its
shape: the ``timings`` object (``draft_n``, ``draft_n_accepted`` when the request drafted) on a
full response and on a stream's final chunk. The counts land in the run directory as
server-measured, and ``specviz summary`` and the served report give acceptance per task from
them. (The same against the real binary: tests/test_llamacpp_server.py, ``make test-engines``.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from engine_helpers import run_cli
from fake_server import MODEL, FakeServer, llamacpp_timings, stream_answer, write_pld_study
from starlette.responses import Response

from specviz.endpoint.parse import ProtocolError, server_spec
from specviz.endpoint.run import read_server_table
from specviz.report.served import headline, load_served, served_rows
from specviz.rundir import find_run_dirs, read_run_meta

TOKENS = 3  # completion tokens of every scripted answer (stream_answer)
CAPTURED = Path(__file__).parent / "data" / "llamacpp"  # the real llama-server's answers
# (drafted, accepted) of every turn, by the prompt's category; consistent with 3 tokens: the
# prefill's token, then coding one verify of 1 accepted draft + 1, math two of 0 + 1
COUNTS = {"coding": (2, 1), "math": (3, 0)}


def _llamacpp(n: int, body: dict[str, Any]) -> Response:
    drafted, accepted = COUNTS[body["metadata"]["task"]]
    return stream_answer({"timings": llamacpp_timings(TOKENS, drafted, accepted)})


def test_llamacpp_timings_give_drafted_and_accepted_and_no_steps():
    spec = server_spec({"choices": [], "timings": llamacpp_timings(40, 24, 11)})
    assert spec is not None and spec.source == "llama.cpp"
    assert (spec.drafted, spec.accepted) == (24, 11)
    assert spec.steps is None and spec.histogram == () and spec.spec_tokens is None


def test_llamacpp_timings_without_draft_counts_are_a_request_that_drafted_nothing():
    timings = llamacpp_timings(40, 0, 0)
    assert "draft_n" not in timings  # llama-server omits both keys when nothing was drafted
    spec = server_spec({"timings": timings})
    assert spec is not None and (spec.drafted, spec.accepted) == (0, 0)


def test_llamacpp_accepting_more_than_it_drafted_is_a_protocol_error():
    timings = llamacpp_timings(40, 3, 3) | {"draft_n_accepted": 4}
    with pytest.raises(ProtocolError, match="draft_n_accepted 4 is more than draft_n 3"):
        server_spec({"timings": timings})


def test_two_turns_of_llamacpp_counts_add_and_steps_stay_unknown():
    first = server_spec({"timings": llamacpp_timings(40, 24, 11)})
    second = server_spec({"timings": llamacpp_timings(30, 6, 5)})
    assert first is not None and second is not None
    both = first + second
    assert (both.drafted, both.accepted, both.steps, both.spec_tokens) == (30, 16, None, None)


def test_the_real_servers_full_and_streamed_answers_are_parsed_alike():
    full = json.loads((CAPTURED / "chat-completion.json").read_text())
    spec = server_spec(full)
    assert spec is not None and (spec.drafted, spec.accepted) == (29, 5)
    chunks = [
        json.loads(line[5:])
        for line in (CAPTURED / "chat-completion-stream.sse").read_text().splitlines()
        if line.startswith("data: {")
    ]
    specs = [s for s in map(server_spec, chunks) if s is not None]
    assert specs == [spec]  # only the final usage chunk carries the timings
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 64


def test_a_run_against_the_real_servers_recorded_stream_records_its_counts(tmp_path):
    stream = (CAPTURED / "chat-completion-stream.sse").read_bytes()
    with FakeServer(lambda n, body: Response(stream, media_type="text/event-stream")) as server:
        result = run_cli(
            "run", "--target", MODEL, "--drafter", "prompt-lookup", "--k", "5", "--limit", "2",
            "--max-new-tokens", "64", "--endpoint", server.url, "--out", str(tmp_path / "r"),
            "--quiet", timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(server-measured)" in result.stdout and f"acceptance {5 / 29:.3f}" in result.stdout
    requests = pl.read_parquet(tmp_path / "r" / "requests.parquet")
    turns = requests["n_turns"].to_list()
    assert requests["drafted"].to_list() == [29 * n for n in turns]
    assert requests["accepted"].to_list() == [5 * n for n in turns]
    assert requests["turn_rounds"].to_list() == [[64 - 5] * n for n in turns]
    assert requests["output_turns"][0][0].startswith("```python\nclass Point")
    assert read_run_meta(tmp_path / "r")["server_metrics"] == "llama.cpp"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two categories, single-task and their uniform mix, a two-turn prompt among them, sent to
    a scripted llama-server."""
    root = tmp_path_factory.mktemp("llamacpp")
    rows = [
        {"question_id": f"{c}-{i}", "category": c,
         "turns": [f"{c} {i}: say hi"] + (["again"] if i == 0 else [])}
        for c in COUNTS
        for i in range(2)
    ]  # fmt: skip
    options = "[options]\nbaseline = false\n"
    study = write_pld_study(root, "llamacpp", MODEL, rows, max_new_tokens=8, k=3, options=options)
    with FakeServer(_llamacpp) as server:
        result = run_cli(
            "study", str(study), "--out", str(root / "out"), "--quiet",
            "--endpoint", f"pld={server.url}", "--concurrency", "2",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root / "out"


def test_a_run_against_llamacpp_records_its_counts_as_server_measured(served: Path):
    dirs = find_run_dirs(served)
    assert len(dirs) == 3
    for run_dir in dirs:
        assert read_run_meta(run_dir)["server_metrics"] == "llama.cpp"
        assert read_run_meta(run_dir)["measured_by"] == "server"
        requests = pl.read_parquet(run_dir / "requests.parquet")
        for row in requests.iter_rows(named=True):
            drafted, accepted = COUNTS[row["category"]]
            turns = row["n_turns"]
            assert (row["drafted"], row["accepted"]) == (drafted * turns, accepted * turns)
            # derived forward passes: per turn, completion tokens - accepted drafts (>= 1)
            assert row["turn_rounds"] == [TOKENS - accepted] * turns
        server = read_server_table(run_dir)
        assert set(server["metrics_source"]) == {"llama.cpp"}
        # not reported by llama.cpp: null, not zero
        for column in ("num_spec_steps", "acceptance_histogram", "num_spec_tokens"):
            assert server[column].is_null().all(), column
        assert (
            server["num_draft_tokens"].to_list()
            == requests.sort("request_index")["drafted"].to_list()
        )


def test_summary_gives_llamacpp_acceptance_per_task_single_and_multitask(served: Path):
    result = run_cli("summary", str(served), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    rates = {(r["mixture"], r["category"]): r["acceptance_rate"] for r in answer["rows"]}
    expected = {c: a / d for c, (d, a) in COUNTS.items()}
    assert rates == {
        **{(c, c): expected[c] for c in COUNTS},
        **{("uniform-interleaved", c): expected[c] for c in COUNTS},
    }
    assert all(r["mean_acceptance_length"] is None for r in answer["rows"])  # no spec steps
    shifts = {s["category"]: s for s in answer["shifts"]}
    assert set(shifts) == set(COUNTS)
    for category, shift in shifts.items():
        assert shift["multitask_rate"] == shift["single_task_rate"] == expected[category]
        assert shift["rate_shift"] == 0.0 and shift["shift"] is None
    text = run_cli("summary", str(served)).stdout
    assert "acceptance rate, multitask vs single-task (no spec-step counts reported):" in text
    assert "pld coding in uniform-interleaved: 0.500 vs 0.500 alone (+0.000)" in text


def test_the_served_report_answers_with_llamacpp_acceptance_rate(served: Path):
    data = load_served(served)
    assert data.metrics_sources == ("llama.cpp",)
    rows = served_rows(data)
    by = {(r["category"], r["stream"]): r["acceptance_rate"] for r in rows.iter_rows(named=True)}
    assert by[("coding", "single-task")] == by[("coding", "multitask")] == 1 / 2
    found = headline(data)["text"]
    # pooled over both tasks, weighted by drafted tokens (the two-turn prompts weigh double)
    drafted = sum(COUNTS[c][0] * t for c, t in (("coding", 3), ("math", 3)))
    accepted = sum(COUNTS[c][1] * t for c, t in (("coding", 3), ("math", 3)))
    assert f"acceptance rate {accepted / drafted:.3f} in the multitask stream" in found
    assert "no mean acceptance length" in found


@pytest.mark.slow
def test_the_served_report_of_llamacpp_draws_acceptance_rate_marked_as_the_servers(
    served: Path, tmp_path_factory: pytest.TempPathFactory
):
    from report_fixtures import isolate_jupyter

    from specviz.report.builder import build_report
    from specviz.report.served import SERVER_MARK

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        isolate_jupyter(mp, home)
        page = build_report(served, home / "report.html", n_boot=200, progress=False).read_text()
    assert "Acceptance rate (accepted / drafted), single-task vs multitask" in page
    assert "no spec steps reported: acceptance rate" in page
    assert "llama.cpp reports none" in page  # no per-position acceptance, and why
    cells = page.split('<div class="jp-Cell ')[1:]
    charts = [c for c in cells if "specviz-chart" in c]
    assert len(charts) >= 3
    assert all(f'class="specviz-note {SERVER_MARK}"' in c for c in charts)
