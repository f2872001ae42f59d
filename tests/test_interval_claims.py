"""Claims about bootstrap intervals: one percentile rule (``(1 - level) / 2`` and ``(1 +
level) / 2`` quantiles) for every interval specviz reports, the degradation decomposition's
included, and the decomposition's resampling within each task."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from test_metrics_degradation import multi_rows, single_rows

from specviz.metrics import bootstrap_by, degradation, metric_intervals, request_table
from specviz.metrics.bootstrap import (
    METRIC_N_BOOT,
    bootstrap,
    bootstrap_ratio,
    percentile_bounds,
)
from specviz.metrics.synthetic import requests_from_rows, synthetic_events

# the module (``specviz.metrics.degradation`` as an attribute is the function of that name)
degradation_module = importlib.import_module("specviz.metrics.degradation")


def test_percentile_bounds_are_the_central_quantiles_at_the_level():
    values = np.arange(101.0)  # the q-quantile of 0..100 is 100 q
    assert percentile_bounds(values, 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_bounds(values, 0.5) == pytest.approx((25.0, 75.0))


def test_percentile_bounds_leave_out_values_that_are_not_finite():
    values = np.array([np.nan, 0.0, np.inf, 10.0, -np.inf])
    assert percentile_bounds(values, 0.5) == (2.5, 7.5)
    low, high = percentile_bounds(np.array([np.nan, np.inf]), 0.5)
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_reports_the_percentile_bounds_of_its_resampled_statistic():
    x = np.arange(20.0)
    iv = bootstrap({"x": x}, lambda s: s["x"] / 20, n_boot=500, level=0.8, seed=3)
    # the same resamples, drawn again from the same seed
    from specviz.metrics.bootstrap import resampled_sums

    means = resampled_sums({"x": x}, 500, 3)["x"] / 20
    assert (iv.low, iv.high) == pytest.approx(tuple(np.quantile(means, [0.1, 0.9])), abs=0)
    assert iv.estimate == pytest.approx(9.5)


def test_a_ratio_whose_resamples_all_divide_by_zero_has_no_interval():
    iv = bootstrap_ratio(np.array([1.0, 2.0]), np.zeros(2), n_boot=50)
    assert math.isinf(iv.estimate) and math.isnan(iv.low) and math.isnan(iv.high)


@pytest.mark.parametrize(("level", "n_boot"), [(0.0, 10), (1.0, 10), (0.9, 0)])
def test_a_bootstrap_without_a_level_in_0_1_or_without_resamples_is_refused(level, n_boot):
    with pytest.raises(ValueError, match=r"level must be in|n_boot must be"):
        bootstrap({"x": np.ones(3)}, lambda s: s["x"], n_boot=n_boot, level=level)


def spread_rows() -> list[dict]:
    """The decomposition's fixture with each task's two requests of different lengths (10 and
    30 tokens), so resampling within a task changes the stream's seconds."""
    rows = multi_rows()
    for r in rows:
        if r["prompt_id"].endswith("1"):
            r["wall_s"] *= 3
            r["new_tokens"] *= 3
    return single_rows() + rows


def test_the_decompositions_bounds_are_the_percentile_bounds_of_its_resamples(monkeypatch):
    sampled: list[dict[str, np.ndarray]] = []
    real = degradation_module.stratified_sums

    def spy(columns, stratum, n_boot, seed):
        out = real(columns, stratum, n_boot, seed)
        sampled.append(out)
        return out

    monkeypatch.setattr(degradation_module, "stratified_sums", spy)
    r = degradation(requests_from_rows(spread_rows()), n_boot=400, level=0.8).row(0, named=True)
    (s,) = sampled  # a constant policy: the stream alone is resampled
    rate = r["reference_s"] / r["tokens"]
    for name, resampled in (
        ("total", s["t_m"] - s["n"] * rate),
        ("composition", s["t_s_best"] - s["n"] * rate),
        ("tuning", s["t_s"] - s["t_s_single"]),
        ("residual", s["t_m"] - s["t_s"]),
    ):
        low, high = np.quantile(resampled, [0.1, 0.9])
        assert (r[f"{name}_low"], r[f"{name}_high"]) == pytest.approx((low, high), abs=1e-9)
    assert r["total_low"] < r["total_high"] and r["composition_low"] < r["composition_high"]


