"""Speedup against the autoregressive baseline, paired by prompt, in three conventions."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import MissingBaselineError, missing_baseline, paired_requests, speedup
from specviz.metrics.synthetic import requests_from_rows


def base(prompt: str, tokens: int, wall: float, repeat: int = 0, mixture: str = "mix") -> dict:
    return dict(
        run_id=f"base-{mixture}",
        drafter="none",
        k=0,
        prompt_id=prompt,
        new_tokens=tokens,
        wall_s=wall,
        repeat=repeat,
        mixture=mixture,
    )


def spec(prompt: str, tokens: int, wall: float, repeat: int = 0) -> dict:
    return dict(
        run_id="spec",
        drafter="model",
        k=4,
        prompt_id=prompt,
        new_tokens=tokens,
        wall_s=wall,
        repeat=repeat,
        mixture="mix",
    )


def test_ratio_of_totals_mean_of_ratios_and_specbench_differ_as_computed_by_hand():
    req = requests_from_rows(
        [base("p1", 10, 2.0), base("p2", 20, 2.0), spec("p1", 10, 1.0), spec("p2", 20, 0.5)]
    )
    out = speedup(req, by="drafter", n_boot=200).row(0, named=True)
    # method 30 tokens / 1.5 s = 20 tok/s; baseline 30 / 4 = 7.5 tok/s
    assert out["speedup_total"] == pytest.approx(20 / 7.5)
    # per request: (10/1)/(10/2) = 2, (20/0.5)/(20/2) = 4
    assert out["speedup_mean"] == pytest.approx(3.0)
    # Spec-Bench: mean(10, 40) / mean(5, 10)
    assert out["speedup_specbench"] == pytest.approx(25 / 7.5)
    assert out["requests"] == 2
    for name in ("speedup_total", "speedup_mean", "speedup_specbench"):
        assert out[f"{name}_low"] <= out[name] <= out[f"{name}_high"]


def test_a_prompt_without_baseline_is_reported_not_dropped():
    req = requests_from_rows([base("p1", 10, 2.0), spec("p1", 10, 1.0), spec("p9", 10, 1.0)])
    assert missing_baseline(req)["prompt_id"].to_list() == ["p9"]
    with pytest.raises(MissingBaselineError, match="p9") as err:
        speedup(req)
    assert err.value.missing["prompt_id"].to_list() == ["p9"]


def test_baseline_at_another_temperature_does_not_count():
    rows = [base("p1", 10, 2.0) | {"temperature": 0.7}, spec("p1", 10, 1.0)]
    with pytest.raises(MissingBaselineError, match="p1"):
        paired_requests(requests_from_rows(rows))


def test_repeats_pair_exactly_when_present_and_fall_back_to_the_repeat_mean():
    req = requests_from_rows(
        [
            base("p1", 10, 2.0, repeat=0),
            base("p1", 10, 4.0, repeat=1),
            spec("p1", 10, 1.0, repeat=1),
            spec("p1", 10, 1.0, repeat=2),
        ]
    )
    pairs = paired_requests(req).sort("repeat")
    assert pairs["baseline_wall_s"].to_list() == pytest.approx([4.0, 3.0])
    assert pairs["baseline_repeat_matched"].to_list() == [True, False]
    assert pairs["speedup"].to_list() == pytest.approx([4.0, 3.0])


def test_baseline_run_in_several_mixtures_is_averaged_per_prompt():
    req = requests_from_rows(
        [
            base("p1", 10, 2.0, mixture="mix"),
            base("p1", 10, 3.0, mixture="writing"),
            spec("p1", 10, 1.0),
        ]
    )
    assert paired_requests(req)["baseline_wall_s"].to_list() == pytest.approx([2.5])


def test_speedup_groups_and_baseline_rows_are_not_in_the_output():
    rows = [base("p1", 10, 2.0), base("p2", 10, 2.0), spec("p1", 10, 1.0)]
    rows.append(dict(spec("p2", 10, 0.5), category="coding"))
    out = speedup(requests_from_rows(rows), by="category", n_boot=100)
    assert out["category"].to_list() == ["coding", "writing"]
    assert out["speedup_total"].to_list() == pytest.approx([4.0, 2.0])
    assert "none" not in paired_requests(requests_from_rows(rows))["drafter"].to_list()


def test_speedup_intervals_are_reproducible_with_a_seed():
    rows = [base(f"p{i}", 10, 2.0 + 0.1 * i) for i in range(20)]
    rows += [spec(f"p{i}", 10, 1.0 + 0.05 * (i % 7)) for i in range(20)]
    req = requests_from_rows(rows)
    a = speedup(req, n_boot=300, seed=3)
    b = speedup(req, n_boot=300, seed=3)
    c = speedup(req, n_boot=300, seed=4)
    assert a.equals(b)
    assert a["speedup_total_low"][0] != c["speedup_total_low"][0]
    assert pl.Series([a["speedup_total_low"][0]]).item() < a["speedup_total"][0]
