"""Bootstrap intervals: seeded, vectorized, equal to the naive loop."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from specviz.metrics import bootstrap_by, bootstrap_ratio, metric_intervals, summary
from specviz.metrics.bootstrap import strata, stratified_sums, unpooled_thin_tasks
from specviz.metrics.synthetic import synthetic_events


def test_vectorized_resampling_equals_a_naive_loop_with_the_same_draws():
    rng = np.random.default_rng(7)
    num, den = rng.random(50), rng.random(50) + 0.5
    got = bootstrap_ratio(num, den, n_boot=500, seed=11, level=0.9)
    draws = np.random.default_rng(11).integers(0, 50, size=(500, 50))
    stats = np.array([num[i].sum() / den[i].sum() for i in draws])
    assert got.estimate == pytest.approx(num.sum() / den.sum())
    assert got.low == pytest.approx(np.quantile(stats, 0.05))
    assert got.high == pytest.approx(np.quantile(stats, 0.95))


def test_constant_requests_give_a_zero_width_interval():
    iv = bootstrap_ratio(np.full(30, 2.0), np.ones(30), n_boot=200)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((2.0, 2.0, 2.0))


def test_interval_narrows_with_more_requests():
    rng = np.random.default_rng(0)
    small = bootstrap_ratio(rng.random(20), np.ones(20), n_boot=1000)
    large = bootstrap_ratio(rng.random(2000), np.ones(2000), n_boot=1000)
    assert (large.high - large.low) < (small.high - small.low) / 4


def test_bootstrap_by_groups_and_seeds_are_deterministic():
    df = pl.DataFrame({"g": ["a"] * 10 + ["b"] * 10, "x": np.arange(20.0), "y": np.ones(20)})
    out = bootstrap_by(df, "g", "x", "y", n_boot=300, seed=5)
    assert out["g"].to_list() == ["a", "b"]
    assert out["estimate"].to_list() == pytest.approx([4.5, 14.5])
    assert out.equals(bootstrap_by(df, "g", "x", None, n_boot=300, seed=5))


def test_metric_intervals_estimates_equal_the_summary_columns():
    ev = synthetic_events(30_000, seed=2)
    out = metric_intervals(ev, "category", n_boot=200)
    s = summary(ev, "category")
    for metric in ("acceptance_rate", "alpha", "mean_accepted_length", "tokens_per_s"):
        got = out.filter(pl.col("metric") == metric).sort("category")
        assert got["estimate"].to_list() == pytest.approx(s[metric].to_list())
        assert (got["low"] <= got["estimate"]).all() and (got["estimate"] <= got["high"]).all()


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metrics"):
        metric_intervals(synthetic_events(1000), metrics=["speed"])


def test_tasks_of_one_request_share_one_stratum_and_a_lone_one_keeps_its_own():
    # tasks in sorted order, the pooled tasks of one request last
    assert strata(["b", "a", "c", "b", "d"]).tolist() == [0, 1, 1, 0, 1]
    assert unpooled_thin_tasks(["b", "a", "c", "b", "d"]) == {}
    # one task of one request has nothing to pool with: its own stratum, named as thin
    assert strata(["b", "a", "b"]).tolist() == [1, 0, 1]
    assert unpooled_thin_tasks(["b", "a", "b"]) == {"a": 1}


def test_stratified_resamples_keep_each_stratums_count_of_rows():
    # stratum 0 holds 1.0s, stratum 1 holds 10.0 and 20.0: every resample draws two rows of
    # each, so its sum is 2 + (20, 30 or 40)
    values = np.asarray([1.0, 10.0, 1.0, 20.0])
    sums = stratified_sums({"x": values}, np.asarray([0, 1, 0, 1]), 500, [0])["x"]
    assert set(np.unique(sums).tolist()) == {22.0, 32.0, 42.0}
