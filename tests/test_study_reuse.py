"""No decode twice: a study copies the requests whose rounds an earlier decode already fixed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from engine_helpers import write_short_questions

from specviz.rundir import CO_DECODED_KEY, RUN_FILE, find_run_dirs, scan_events, scan_requests
from specviz.runner import run
from specviz.study import Study, parse_study, plan_study, run_study
from specviz.study.planning import plan_text, study_plan
from specviz.study.units import Unit

CATEGORIES = ("coding", "math")
# what a copy changes: its own run's labels and nothing else of its rounds
TIMING = ["draft_s", "verify_s"]
LABELS = ["run_id"]


@pytest.fixture(scope="module")
def study(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Study:
    """2 categories x 2 prompts (one of two turns); 2 single-task + 1 uniform mixture; the
    baseline, prompt lookup (stateless) and the suffix drafter (shared memory) under the constant
    and persistent heuristic policies."""
    path = write_short_questions(tmp_path_factory.mktemp("prompts") / "question.jsonl", CATEGORIES)
    data = {
        "name": "reuse",
        "models": [str(tiny_model_dir)],
        "policies": ["constant", "heuristic"],
        "k": [3],
        "max_new_tokens": 8,
        "drafters": [{"kind": "prompt-lookup"}, {"kind": "suffix"}],
        "workload": {"source": str(path), "per_category": 2},
        "mixtures": {"uniform": ["interleaved"]},
        "options": {"device": "cpu", "dtype": "float32"},
    }
    return parse_study(data, "reuse.toml")


@pytest.fixture(scope="module")
def done(study: Study, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study")
    assert run_study(study, out, progress=False).complete
    return out


def unit(study: Study, name: str) -> Unit:
    return next(u for u in plan_study(study).units if name in u.condition_id)


def test_only_stateless_greedy_multitask_units_copy_single_task_decodes(study: Study) -> None:
    copying = {u.condition_id: len(u.reuse) for u in plan_study(study).units if u.reuse}
    # the uniform stream's baseline and prompt lookup at constant k copy all 4 of its requests;
    # the persistent heuristic and the suffix drafter's memory carry state: they decode
    assert copying == {
        f"{unit(study, 'uniform').condition_id.split('--')[0]}--uniform-interleaved--{rest}": 4
        for rest in ("baseline--greedy", "prompt-lookup--constant-k3--greedy")
    }
    sources = {r.source for u in plan_study(study).units for r in u.reuse}
    assert all("--coding--" in s or "--math--" in s for s in sources)


def test_a_stateful_condition_is_never_copied(study: Study) -> None:
    for u in plan_study(study).units:
        if "suffix" in u.condition_id or "heuristic" in u.condition_id:
            assert u.reuse == ()


def test_copied_requests_equal_decoding_them(study: Study, done: Path, tmp_path: Path) -> None:
    """The multitask baseline's copies hold exactly the events a fresh decode gives (float32,
    greedy); their seconds are the source decode's."""
    copy = unit(study, "uniform-interleaved--baseline")
    assert len(copy.reuse) == len(copy.requests)
    fresh = tmp_path / "fresh"
    run(copy.config, copy.requests, fresh, progress=False)
    order = ["request_index", "turn", "round", "position"]
    copied = scan_events(done / copy.run_dir).sort(order).collect()
    decoded = scan_events(fresh).sort(order).collect()
    assert copied.drop(LABELS + TIMING).equals(decoded.drop(LABELS + TIMING))
    columns = ["request_id", "mixture", "category", "output_text", "new_tokens", "rounds"]
    assert (
        scan_requests(done / copy.run_dir)
        .select(columns)
        .sort("request_id")
        .collect()
        .equals(scan_requests(fresh).select(columns).sort("request_id").collect())
    )
    # the seconds are the source's: the copy of each request has its source's wall_s
    meta = json.loads((done / copy.run_dir / "run.json").read_text())
    reused = meta["reused"]
    assert sorted(reused) == sorted(r.id for r in copy.requests)
    for request_id, source in reused.items():
        mine = scan_requests(done / copy.run_dir).filter(pl.col("request_id") == request_id)
        theirs = scan_requests((done / copy.run_dir / source["run"]).resolve()).filter(
            pl.col("request_id") == source["request_id"]
        )
        assert mine.select("wall_s").collect().item() == theirs.select("wall_s").collect().item()


def test_every_run_is_complete_and_written_once(study: Study, done: Path) -> None:
    runs = find_run_dirs(done)
    assert len(runs) == len(plan_study(study).units)
    events = scan_events(runs).collect()
    assert (
        events.select("run_id", "request_id", "round", "position", "kind").is_duplicated().sum()
        == 0
    )


def test_the_plan_says_what_copying_saves(study: Study) -> None:
    plan = plan_study(study)
    counts = study_plan(plan, plan.units, None)
    assert counts.reuse is not None
    # 2 units x 4 requests (2 of two turns, 2 of one) x 8 tokens per turn
    assert (counts.reuse.requests, counts.reuse.tokens) == (8, 2 * (2 * 2 + 2) * 8)
    assert "reuse: 8 requests (96 budgeted tokens" in plan_text(counts)


def test_a_shard_without_the_source_decodes_itself(study: Study) -> None:
    from specviz.study.reuse import settle

    copy = unit(study, "uniform-interleaved--baseline")
    assert settle([copy], set())[0].reuse == ()
    assert settle([copy], {r.source for r in copy.reuse})[0].reuse == copy.reuse


def test_a_copy_of_a_co_decoded_request_has_no_wall_clock_either(
    study: Study, done: Path, tmp_path: Path
) -> None:
    """A co-decoded source's wall seconds were shared with other runs' rows: the run that copies
    them is marked co-decoded too (run.json), so no wall-clock figure reads them."""
    from specviz.study.work import run_unit

    copy = unit(study, "uniform-interleaved--baseline")
    out = tmp_path / "study"
    for source in {r.source for r in copy.reuse}:
        shutil.copytree(done / source, out / source)
        path = out / source / RUN_FILE
        path.write_text(json.dumps(json.loads(path.read_text()) | {CO_DECODED_KEY: {"lanes": 4}}))
    run_unit(copy, out)
    meta = json.loads((out / copy.run_dir / RUN_FILE).read_text())
    assert meta[CO_DECODED_KEY] == {"lanes": 4, "reused": True}
    # copied from sources decoded alone, a copy keeps its wall clock
    assert CO_DECODED_KEY not in json.loads((done / copy.run_dir / RUN_FILE).read_text())
