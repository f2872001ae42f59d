"""Decomposition of the multitask stream's extra seconds; every expected value worked by hand.

Two tasks A and B, two prompts each, 10 tokens per request. Single-task seconds per token:
A: 0.10 at k=2, 0.08 at k=4; B: 0.10 at k=2, 0.12 at k=4. So A's best k is 4, B's is 2.
"""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import (
    MissingCounterpartError,
    NoMultitaskStreamError,
    degradation,
    degradation_long,
    single_task_best_k,
)
from specviz.metrics.synthetic import requests_from_rows

SPT = {("A", 2): 0.10, ("A", 4): 0.08, ("B", 2): 0.10, ("B", 4): 0.12}
PROMPTS = ["A0", "B0", "A1", "B1"]


def single_rows(policy: str = "constant", spt: dict = SPT) -> list[dict]:
    return [
        dict(
            run_id=f"{policy}-{cat}-{k}",
            mixture=cat,
            category=cat,
            k=k,
            policy=policy,
            prompt_id=f"{cat}{i}",
            new_tokens=10,
            wall_s=10 * v,
        )
        for (cat, k), v in spt.items()
        for i in range(2)
    ]


def multi_rows(
    policy: str = "constant",
    slowdown: float = 1.1,
    prompts=PROMPTS,
    k: int = 4,
    spt: dict = SPT,
    tokens: int = 10,
) -> list[dict]:
    return [
        dict(
            run_id=f"{policy}-mix-{k}",
            mixture="mix",
            category=p[0],
            k=k,
            policy=policy,
            prompt_id=p,
            new_tokens=tokens,
            wall_s=tokens * spt[(p[0], k)] * slowdown,
        )
        for p in prompts
    ]


def only(frame: pl.DataFrame, **where) -> dict:
    out = frame.filter(*[pl.col(c) == v for c, v in where.items()])
    assert out.height == 1
    return out.row(0, named=True)


def assert_parts_add_up(r: dict) -> None:
    parts = r["composition"] + r["k_mismatch"] + r["carry_over"] + r["residual"]
    assert parts == pytest.approx(r["total"], abs=1e-12)
    assert r["total"] == pytest.approx(r["multitask_s"] - r["reference_s"], abs=1e-12)


def test_constant_policy_has_zero_carry_over_by_construction():
    r = only(degradation(requests_from_rows(single_rows() + multi_rows()), n_boot=200))
    # T_M = 1.1 * 10 * (0.08 + 0.12 + 0.08 + 0.12) = 4.4; T_S(k=4) = 4.0
    # T_S* (A at 4, B at 2) = 10 * (0.08 + 0.10 + 0.08 + 0.10) = 3.6
    # reference: the tuned single-task runs A@4 and B@2: 3.6 s for 40 tokens -> 0.09 s/token
    assert r["multitask_s"] == pytest.approx(4.4)
    assert r["single_task_s"] == pytest.approx(4.0)
    assert r["tuned_single_task_s"] == pytest.approx(3.6)
    assert r["reference_s"] == pytest.approx(3.6)
    assert r["best_k"] == "A=4, B=2"
    assert r["control"] == "not needed"
    assert r["composition"] == pytest.approx(0.0, abs=1e-12)
    assert r["k_mismatch"] == pytest.approx(0.4)
    assert r["carry_over"] == 0.0
    assert (r["carry_over_low"], r["carry_over_high"]) == (0.0, 0.0)
    assert r["residual"] == pytest.approx(0.4)
    assert r["total"] == pytest.approx(0.8)
    assert_parts_add_up(r)


def test_a_mix_weighting_the_easier_task_has_negative_composition():
    rows = single_rows() + multi_rows(prompts=["A0", "A1", "B0"], slowdown=1.0)
    r = only(degradation(requests_from_rows(rows), n_boot=100))
    # T_S* = 10 * (0.08 + 0.08 + 0.10) = 2.6; reference = 30 tokens * 0.09 = 2.7
    assert r["composition"] == pytest.approx(-0.1)
    # T_S(k=4) = 10 * (0.08 + 0.08 + 0.12) = 2.8 -> k mismatch 0.2; T_M = T_S -> residual 0
    assert r["k_mismatch"] == pytest.approx(0.2)
    assert r["residual"] == pytest.approx(0.0, abs=1e-12)
    assert_parts_add_up(r)


