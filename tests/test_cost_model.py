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


# -- claims written for the mutants make mutation found surviving (docs/testing.md) -----------


def _refusal(call, *args, **options) -> str:
    with pytest.raises(CostModelError) as caught:
        call(*args, **options)
    return str(caught.value)


def test_a_negative_index_into_a_curve_is_refused_naming_the_curve():
    assert _refusal(MODEL.draft, "layer-skip", -1) == "draft[layer-skip]: index -1 is negative"


def test_a_one_point_curve_is_flat():
    flat = CostModel(verify_s=(0.5,), draft_s={"suffix": (0.25,)})
    assert (flat.verify(1), flat.verify(7)) == (0.5, 0.5)
    assert (flat.draft("suffix", 0), flat.draft("suffix", 4)) == (0.25, 0.25)


def test_a_two_point_curve_extends_its_one_step():
    line = CostModel(verify_s=(1.0, 3.0))
    assert [line.verify(rows) for rows in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, 7.0]


def test_a_curve_must_be_finite_seconds_and_not_empty():
    assert _refusal(CostModel, verify_s=()) == "verify_s: the curve is empty"
    assert _refusal(CostModel, verify_s=(1.0, float("inf"), -2.0)) == (
        "verify_s: costs must be finite seconds >= 0 (got inf)"
    )
    assert _refusal(CostModel, verify_s=(1.0,), draft_s={"suffix": (0.0, float("nan"))}) == (
        "draft_s[suffix]: costs must be finite seconds >= 0 (got nan)"
    )
    assert CostModel(verify_s=(0.0,)).verify(1) == 0.0  # zero seconds are seconds


def test_drafters_are_kept_by_name_in_order_and_samples_as_a_dict():
    model = CostModel(verify_s=(1.0,), draft_s={"b": [0.0], "a": [0.0]}, samples={"verify": 3})
    assert list(model.draft_s) == ["a", "b"]
    assert model.draft_s["a"] == (0.0,)
    assert model.samples == {"verify": 3}


def test_costs_outside_their_domain_are_refused_naming_the_value():
    assert _refusal(MODEL.verify, 0) == "verify: rows must be >= 1 (got 0)"
    assert _refusal(MODEL.prefill, -1) == "prefill: prompt_tokens must be >= 0 (got -1)"
    assert _refusal(MODEL.draft, "model", 1) == (
        "draft: no cost curve for drafter 'model' (known: layer-skip, prompt-lookup)"
    )
    assert _refusal(CostModel(verify_s=(1.0,)).draft, "model", 1) == (
        "draft: no cost curve for drafter 'model' (known: none)"
    )


def test_a_prefill_line_is_never_negative_and_starts_at_zero_tokens():
    assert MODEL.prefill(0) == 0.05
    below = CostModel(verify_s=(1.0,), prefill_intercept_s=-0.5, prefill_s_per_token=0.001)
    assert below.prefill(100) == 0.0
    assert below.prefill(1000) == pytest.approx(0.5)


def test_a_round_counts_its_drafting_unless_told_the_drafter_was_not_called():
    assert MODEL.round("layer-skip", 1) == pytest.approx(0.045 + 0.056)
    assert MODEL.round("layer-skip", 1, drafter_called=False) == 0.056


def test_the_dict_form_names_every_field_and_its_version():
    assert MODEL.to_dict() == {
        "version": 1,
        "verify_s": [0.053, 0.056, 0.061, 0.086, 0.089, 0.092],
        "draft_s": {"layer-skip": [0.0, 0.045, 0.090], "prompt-lookup": [0.001, 0.001, 0.002]},
        "prefill_intercept_s": 0.05,
        "prefill_s_per_token": 0.001,
        "prefill_s_per_token2": 0.0,
        "source": "hand-made",
        "samples": {},
    }


def test_a_dict_with_only_its_version_and_verify_curve_reads_with_the_defaults():
    model = CostModel.from_dict({"version": 1, "verify_s": [1.0, 2.0]})
    assert model == CostModel(verify_s=(1.0, 2.0))
    assert (model.prefill_intercept_s, model.prefill_s_per_token, model.source) == (0.0, 0.0, "")
    with_samples = CostModel.from_dict({"version": 1, "verify_s": [1.0], "samples": {"v": "4"}})
    assert with_samples.samples == {"v": 4}


def test_a_malformed_dict_is_refused_in_one_line():
    assert _refusal(CostModel.from_dict, {"version": 1}) == "not a cost model: 'verify_s'"
    assert _refusal(CostModel.from_dict, {"version": 1, "verify_s": 3}) == (
        "not a cost model: 'int' object is not iterable"
    )
    assert _refusal(CostModel.from_dict, {"verify_s": [1.0]}) == (
        "cost model version None is not 1: recompute it with this specviz version"
    )
    assert _refusal(CostModel.from_dict, {"version": 99, "verify_s": [1.0]}) == (
        "cost model version 99 is not 1: recompute it with this specviz version"
    )


def test_a_curve_model_prices_n_drafted_tokens_at_draft_n_minus_one_and_none_at_zero():
    from specviz.cost import curve_model

    model = curve_model([1.0, 2.0, 3.0], [0.1, 0.2], "suffix")
    assert model.draft_s == {"suffix": (0.0, 0.1, 0.2)}
    assert model.verify_s == (1.0, 2.0, 3.0)
    assert model.source == "given"
    free = curve_model([1.0, 2.0, 3.0], None, "suffix", source="run.json")
    assert (free.draft_s, free.source) == ({"suffix": (0.0, 0.0, 0.0)}, "run.json")


def test_a_cost_model_keeps_its_own_copies_as_float_tuples_and_a_dict():
    verify, samples = [1, 2], {"verify": 3}
    model = CostModel(verify_s=verify, draft_s={"suffix": [0, 1]}, samples=samples)
    verify.append(3)
    samples["verify"] = 4
    assert model.verify_s == (1.0, 2.0) and isinstance(model.verify_s, tuple)
    assert all(isinstance(v, float) for v in (*model.verify_s, *model.draft_s["suffix"]))
    assert model.samples == {"verify": 3}
