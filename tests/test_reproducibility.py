"""Two runs of one study on the embedded model record identical rounds for every request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specviz.cost import CostModel
from specviz.report.reproducibility import round_counts, same_rounds
from specviz.study import parse_study, run_study
from specviz.study.calibrate import COST_MODEL_FILE

pytestmark = pytest.mark.slow

# small: 2 categories x 1 prompt, single-task and multitask, the persistent heuristic policy
# (its k carries across requests, so any difference in one request would show in the next)
STUDY = {
    "name": "twice",
    "max_new_tokens": 16,
    "models": ["smollm2-135m"],
    "policies": ["heuristic"],
    "k": [3],
    "workload": {"source": "builtin", "per_category": 1, "categories": ["coding", "extraction"]},
    "mixtures": {"single": True, "uniform": ["interleaved"]},
    "drafters": [{"kind": "prompt-lookup"}],
    "options": {"device": "cpu", "baseline": False, "workers": 1},
}


def test_two_runs_of_one_study_record_identical_round_counts_per_request(tmp_path: Path):
    study = parse_study(STUDY, "twice.toml")
    for name in ("a", "b"):
        run_study(study, tmp_path / name, progress=False)
    first, second = round_counts(tmp_path / "a"), round_counts(tmp_path / "b")
    assert first.height == 4  # 2 single-task requests + 2 in the multitask stream
    assert first["drafted"].sum() > 0
    assert same_rounds(first, second)
    # the study's calibration step recorded its cost curve
    recorded = json.loads((tmp_path / "a" / COST_MODEL_FILE).read_text())["targets"]
    model = CostModel.from_dict(recorded["smollm2-135m"])
    assert model.verify(1) > 0 and "prompt-lookup" in model.draft_s
    # and the comparison can fail: one request with one round more is not the same
    changed = second.with_columns(
        second["rounds"] + (second["request_id"] == second["request_id"][0])
    )
    assert not same_rounds(first, changed)
