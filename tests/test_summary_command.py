"""``specviz summary DIR [--all] [--json]``: the report's headline and decomposition in a
terminal, from the same functions: one screen by default, every term with ``--all``; bad input
exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import run_cli
from mix_study import mix_runs, write_mix_study
from report_fixtures import default_conditions, write_study

from specviz.report.answer import answer_json, answer_of, study_answer
from specviz.report.data import load_runs
from specviz.report.summary import answer_text, screen_text, summary_html


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("summary") / "study", default_conditions())


def test_summary_all_of_a_study_prints_the_answer_the_report_shows(study: Path):
    done = run_cli("summary", str(study), "--all", "--n-boot", "200")
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


GOLDEN = Path(__file__).parent / "golden" / "summary_default_study.json"
GOLDEN_DISTRIBUTIONS = GOLDEN.with_name("summary_default_study_distributions.json")


def test_summary_json_of_the_default_fixture_study_is_pinned(study: Path):
    # recorded from `specviz summary --json --n-boot 200` before the answer became typed
    # (metrics/study.py): every key, its order and every figure stay as published (since then
    # two keys were added: each stream's `clocked` and the clock's `co_decoded_requests`). The
    # distributions are pinned in a file of their own, recorded once their time shares were
    # summed in a fixed order (before, their last digit changed from run to run). Re-recorded
    # once, when the decomposition moved to the decode clock (prefill forwards excluded,
    # specviz.metrics.accounting.decode_clock): every term's figure moved, no key.
    done = run_cli("summary", str(study), "--json", "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.replace(str(study), "{study}"))
    distributions = answer.pop("distributions")
    assert json.dumps(answer, indent=1) + "\n" == GOLDEN.read_text()
    assert json.dumps(distributions, indent=1) + "\n" == GOLDEN_DISTRIBUTIONS.read_text()


def test_the_published_answer_is_the_typed_answer_in_json(study: Path):
    typed = answer_of(load_runs(study), n_boot=200)
    published = answer_json(typed)
    lead = typed.lead
    assert lead is not None and lead.term is not None
    leading = typed.streams[lead.stream]
    assert published["headline"]["method"] == leading.modelled["method"]
    assert published["headline"]["part"] == lead.part == leading.terms[lead.term].term.part
    statuses = [t["status"] for row in published["streams"] for t in row["terms"]]
    assert statuses == [t.term.status for s in typed.streams for t in s.terms]
    assert [r["method"] for r in published["configurations"]] == [
        c.stream.modelled["method"] for c in typed.configurations
    ]


def test_summary_of_a_single_run_has_no_decomposition_but_its_clocks(study: Path):
    run = str(study / "runs" / "prompt-lookup-coding")
    done = run_cli("summary", run, "--all", "--n-boot", "200")
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


def _screen(stdout: str) -> tuple[int, int]:
    lines = stdout.rstrip("\n").splitlines()
    return len(lines), max(len(line) for line in lines)


def test_summary_fits_one_screen_with_headline_regime_terms_and_what_is_unresolved(study: Path):
    done = run_cli("summary", str(study), "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    rows, columns = _screen(done.stdout)
    assert rows <= 25 and columns <= 100, done.stdout
    answer = study_answer(load_runs(study), n_boot=200)
    assert done.stdout.strip() == screen_text(answer).strip()
    flat = " ".join(done.stdout.split())
    assert answer["headline"]["short"] in flat
    assert "Regime: tiny-target, dtype not recorded, verify cost T(5)/T(1) = " in flat
    assert "Terms resolved at their target or established" in done.stdout
    assert flat.count("Unresolved") == 1 and "--all prints every term" in flat


def test_summary_of_a_larger_study_still_fits_one_screen(tmp_path: Path):
    """The mix study: 4 drafted methods, 5 tasks, every term of the decomposition measured."""
    mix = write_mix_study(tmp_path / "mix", mix_runs())
    done = run_cli("summary", str(mix), "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    rows, columns = _screen(done.stdout)
    assert rows <= 25 and columns <= 100, done.stdout
    assert "Best single configuration per multitask stream (modelled" in done.stdout
    assert "chat-mix: prompt-lookup k=5" in done.stdout
    assert _screen(run_cli("summary", str(mix), "--all", "--n-boot", "200").stdout)[0] > 25


def test_summary_json_says_per_term_whether_it_is_resolved_at_the_target(study: Path):
    answer = json.loads(run_cli("summary", str(study), "--json", "--n-boot", "200").stdout)
    assert answer["power"] == {"target_pct": 1.5, "term_target_pct": {}, "given": False}
    terms = [t for row in answer["streams"] for t in row["terms"]]
    assert terms and all(t["target_pct"] == 1.5 for t in terms)
    for t in terms:
        if t["status"] == "zero by construction":
            assert (t["half_width_pct"], t["resolved"]) == (0.0, True)
        else:
            width = (t["high_pct"] - t["low_pct"]) / 2
            assert t["half_width_pct"] == pytest.approx(width)
            assert t["resolved"] == (width <= 1.5)


def test_the_study_files_power_target_decides_what_is_resolved(tmp_path: Path):
    """The manifest keeps the study file; its [power] targets are what the summary holds the
    half-widths against (per term where term_target_pct names one)."""
    study = write_study(tmp_path / "study", default_conditions())
    manifest = json.loads((study / "study.json").read_text())
    power = {"target_pct": 0.001, "term_target_pct": {"composition": 99.0}}
    manifest["study"] = {"power": power}
    (study / "study.json").write_text(json.dumps(manifest))
    answer = json.loads(run_cli("summary", str(study), "--json", "--n-boot", "200").stdout)
    assert answer["power"]["given"] is True
    for t in (t for row in answer["streams"] for t in row["terms"]):
        if t["status"] in ("finding", "inside the noise"):
            assert t["resolved"] is (t["part"] == "composition"), t