def test_persistent_policy_carry_over_is_what_the_constant_control_does_not_explain():
    heur_spt = {("A", 2): 0.09, ("A", 4): 0.07, ("B", 2): 0.10, ("B", 4): 0.11}
    rows = single_rows() + multi_rows(slowdown=1.1)
    rows += single_rows("heuristic", heur_spt) + multi_rows("heuristic", 1.3, spt=heur_spt)
    out = degradation(requests_from_rows(rows), n_boot=300)
    r = only(out, policy="heuristic")
    t_s = 10 * (0.07 + 0.11 + 0.07 + 0.11)  # 3.6
    assert r["control"] == "constant"
    assert r["single_task_s"] == pytest.approx(t_s)
    # gap 0.3 * T_S; the control's relative gap is 0.1 -> residual 0.1 * T_S, carry-over 0.2 * T_S
    assert r["residual"] == pytest.approx(0.1 * t_s)
    assert r["carry_over"] == pytest.approx(0.2 * t_s)
    assert r["carry_over_low"] > 0
    assert_parts_add_up(r)
    assert_parts_add_up(only(out, policy="constant"))


def test_persistent_policy_slowing_down_like_its_control_has_zero_carry_over():
    rows = single_rows() + multi_rows(slowdown=1.1)
    rows += single_rows("heuristic") + multi_rows("heuristic", 1.1)
    r = only(degradation(requests_from_rows(rows), n_boot=100), policy="heuristic")
    assert r["carry_over"] == pytest.approx(0.0, abs=1e-12)
    assert r["residual"] == pytest.approx(0.4)


def test_persistent_policy_without_control_leaves_carry_over_unknown():
    rows = single_rows("heuristic") + multi_rows("heuristic", 1.3)
    r = only(degradation(requests_from_rows(rows), n_boot=50))
    assert r["control"] == "missing"
    assert r["carry_over"] is None and r["residual"] is None
    assert r["composition"] + r["k_mismatch"] == pytest.approx(
        r["single_task_s"] - r["reference_s"]
    )
    assert r["total"] == pytest.approx(r["multitask_s"] - r["reference_s"])


def test_counterparts_are_scaled_to_the_multitask_token_counts():
    # sampling: the multitask request of each prompt produced 12 tokens instead of 10
    r = only(degradation(requests_from_rows(single_rows() + multi_rows(tokens=12)), n_boot=50))
    assert r["tokens"] == 48
    assert r["single_task_s"] == pytest.approx(12 * (0.08 + 0.12) * 2)
    assert r["reference_s"] == pytest.approx(48 * 0.09)
    assert_parts_add_up(r)


def test_missing_single_task_counterpart_is_an_error_naming_the_prompt():
    rows = single_rows() + multi_rows(prompts=["A0", "B0", "A7"], spt=SPT | {("A", 4): 0.08})
    with pytest.raises(MissingCounterpartError, match="A7"):
        degradation(requests_from_rows(rows))


def test_requests_without_a_multitask_stream_are_an_error_saying_what_is_needed():
    with pytest.raises(NoMultitaskStreamError, match="several categories"):
        degradation(requests_from_rows(single_rows()))


def test_k_values_not_run_on_all_prompts_of_a_task_are_not_candidates():
    rows = [
        r
        for r in single_rows()
        if not (r["category"] == "B" and r["k"] == 2 and r["prompt_id"] == "B1")
    ]
    r = only(degradation(requests_from_rows(rows + multi_rows()), n_boot=50))
    assert r["best_k"] == "A=4, B=4"
    assert r["k_mismatch"] == pytest.approx(0.0)


def test_single_task_best_k_table_marks_the_fastest_k_per_task():
    t = single_task_best_k(requests_from_rows(single_rows()))
    best = t.filter(pl.col("best")).select("category", "k").rows()
    assert best == [("A", 4), ("B", 2)]
    assert only(t, category="A", k=4)["tokens_per_s"] == pytest.approx(12.5)


def test_long_form_parts_keep_values_and_shares():
    table = degradation(requests_from_rows(single_rows() + multi_rows()), n_boot=50)
    long = degradation_long(table)
    assert long["part"].to_list() == [
        "composition",
        "k_mismatch",
        "carry_over",
        "residual",
        "total",
    ]
    assert long["seconds"].to_list() == pytest.approx([0.0, 0.4, 0.0, 0.4, 0.8], abs=1e-12)
    assert long["share"].to_list() == pytest.approx([0.0, 0.5, 0.0, 0.5, 1.0], abs=1e-12)