def test_the_decomposition_resamples_requests_within_each_task():
    # each task's two requests are alike (same tokens, same seconds) but the tasks differ: a
    # resample that keeps each task's count of requests is the stream itself, so every interval
    # is a point; drawing across tasks would trade an A request for a B one
    r = degradation(requests_from_rows(single_rows() + multi_rows()), n_boot=200).row(0, named=True)
    for name in ("total", "composition", "tuning", "k_mismatch", "residual"):
        assert r[f"{name}_low"] == r[name] == r[f"{name}_high"], name


def test_a_wider_level_gives_a_wider_decomposition_interval():
    requests = requests_from_rows(spread_rows())
    narrow = degradation(requests, n_boot=400, level=0.5).row(0, named=True)
    wide = degradation(requests, n_boot=400, level=0.95).row(0, named=True)
    assert wide["total_low"] < narrow["total_low"] < narrow["total_high"] < wide["total_high"]


def test_metric_intervals_pass_their_resamples_level_and_seed_to_every_interval():
    events = synthetic_events(3000, seed=4)
    table = request_table(events)
    got = metric_intervals(events, metrics=["acceptance_rate"], n_boot=300, level=0.8, seed=5)
    want = bootstrap_by(table, (), "accepted", "drafted", n_boot=300, level=0.8, seed=5)
    assert got.select("estimate", "low", "high").row(0) == pytest.approx(
        want.select("estimate", "low", "high").row(0), rel=1e-12
    )


def test_metric_intervals_default_to_the_metric_resamples_at_95_percent_and_seed_0():
    events = synthetic_events(3000, seed=4)
    explicit = metric_intervals(events, n_boot=METRIC_N_BOOT, level=0.95, seed=0)
    default = metric_intervals(events)
    # the same resamples; a time sum may differ in its last bit (the streaming engine's order)
    assert default["metric"].to_list() == explicit["metric"].to_list()
    for column in ("estimate", "low", "high"):
        assert default[column].to_list() == pytest.approx(explicit[column].to_list(), rel=1e-12)


def test_an_unknown_metric_is_refused_naming_the_metrics_to_choose_from():
    with pytest.raises(
        ValueError, match="choose from acceptance_rate, alpha, mean_accepted_length"
    ):
        metric_intervals(synthetic_events(1000), metrics=["speed"])


def test_bootstrap_by_defaults_to_seed_0_and_reads_a_lazy_frame_as_its_data():
    table = request_table(synthetic_events(3000, seed=4), "category")
    eager = bootstrap_by(table, "category", "accepted", "drafted", n_boot=200, seed=0)
    assert bootstrap_by(table, "category", "accepted", "drafted", n_boot=200).equals(eager)
    lazy = bootstrap_by(table.lazy(), "category", "accepted", "drafted", n_boot=200)
    assert lazy.equals(eager)


# -- claims written for the mutants make mutation found surviving in bootstrap.py -------------


def test_strata_put_tasks_in_sorted_order_and_no_task_last() -> None:
    from specviz.metrics.bootstrap import strata

    assert strata(["b", "b", None, None, "a", "a"]).tolist() == [1, 1, 2, 2, 0, 0]


def test_thin_tasks_that_reach_the_minimum_together_share_one_pooled_stratum() -> None:
    from specviz.metrics.bootstrap import strata

    # b and c have one request each: together exactly MIN_TASK_REQUESTS (2), pooled, last
    assert strata(["a", "a", "b", "c"]).tolist() == [0, 0, 1, 1]


def test_a_stratified_resample_keeps_every_strata_count_of_rows() -> None:
    from specviz.metrics.bootstrap import stratified_sums

    stratum = np.asarray([0, 0, 0, 1, 1, 2])
    sums = stratified_sums({"ones": np.ones(6)}, stratum, 50, [7])
    assert sums["ones"].tolist() == [6.0] * 50


