"""What a study establishes is a typed result computed in specviz.metrics.answer; the report only
renders it (tests/test_report_summary.py checks the sentences)."""

from __future__ import annotations

import pytest

from specviz.metrics.answer import (
    FINDING,
    NOISE,
    NOT_ESTIMABLE,
    UNMEASURED,
    ZERO,
    ChangingLoad,
    MixTask,
    Term,
    WallLoad,
    changing_load,
    classify_term,
    mix_tasks,
    stream_figures,
    wall_load,
)
from specviz.metrics.degradation import ThinTask

ROW = {"reference_s": 10.0, "control": "constant"}
THIN = [{"category": "coding", "requests": 1}]


def residual(value, low, high, **extra) -> Term:
    row = ROW | {"residual": value, "residual_low": low, "residual_high": high} | extra
    return classify_term(row, "residual")


def test_a_term_is_classified_in_one_order_of_precedence():
    assert residual(None, None, None).status == UNMEASURED
    assert residual(0.0, 0.0, 0.0, thin_tasks=THIN).status == ZERO  # zero needs no interval
    thin = residual(1.0, 1.0, 1.0, thin_tasks=THIN)
    assert thin == Term("residual", NOT_ESTIMABLE, 10.0, None, None, None,
                        (ThinTask("coding", 1),), True)  # fmt: skip
    assert residual(1.0, 0.2, 1.5).status == FINDING
    noise = residual(0.1, -0.4, 0.6)
    assert noise.status == NOISE and noise.detectable_pct == pytest.approx(5.0)


def test_a_thin_control_makes_the_residual_not_estimable():
    term = residual(1.0, 0.2, 1.5, control_thin_tasks=THIN)
    assert term.status == NOT_ESTIMABLE and term.thin_tasks == (ThinTask("coding", 1),)


def test_wall_load_without_load_factors_is_steady_and_allows_the_half_width():
    wall = {"reference_s": 10.0, "total_low": 1.0, "total_high": 2.0}
    load = wall_load(None, wall)
    assert not load.changing and load.allowed_pct == pytest.approx(5.0) and load.loads is None
    shifted = {"load_shift": 0.08, "multitask_load": 1.2, "single_task_load": 1.0,
               "min_load": 1.0, "max_load": 1.3}  # fmt: skip
    assert wall_load(shifted, wall).changing  # 8% shift > 5% allowed


def test_wall_load_allows_nothing_when_the_wall_interval_is_not_estimable():
    # one request of coding: the wall-clock interval is zero-wide, not a half-width to allow
    wall = {"reference_s": 10.0, "total_low": 1.0, "total_high": 1.0, "thin_tasks": THIN}
    shifted = {"load_shift": 0.02, "multitask_load": 1.02, "single_task_load": 1.0,
               "min_load": 1.0, "max_load": 1.1}  # fmt: skip
    load = wall_load(shifted, wall)
    assert load.allowed_pct is None and load.changing


def test_changing_load_counts_the_streams_and_spans_how_far_load_moves_them():
    loads = [WallLoad(True, 8.0, 5.0), WallLoad(False, 1.0, 5.0), WallLoad(True, -12.0, 3.0)]
    assert changing_load(loads) == ChangingLoad(2, 3, -12.0, 8.0)
    assert changing_load(loads[1:2]) is None  # every wall clock held steady


def test_mix_tasks_put_the_task_that_makes_the_mix_hardest_first():
    tasks = [
        {"category": "a", "share": 0.2, "reference_share": 0.5, "reference_spt": 1.0,
         "rate": 2.0, "shares_s": 0.3},
        {"category": "b", "share": 0.8, "reference_share": 0.5, "reference_spt": 3.0,
         "rate": 2.0, "shares_s": 0.3 + 0.6},
    ]  # fmt: skip
    out = mix_tasks(tasks, reference_s=3.0)
    assert out[0] == MixTask("b", 0.8, 0.5, 1.5, pytest.approx(30.0))
    assert [t.category for t in out] == ["b", "a"]


def test_stream_figures_give_no_total_interval_when_a_task_has_one_request():
    row = {"reference_s": 10.0, "control": "not needed", "total": 1.0, "total_low": 1.0,
           "total_high": 1.0, "composition": 0.5, "tuning": 0.2, "k_mismatch": 0.0,
           "carry_over": 0.0, "residual": 0.3, "multitask_tokens_per_s": 50.0,
           "multitask_s": 4.0, "best_k": "coding=5, writing=2"}  # fmt: skip
    wall = row | {"multitask_s": 5.0, "multitask_tokens_per_s": 40.0}
    steady = stream_figures(row, wall)
    assert steady.total_low_pct == steady.total_high_pct == 10.0  # as the rows say
    assert steady.multitask_pct == pytest.approx(8.0)  # composition + k mismatch + ... residual
    assert steady.modelled_over_wall == pytest.approx(0.8)
    assert steady.every_task_best_k == (2, 5)
    thin = stream_figures(row | {"thin_tasks": THIN}, wall)
    assert thin.total_low_pct is None and thin.wall_total_high_pct is None
    assert thin.total_thin_tasks == (ThinTask("coding", 1),)
