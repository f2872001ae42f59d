"""The cost model prices rounds from its curves; numbers worked by hand."""

from __future__ import annotations

import json

import pytest

from specviz.cost import CostModel, CostModelError

# the verify curve measured on the development machine (rows 1..6), in seconds
MODEL = CostModel(
    verify_s=(0.053, 0.056, 0.061, 0.086, 0.089, 0.092),
    draft_s={"prompt-lookup": (0.001, 0.001, 0.002), "layer-skip": (0.0, 0.045, 0.090)},
    prefill_intercept_s=0.05,
    prefill_s_per_token=0.001,
    source="hand-made",
)


def test_verify_reads_the_curve_by_rows_and_extrapolates_its_last_step():
    assert MODEL.verify(1) == 0.053
    assert MODEL.verify(4) == 0.086
    # past 6 rows: the last step (0.003 s per row) continues
    assert MODEL.verify(8) == pytest.approx(0.092 + 2 * 0.003)


def test_draft_costs_per_drafter_and_tokens_and_the_baseline_drafts_free():
    assert MODEL.draft("layer-skip", 2) == 0.090
    assert MODEL.draft("layer-skip", 3) == pytest.approx(0.135)
    assert MODEL.draft("none", 0) == 0.0
    with pytest.raises(CostModelError, match="no cost curve for drafter 'model'"):
        MODEL.draft("model", 1)


def test_prefill_is_a_line_in_prompt_tokens():
    assert MODEL.prefill(100) == pytest.approx(0.15)


def test_a_round_prices_drafting_plus_verifying_drafted_plus_one_rows():
    # 3 drafted by layer-skip: 0.135 + T(4) = 0.086 -> 0.221
    assert MODEL.round("layer-skip", 3) == pytest.approx(0.221)
    assert MODEL.round("prompt-lookup", 0, drafter_called=False) == 0.053


def test_round_trips_through_json():
    again = CostModel.from_dict(json.loads(json.dumps(MODEL.to_dict())))
    assert again == MODEL


def test_refuses_a_negative_cost_and_another_version():
    with pytest.raises(CostModelError, match="verify_s"):
        CostModel(verify_s=(0.05, -1.0))
    with pytest.raises(CostModelError, match="version"):
        CostModel.from_dict({"version": 99, "verify_s": [1.0]})
