"""``specviz summary DIR [--json]``: the report's headline and decomposition in a terminal, from
the same functions; bad input exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import run_cli
from report_fixtures import default_conditions, write_study

from specviz.report.answer import study_answer
from specviz.report.data import load_runs
from specviz.report.summary import answer_text, summary_html


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("summary") / "study", default_conditions())


def test_summary_of_a_study_prints_the_answer_the_report_shows(study: Path):
    done = run_cli("summary", str(study), "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    answer = study_answer(load_runs(study), n_boot=200)
    assert done.stdout.strip() == answer_text(answer).strip()
    headline = answer["headline"]["text"]
    assert done.stdout.splitlines()[2] == headline
    assert headline.startswith("prompt-lookup constant k=4 on uniform-interleaved")
    # modelled first, the wall clock beside it, one row each
    lines = [line for line in done.stdout.splitlines() if "uniform-interleaved  " in line]
    assert "modelled" in lines[0] and "wall clock" in lines[1]
    # the report's summary is built from the same answer
    assert headline.replace("'", "&#x27;") in summary_html({"answer": answer})


def test_summary_json_is_one_object_with_the_headline_and_every_term(study: Path):
    done = run_cli("summary", str(study), "--json", "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    answer = json.loads(done.stdout)
    assert answer["headline"]["status"] in ("finding", "inside the noise")
    terms = [t["part"] for row in answer["streams"] for t in row["terms"]]
    assert set(terms) == {"composition", "tuning", "k_mismatch", "carry_over", "residual"}
    assert answer["cost_models"]["tiny-target"]["verify_s"]


def test_summary_of_a_single_run_has_no_decomposition_but_its_clocks(study: Path):
    done = run_cli("summary", str(study / "runs" / "prompt-lookup-coding"), "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    assert "No multitask stream could be compared" in done.stdout
    assert "prompt-lookup constant k=4  coding" in done.stdout  # its stream, both clocks
    assert "Cost curve:" in done.stdout


@pytest.mark.parametrize("kind", ["empty", "not-a-run", "missing"])
def test_summary_of_bad_input_exits_2_with_one_line(tmp_path: Path, kind: str):
    path = tmp_path / kind
    if kind == "empty":
        path.mkdir()
    elif kind == "not-a-run":
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "notes.txt").write_text("hello")
    done = run_cli("summary", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("specviz summary: error: ")
    assert "Traceback" not in done.stderr
