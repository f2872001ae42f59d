"""Leviathan et al.'s model with measured costs, against measurement."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from specviz.metrics import (
    MissingBaselineError,
    best_k,
    cost_at,
    expected_tokens,
    leviathan_speedup,
    predicted_speedup_curve,
    theory_vs_measured,
    verify_cost,
)
from specviz.metrics.synthetic import (
    Labels,
    RoundSpec,
    events_from_rounds,
    prefill,
    synthetic_events,
)

SPEC = Labels(run_id="spec", request_id="s", drafter="model")
BASE = Labels(
    run_id="base", request_id="b", drafter="none", policy="none"
)  # as the runner labels it


def hand_events() -> pl.DataFrame:
    # 2 drafted per round, accepted 2, 0, 1, 2 -> verified 2 + 1 + 2 + 2 = 7, alpha = 5/7;
    # emitted 3, 1, 2, 3 = 9 over 4 rounds; draft 0.02 s per round (d = 0.01), verify 0.1 s (T(3))
    spec = [prefill(0.3)] + [RoundSpec(2, a, draft_s=0.02, verify_s=0.1) for a in (2, 0, 1, 2)]
    base = [prefill(0.3)] + [RoundSpec(verify_s=0.05) for _ in range(4)]
    return pl.concat([events_from_rounds(spec, SPEC), events_from_rounds(base, BASE)])


def test_expected_tokens_and_constant_cost_speedup_by_hand():
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens(1.0, 4) == pytest.approx(5.0)
    assert expected_tokens(0.0, 4) == pytest.approx(1.0)
    assert leviathan_speedup(0.5, 2, 0.1) == pytest.approx(1.75 / 1.2)
    np.testing.assert_allclose(expected_tokens(np.array([0.5, 0.8]), 1), [1.5, 1.8])


def test_theory_vs_measured_by_hand():
    r = theory_vs_measured(hand_events(), "drafter").row(0, named=True)
    alpha = 5 / 7
    e = (1 - alpha**3) / (1 - alpha)
    assert r["drafter"] == "model"
    assert r["alpha"] == pytest.approx(alpha)
    assert r["draft_s_per_token"] == pytest.approx(0.01)
    assert r["baseline_s_per_token"] == pytest.approx(0.05)
    assert r["predicted_tokens_per_round"] == pytest.approx(e)
    assert r["measured_tokens_per_round"] == pytest.approx(9 / 4)
    assert r["predicted_s_per_round"] == pytest.approx(0.12)
    assert r["predicted_speedup"] == pytest.approx(0.05 * e / 0.12)
    assert r["measured_speedup"] == pytest.approx(0.05 * 2.25 / 0.12)


def test_verify_cost_is_measured_per_number_of_tokens_verified():
    t = verify_cost(hand_events())
    assert t["n_verified"].to_list() == [1, 3]
    assert t["rounds"].to_list() == [4, 4]
    assert t["verify_s"].to_list() == pytest.approx([0.05, 0.1])
    values, sources = cost_at(t, [1, 2, 3, 5])
    assert values == pytest.approx([0.05, 0.075, 0.1, 0.15])
    assert sources == ["measured", "interpolated", "measured", "extrapolated"]


def test_predicted_curve_uses_the_formula_at_every_k():
    curve = predicted_speedup_curve(hand_events(), "drafter", ks=[1, 2, 4])
    alpha = 5 / 7
    t = {1: 0.075, 2: 0.1, 4: 0.15}  # T(k + 1): interpolated, measured, extrapolated
    expected = [0.05 * expected_tokens(alpha, k) / (0.01 * k + t[k]) for k in (1, 2, 4)]
    assert curve["predicted_speedup"].to_list() == pytest.approx(expected)
    assert curve["verify_cost_source"].to_list() == ["interpolated", "measured", "extrapolated"]


def test_best_k_predicted_and_measured_on_iid_synthetic_runs():
    runs = [synthetic_events(120_000, k=k, run_id=f"k{k}", seed=k) for k in (1, 3, 6)]
    runs.append(
        synthetic_events(20_000, k=0, drafter="none", run_id="base").with_columns(
            pl.lit("none").alias("policy")
        )
    )
    events = pl.concat(runs)
    out = best_k(events, "category", ks=range(1, 9))
    curve = predicted_speedup_curve(events, "category", ks=range(1, 9))
    for row in out.iter_rows(named=True):
        c = curve.filter(pl.col("category") == row["category"])
        assert row["best_k_predicted"] == c["k"][int(np.argmax(c["predicted_speedup"].to_numpy()))]
        assert row["ks_run"] == [1, 3, 6]
    # synthetic acceptance is i.i.d., so the model predicts the measurement closely
    tvm = theory_vs_measured(events, ["category", "k"])
    np.testing.assert_allclose(tvm["predicted_speedup"], tvm["measured_speedup"], rtol=0.02)
    # high acceptance wants long drafts, low acceptance short ones
    summ = out.sort("alpha")
    assert summ["best_k_predicted"][0] < summ["best_k_predicted"][-1]


def test_theory_without_baseline_rounds_is_an_error():
    events = hand_events().filter(pl.col("drafter") != "none")
    with pytest.raises(MissingBaselineError, match="target=tiny"):
        theory_vs_measured(events, "drafter")


def test_rounds_without_drafts_are_predicted_at_one_token():
    # prompt lookup without a match drafts nothing: E = 1 for those rounds
    spec = [
        prefill(0.3),
        RoundSpec(0, 0, verify_s=0.05),
        RoundSpec(2, 2, draft_s=0.02, verify_s=0.1),
    ]
    spec += [RoundSpec(2, 1, draft_s=0.02, verify_s=0.1)]
    base = [prefill(0.3)] + [RoundSpec(verify_s=0.05) for _ in range(4)]
    events = pl.concat([events_from_rounds(spec, SPEC), events_from_rounds(base, BASE)])
    r = theory_vs_measured(events, "drafter").row(0, named=True)
    alpha = 3 / 4  # verified 2 + 2, accepted 2 + 1
    assert r["alpha"] == pytest.approx(alpha)
    assert r["predicted_tokens_per_round"] == pytest.approx((1 + 2 * expected_tokens(alpha, 2)) / 3)
    assert r["predicted_s_per_round"] == pytest.approx((0.05 + 2 * 0.12) / 3)


def test_a_drafter_that_never_drafted_is_predicted_as_plain_decoding():
    spec = [prefill(0.3)] + [RoundSpec(0, 0, verify_s=0.05) for _ in range(3)]
    base = [prefill(0.3)] + [RoundSpec(verify_s=0.05) for _ in range(3)]
    events = pl.concat([events_from_rounds(spec, SPEC), events_from_rounds(base, BASE)])
    r = theory_vs_measured(events, "drafter").row(0, named=True)
    assert r["alpha"] is None
    assert r["predicted_tokens_per_round"] == pytest.approx(1.0)
    assert r["predicted_speedup"] == pytest.approx(1.0)
    assert r["measured_speedup"] == pytest.approx(1.0)