def test_a_stratified_resample_is_the_same_for_the_same_seed() -> None:
    from specviz.metrics.bootstrap import stratified_sums

    stratum = np.asarray([0, 0, 0, 1, 1])
    values = {"x": np.asarray([1.0, 2.0, 3.0, 10.0, 20.0])}
    first = stratified_sums(values, stratum, 20, [3])["x"]
    assert first.tolist() == stratified_sums(values, stratum, 20, [3])["x"].tolist()
    assert first.tolist() != stratified_sums(values, stratum, 20, [4])["x"].tolist()


def test_one_resample_is_enough_for_an_interval() -> None:
    iv = bootstrap_ratio(np.asarray([1.0, 2.0]), np.ones(2), n_boot=1)
    assert iv.estimate == 1.5
    assert iv.low == iv.high


def test_an_interval_defaults_to_95_percent_and_seed_0() -> None:
    x, ones = np.asarray([1.0, 5.0, 2.0, 8.0, 3.0]), np.ones(5)
    assert bootstrap_ratio(x, ones, n_boot=200) == bootstrap_ratio(
        x, ones, n_boot=200, level=0.95, seed=0
    )


def test_a_ratio_over_a_zero_denominator_warns_of_nothing() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iv = bootstrap_ratio(np.asarray([1.0, 0.0]), np.zeros(2), n_boot=20)
    assert math.isnan(iv.low) and math.isnan(iv.high)


def test_bootstrap_by_orders_groups_with_no_group_last_and_seeds_each_by_its_place() -> None:
    import polars as pl

    values = {"b": [1.0, 4.0, 9.0, 16.0, 25.0], None: [2.0, 3.0, 5.0, 7.0, 11.0]}
    values["a"] = [1.0, 2.0, 4.0, 8.0, 16.0]
    frame = pl.DataFrame(
        {
            "task": [t for t in values for _ in values[t]],
            "x": [v for t in values for v in values[t]],
        }
    )
    out = bootstrap_by(frame, "task", "x", n_boot=50, level=0.8, seed=5)
    assert out["task"].to_list() == ["a", "b", None]
    assert out.columns == ["task", "n", "estimate", "low", "high"]
    assert out["n"].to_list() == [5, 5, 5]
    for i, (task, row) in enumerate(zip(("a", "b", None), out.iter_rows(), strict=True)):
        x = np.asarray(values[task])
        iv = bootstrap_ratio(x, np.ones(5), n_boot=50, level=0.8, seed=[5, i])
        assert row[2:] == (iv.estimate, iv.low, iv.high)


def test_an_interval_of_bootstrap_itself_defaults_to_95_percent_and_seed_0() -> None:
    columns = {"x": np.asarray([1.0, 5.0, 2.0, 8.0, 3.0])}
    mean = lambda s: s["x"] / 5  # noqa: E731
    assert bootstrap(columns, mean, n_boot=200) == bootstrap(
        columns, mean, n_boot=200, level=0.95, seed=0
    )


def test_bootstrap_by_of_no_rows_keeps_its_columns_and_their_types() -> None:
    import polars as pl

    frame = pl.DataFrame(
        {"task": pl.Series([], dtype=pl.Int32), "x": pl.Series([], dtype=pl.Float64)}
    )
    out = bootstrap_by(frame, "task", "x", n_boot=10)
    assert out.schema == {
        "task": pl.Int32,
        "n": pl.Int64,
        "estimate": pl.Float64,
        "low": pl.Float64,
        "high": pl.Float64,
    }


def test_resampling_refuses_columns_of_unequal_length_and_no_rows_naming_the_problem() -> None:
    from specviz.metrics.bootstrap import resampled_sums

    with pytest.raises(ValueError) as caught:
        resampled_sums({"a": np.ones(3), "b": np.ones(2)}, 5, 0)
    assert str(caught.value) == "all columns need the same length, got [2, 3]"
    with pytest.raises(ValueError) as caught:
        resampled_sums({"a": np.ones(0)}, 5, 0)
    assert str(caught.value) == "cannot bootstrap an empty set of requests"


def test_a_resample_too_large_for_one_chunk_is_drawn_chunk_by_chunk() -> None:
    from specviz.metrics.bootstrap import resampled_sums

    # 200,000 rows: 10 resamples a chunk (2,000,000 elements), 25 resamples in three chunks
    sums = resampled_sums({"ones": np.ones(200_000)}, 25, 0)["ones"]
    assert sums.tolist() == [200_000.0] * 25
