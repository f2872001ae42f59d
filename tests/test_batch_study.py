"""Batch size and batch composition as study dimensions."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from specviz.metrics import batch_composition_gap, speedup
from specviz.rundir import scan_events, scan_requests
from specviz.study import StudyError, parse_study, plan_study, run_study

CATEGORIES = ("coding", "writing")


def study_data(tiny_model_dir: Path, prompts: Path, batching: dict) -> dict:
    return {
        "name": "batched",
        "models": [str(tiny_model_dir)],
        "policies": ["heuristic"],
        "k": [3],
        "max_new_tokens": 8,
        "drafters": [{"kind": "prompt-lookup"}],
        "workload": {"source": str(prompts), "per_category": 2},
        "mixtures": {"uniform": ["interleaved"]},
        "batching": batching,
        "options": {"device": "cpu"},
    }


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "question.jsonl"
    rows = [
        {"question_id": f"{c}-{i}", "category": c, "turns": [f"{c} {i}: say hi, say hi"]}
        for c in CATEGORIES
        for i in range(2)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_batch_sizes_and_compositions_expand_into_conditions(tiny_model_dir, prompts):
    batching = {"sizes": [1, 2], "compositions": ["single-task", "mixed"]}
    plan = plan_study(parse_study(study_data(tiny_model_dir, prompts, batching), "b.toml"))
    ids = [c.id for c in plan.conditions]
    uniform = [c for c in plan.conditions if c.mixture.name.startswith("uniform")]
    # the uniform mix: unbatched, then batch size 2 in both compositions, baseline and drafter
    assert sorted(c.batch.composition for c in uniform if c.batch) == [
        "mixed",
        "mixed",
        "single-task",
        "single-task",
    ]
    assert sum(c.batch is None for c in uniform) == 2
    # a single-task mixture has one batched condition per size: its batches hold one task
    coding = [c for c in plan.conditions if c.mixture.name == "coding" and c.batch]
    assert {c.batch.composition for c in coding} == {"single-task"}
    assert len(ids) == len(set(ids)) and all(
        u.batch == c.batch for u, c in zip(plan.units, plan.conditions, strict=True)
    )


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ({"sizes": [0]}, r"b.toml: batching: batch size must be >= 1"),
        ({"compositions": ["by-task"]}, r"b.toml: batching: batch composition 'by-task'"),
        ({"k_mode": "each"}, r"b.toml: batching: k mode 'each'"),
        ({"size": 2}, r"b.toml: batching.size: unknown key"),
    ],
)
def test_bad_batch_settings_name_the_key(tiny_model_dir, prompts, batching, message):
    with pytest.raises(StudyError, match=message):
        parse_study(study_data(tiny_model_dir, prompts, batching), "b.toml")


def test_batched_study_runs_and_compares_compositions(tiny_model_dir, prompts, tmp_path):
    batching = {"sizes": [1, 2], "compositions": ["single-task", "mixed"]}
    study = parse_study(study_data(tiny_model_dir, prompts, batching), "b.toml")
    outcome = run_study(study, tmp_path, progress=False)
    assert outcome.complete
    requests = scan_requests(tmp_path).collect()
    assert set(requests["batch_size"]) == {1, 2}
    # every method request has a baseline at its own batch size
    table = speedup(requests, ["drafter", "batch_size", "mixture"])
    assert table["speedup_total"].null_count() == 0
    gap = batch_composition_gap(requests, scan_events(tmp_path))
    assert gap.height == 2  # baseline and prompt lookup at batch size 2, uniform mixture
    manifest = json.loads((tmp_path / "study.json").read_text())
    batched = [c for c in manifest["conditions"] if c["batch"] is not None]
    assert {c["batch"]["size"] for c in batched} == {2}
    same = requests.filter(pl.col("mixture").str.starts_with("uniform"))
    # greedy: every batch setting of the uniform mix decodes the same outputs
    assert (
        same.group_by("prompt_id").agg(pl.col("output_text").n_unique())["output_text"].max() == 1
    )
