"""Decomposition of the multitask stream's extra seconds; every expected value worked by hand.

Two tasks A and B, two prompts each, 10 tokens per request. Single-task seconds per token
(unless a test says otherwise):
A: 0.10 at k=2, 0.08 at k=4; B: 0.10 at k=2, 0.12 at k=4. So A's best k is 4, B's is 2.
"""

from __future__ import annotations

from math import copysign

import polars as pl
import pytest

from specviz.metrics import (
    MissingCounterpartError,
    NoMultitaskStreamError,
    composition_by_task,
    degradation,
    degradation_long,
    single_task_best_k,
)
from specviz.metrics.degradation import (
    TERM_LABELS,
    TERMS,
    ThinTask,
    _ns,
    request_parts,
    thin_tasks_of_term,
)
from specviz.metrics.synthetic import requests_from_rows
from specviz.rundir import SchemaError

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
    parts = r["composition"] + r["tuning"] + r["k_mismatch"] + r["carry_over"] + r["residual"]
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
    # one k for both tasks: k=4 and k=2 both cost 2.0 s on each half; the tie keeps the
    # stream's own k, so T_S1 = T_S: no tuning loss; sharing one k costs 0.4
    assert r["best_single_k"] == "4"
    assert r["single_k_s"] == pytest.approx(4.0)
    assert r["tuning"] == 0.0
    assert r["k_mismatch"] == pytest.approx(0.4)
    assert r["carry_over"] == 0.0
    assert (r["carry_over_low"], r["carry_over_high"]) == (0.0, 0.0)
    assert r["residual"] == pytest.approx(0.4)
    assert r["total"] == pytest.approx(0.8)
    assert_parts_add_up(r)


def test_request_parts_are_each_requests_figures_and_sum_to_its_streams_row():
    requests = requests_from_rows(single_rows() + multi_rows())
    parts = request_parts(requests).sort("request_index")
    # per request (10 tokens, k = 4, 1.1 x slower than single-task): t_m = 11 spt(c, 4),
    # t_s = 10 spt(c, 4), t_s_best at A's k* 4 and B's k* 2, t_s_single at the one k 4;
    # rate: the tuned reference's 0.09 s per token
    assert parts["prompt_id"].to_list() == PROMPTS
    assert parts["category"].to_list() == ["A", "B", "A", "B"]
    assert parts["n"].to_list() == [10.0] * 4
    assert parts["t_m"].to_list() == pytest.approx([0.88, 1.32, 0.88, 1.32])
    assert parts["t_s"].to_list() == pytest.approx([0.8, 1.2, 0.8, 1.2])
    assert parts["t_s_best"].to_list() == pytest.approx([0.8, 1.0, 0.8, 1.0])
    assert parts["t_s_single"].to_list() == pytest.approx([0.8, 1.2, 0.8, 1.2])
    assert parts["rate"].to_list() == pytest.approx([0.09] * 4)
    assert set(parts["mixture"].to_list()) == {"mix"} and set(parts["k"].to_list()) == {4}
    assert set(parts["run_id"].to_list()) == {"constant-mix-4"}
    row = only(degradation(requests, n_boot=50))
    assert parts["t_m"].sum() == pytest.approx(row["multitask_s"])
    assert (parts["n"] * parts["rate"]).sum() == pytest.approx(row["reference_s"])


def two_temperatures() -> pl.DataFrame:
    """Two streams: one of an unknown temperature (null: a server that does not say), one at
    temperature 0 whose single-task runs took twice as long (rate 0.18 s per token)."""

    def at(rows, temperature, scale):
        return [
            {**r, "run_id": f"{r['run_id']}-{temperature}", "temperature": temperature,
             "wall_s": r["wall_s"] * scale}
            for r in rows
        ]  # fmt: skip

    rows = at(single_rows() + multi_rows(), None, 1.0) + at(single_rows() + multi_rows(), 0.0, 2.0)
    return requests_from_rows(rows)


def test_request_parts_give_each_stream_its_own_rate_a_null_configuration_value_included():
    parts = request_parts(two_temperatures())
    assert parts.height == 8
    rate = dict(parts.group_by("temperature").agg(pl.col("rate").unique()).iter_rows())
    assert rate[None] == pytest.approx([0.09]) and rate[0.0] == pytest.approx([0.18])


def test_streams_are_ordered_by_configuration_with_a_null_value_last():
    table = degradation(two_temperatures(), n_boot=50)
    assert table["temperature"].to_list() == [0.0, None]
    assert table["requests"].to_list() == [4, 4]
    assert table["reference_s"].to_list() == pytest.approx([7.2, 3.6])
    # N / T_M and 1 / rate: 40 tokens in 8.8 s and 4.4 s; 1 / 0.18 and 1 / 0.09
    assert table["multitask_tokens_per_s"].to_list() == pytest.approx([40 / 8.8, 40 / 4.4])
    assert table["reference_tokens_per_s"].to_list() == pytest.approx([1 / 0.18, 1 / 0.09])
    assert table.schema["requests"] == pl.Int64 and table.schema["tokens"] == pl.Float64


def test_a_stream_of_one_prompt_per_task_chooses_its_single_k_in_sample():
    # no other half to choose on: k = 4 and k = 2 both cost 2.0 s; the tie keeps the stream's k
    r = only(degradation(requests_from_rows(single_rows() + multi_rows(prompts=["A0", "B0"]))))
    assert r["best_single_k"] == "4"


def test_a_controlled_term_names_the_thin_tasks_of_both_the_stream_and_its_control():
    row = {
        "control": "constant",
        "thin_tasks": [{"category": "B", "requests": 1}],
        "control_thin_tasks": [{"category": "A", "requests": 1}],
    }
    assert thin_tasks_of_term(row, "carry_over") == (ThinTask("A", 1), ThinTask("B", 1))
    assert thin_tasks_of_term(row, "composition") == (ThinTask("B", 1),)


def test_request_parts_of_requests_without_a_multitask_stream_is_empty_with_a_rate_column():
    parts = request_parts(requests_from_rows(single_rows()))
    assert parts.height == 0
    assert parts.columns[-5:] == ["t_m", "t_s", "t_s_best", "t_s_single", "rate"]
    assert parts.schema["rate"] == pl.Float64


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
    assert r["composition"] + r["tuning"] + r["k_mismatch"] == pytest.approx(
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
        "tuning",
        "k_mismatch",
        "carry_over",
        "residual",
        "total",
    ]
    assert long["seconds"].to_list() == pytest.approx([0.0, 0.0, 0.4, 0.0, 0.4, 0.8], abs=1e-12)
    assert long["share"].to_list() == pytest.approx([0.0, 0.0, 0.5, 0.0, 0.5, 1.0], abs=1e-12)


def long_input(total: float) -> pl.DataFrame:
    """A degradation() table of one stream, by hand: part i is i seconds, bounds -/+ 0.5."""
    row = {"target": "t", "temperature": 0.0, "drafter": "d", "policy": "p", "k": 2, "mixture": "m"}
    for i, part in enumerate(TERMS):
        row |= {part: float(i), f"{part}_low": i - 0.5, f"{part}_high": i + 0.5}
    row |= {"total": total, "total_low": total - 0.5, "total_high": total + 0.5}
    return pl.DataFrame([row])


def test_long_form_has_each_parts_bounds_and_a_share_of_every_nonzero_total():
    long = degradation_long(long_input(1.0))
    assert long.columns == [
        *("target", "temperature", "drafter", "policy", "k", "mixture"),
        *("part", "seconds", "low", "high", "share"),
    ]
    assert long["part"].to_list() == [*TERMS, "total"]
    assert long["low"].to_list() == [-0.5, 0.5, 1.5, 2.5, 3.5, 0.5]
    assert long["high"].to_list() == [0.5, 1.5, 2.5, 3.5, 4.5, 1.5]
    # a total of exactly 1 s is a total like any other: each share is its part's seconds
    assert long["share"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, 1.0]
    assert long["mixture"].to_list() == ["m"] * 6
    assert degradation_long(long_input(0.0))["share"].null_count() == 6


def test_a_table_that_is_not_a_decomposition_is_refused_naming_its_missing_columns():
    table = long_input(1.0).drop("residual_low", "residual_high")
    with pytest.raises(ValueError, match=r"missing columns residual_low, residual_high$"):
        degradation_long(table)


def prompt_rows(spt: dict[tuple[str, int], float], stream_k: int) -> list[dict]:
    """Single-task runs of every (prompt, k) in ``spt`` and one multitask stream at ``stream_k``
    (no slowdown), 10 tokens per request; a prompt's task is its first letter."""
    single = [
        dict(run_id=f"{p[0]}-{k}", mixture=p[0], category=p[0], k=k, policy="constant",
             prompt_id=p, new_tokens=10, wall_s=10 * v)
        for (p, k), v in spt.items()
    ]  # fmt: skip
    prompts = sorted({p for p, _ in spt})
    multi = [
        dict(run_id=f"mix-{stream_k}", mixture="mix", category=p[0], k=stream_k,
             policy="constant", prompt_id=p, new_tokens=10, wall_s=10 * spt[(p, stream_k)])
        for p in prompts
    ]  # fmt: skip
    return single + multi


def test_a_badly_chosen_k_is_tuning_and_sharing_one_best_k_is_no_mismatch():
    # every task is faster at k=4 (A: 0.08 < 0.10, B: 0.09 < 0.12), the stream runs k=2
    spt = {(f"{c}{i}", k): v for (c, k), v in
           {("A", 2): 0.10, ("A", 4): 0.08, ("B", 2): 0.12, ("B", 4): 0.09}.items()
           for i in range(2)}  # fmt: skip
    r = only(degradation(requests_from_rows(prompt_rows(spt, stream_k=2)), n_boot=100))
    # T_S = T_M = 10 * (0.10 + 0.12) * 2 = 4.4; on each half k=4 costs 1.7 s against 2.2 s,
    # so the best single k is 4 on both: T_S1 = 10 * (0.08 + 0.09) * 2 = 3.4 = T_S* (A=4, B=4)
    assert r["best_k"] == "A=4, B=4" and r["best_single_k"] == "4"
    assert r["single_task_s"] == pytest.approx(4.4)
    assert r["single_k_s"] == pytest.approx(3.4)
    assert r["tuned_single_task_s"] == pytest.approx(3.4)
    assert r["tuning"] == pytest.approx(1.0)
    # the same k is every task's best: sharing it costs nothing, exactly, in every resample
    assert (r["k_mismatch"], r["k_mismatch_low"], r["k_mismatch_high"]) == (0.0, 0.0, 0.0)
    # reference: A@4 and B@4 single-task, 3.4 s for 40 tokens -> composition 0
    assert r["composition"] == pytest.approx(0.0, abs=1e-12)
    assert r["total"] == pytest.approx(1.0)
    assert_parts_add_up(r)


def test_the_best_single_k_is_chosen_on_the_other_half_of_each_tasks_prompts():
    # halves (prompt_id order within each task): A0, B0 -> half 0; A1, B1 -> half 1
    spt = {("A0", 2): 0.10, ("A1", 2): 0.10, ("B0", 2): 0.10, ("B1", 2): 0.10,
           ("A0", 4): 0.06, ("A1", 4): 0.12, ("B0", 4): 0.10, ("B1", 4): 0.10}  # fmt: skip
    r = only(degradation(requests_from_rows(prompt_rows(spt, stream_k=4)), n_boot=100))
    # half 0 alone: k=2 costs 2.0, k=4 1.6 -> k=4; half 1 alone: k=2 2.0, k=4 2.2 -> k=2.
    # Cross-fitted, half 0 is scored with half 1's choice (k=2) and half 1 with half 0's (k=4):
    # T_S1 = 10 * (0.10 + 0.10 + 0.12 + 0.10) = 4.2 (in sample, k=4 everywhere would give 3.8)
    assert r["best_single_k"] == "2/4"
    assert r["single_k_s"] == pytest.approx(4.2)
    # T_S (k=4) = 10 * (0.06 + 0.12 + 0.10 + 0.10) = 3.8: the stream's k beats the held-out
    # choice, so tuning is negative: T_S - T_S1 = -0.4
    assert r["tuning"] == pytest.approx(-0.4)
    # each task's best k in sample: A 4 (1.8 < 2.0), B tie -> 2; T_S* = 1.8 + 2.0 = 3.8
    assert r["best_k"] == "A=4, B=2"
    assert r["k_mismatch"] == pytest.approx(0.4)
    assert_parts_add_up(r)


def test_composition_splits_exactly_into_each_tasks_share_and_prompts():
    rows = single_rows() + multi_rows(prompts=["A0", "A1", "B0"], slowdown=1.0)
    parts = composition_by_task(requests_from_rows(rows))
    a, b = only(parts, category="A"), only(parts, category="B")
    # reference: A@4 (0.08 s/token) and B@2 (0.10), 20 tokens each -> rate 0.09; the stream has
    # 30 tokens, 2/3 of them A (benchmark 1/2): A's extra share costs 0.01 s/token less than the
    # average, B's missing share 0.01 more: each 30 * (1/6) * 0.01 = 0.05 s saved
    assert (a["share"], a["reference_share"]) == pytest.approx((2 / 3, 0.5))
    assert a["rate"] == pytest.approx(0.09)
    assert a["shares_s"] == pytest.approx(-0.05) and b["shares_s"] == pytest.approx(-0.05)
    assert a["prompts_s"] == pytest.approx(0.0, abs=1e-12)
    total = parts["shares_s"].sum() + parts["prompts_s"].sum()
    assert total == pytest.approx(only(degradation(requests_from_rows(rows)))["composition"])


def test_a_tasks_prompts_cheaper_than_its_benchmarks_show_in_its_prompts_term():
    # A0 takes 0.06 s/token at k=4 and A1 0.10 (A's benchmark at k* = 4: 0.08); the stream has
    # A0 once and B0, B1 (B at k* = 2: 0.10): N = 30, w_A = 1/3, rate = 3.6 s / 40 = 0.09
    rows = single_rows()
    for r in rows:
        if r["run_id"] == "constant-A-4":
            r["wall_s"] = {"A0": 0.6, "A1": 1.0}[r["prompt_id"]]
    rows += multi_rows(prompts=["A0", "B0", "B1"], slowdown=1.0)
    parts = composition_by_task(requests_from_rows(rows))
    a, b = only(parts, category="A"), only(parts, category="B")
    assert (a["tokens"], b["tokens"]) == (10.0, 20.0)
    assert (a["spt"], a["reference_spt"]) == pytest.approx((0.06, 0.08))
    assert (b["spt"], b["reference_spt"]) == pytest.approx((0.10, 0.10))
    # prompts_s = N w_A (s_A - s'_A) = 30 * 1/3 * -0.02; shares_s = 30 * -1/6 * -0.01
    assert a["prompts_s"] == pytest.approx(-0.2)
    assert a["shares_s"] == pytest.approx(0.05) and b["shares_s"] == pytest.approx(0.05)
    assert b["prompts_s"] == pytest.approx(0.0, abs=1e-12)
    composition = only(degradation(requests_from_rows(rows), n_boot=50))["composition"]
    assert composition == pytest.approx(-0.1)


def test_composition_by_task_of_requests_without_a_multitask_stream_is_empty():
    assert composition_by_task(requests_from_rows(single_rows())).height == 0


def test_a_task_with_one_request_makes_every_term_of_its_stream_not_estimable():
    # B has one request in the stream: its within-task resamples always redraw it
    r = only(
        degradation(requests_from_rows(single_rows() + multi_rows(prompts=["A0", "B0", "A1"])))
    )
    assert r["thin_tasks"] == [{"category": "B", "requests": 1}]
    for part in ("total", "composition", "tuning", "k_mismatch", "residual"):
        assert thin_tasks_of_term(r, part) == (ThinTask("B", 1),)
    # the default prompts: two requests per task, every interval estimable
    r = only(degradation(requests_from_rows(single_rows() + multi_rows()), n_boot=100))
    assert r["thin_tasks"] == [] and thin_tasks_of_term(r, "total") == ()


def test_tasks_of_one_request_are_pooled_into_one_stratum_and_get_an_interval():
    # B and C have one request each: alone each would redraw itself in every resample (and A's
    # two requests cost the same), so the interval would be zero-wide; pooled, B0 and C0 trade
    # places across resamples and the interval has the spread of their different costs
    spt = SPT | {("C", 2): 0.10, ("C", 4): 0.10}
    rows = single_rows(spt=spt) + multi_rows(prompts=["A0", "A1", "B0", "C0"], spt=spt)
    r = only(degradation(requests_from_rows(rows), n_boot=200))
    assert r["thin_tasks"] == [] and thin_tasks_of_term(r, "total") == ()
    assert r["total_low"] < r["total"] < r["total_high"]


def test_a_thin_control_makes_only_carry_over_and_residual_not_estimable():
    rows = single_rows() + multi_rows(slowdown=1.1, prompts=["A0", "B0", "A1"])
    rows += single_rows("heuristic") + multi_rows("heuristic", 1.3)
    r = only(degradation(requests_from_rows(rows), n_boot=100), policy="heuristic")
    assert r["control"] == "constant" and r["thin_tasks"] == []
    assert r["control_thin_tasks"] == [{"category": "B", "requests": 1}]
    assert thin_tasks_of_term(r, "composition") == ()
    assert (
        thin_tasks_of_term(r, "carry_over")
        == thin_tasks_of_term(r, "residual")
        == (ThinTask("B", 1),)
    )


def test_ks_whose_costs_tie_to_the_nanosecond_tie_and_the_smaller_k_wins():
    # A costs the same at k=2 and k=4 but for float noise (0.1 + 0.2 against 0.3)
    spt = SPT | {("A", 2): 0.1 + 0.2, ("A", 4): 0.3}
    r = only(degradation(requests_from_rows(single_rows(spt=spt) + multi_rows(spt=spt)), n_boot=50))
    assert r["best_k"] == "A=2, B=2"


def test_every_term_has_one_chart_label_in_the_terms_order():
    assert tuple(TERM_LABELS) == TERMS


def test_decomposition_seconds_are_rounded_to_the_nanosecond_and_never_a_negative_zero():
    assert _ns(1.23456789012) == 1.234567890
    assert copysign(1.0, _ns(-1e-12)) == 1.0


def test_a_null_configuration_value_decomposes_like_a_known_one():
    # the null-temperature stream is the temperature-0 one at half the seconds
    table = degradation(two_temperatures(), n_boot=50)
    assert table["best_single_k"].to_list() == ["4", "4"]
    assert table["single_k_s"].to_list() == pytest.approx([8.0, 4.0])
    assert table["tuned_single_task_s"].to_list() == pytest.approx([7.2, 3.6])
    assert table["k_mismatch"].to_list() == pytest.approx([0.8, 0.4])


def repeats_rows() -> list[dict]:
    """Single-task repeats 0 (SPT) and 1 (three times slower) of every prompt, and a stream at
    k=4 of repeats 0, 1 and 2, all of an unknown (null) temperature."""
    single = [{**r, "repeat": rep, "wall_s": r["wall_s"] * (1 + 2 * rep), "temperature": None}
              for rep in (0, 1) for r in single_rows()]  # fmt: skip
    multi = [{**r, "repeat": rep, "temperature": None} for rep in (0, 1, 2) for r in multi_rows()]
    return single + multi


def test_each_repeat_is_priced_at_its_own_single_task_repeat_and_an_unmatched_one_pooled():
    parts = request_parts(requests_from_rows(repeats_rows())).sort("request_index")
    # repeat 0: 10 spt(c, 4); repeat 1: three times that; repeat 2 (not run single-task): the
    # pooled spt, sum W / sum N = (1 + 3) / 2 times repeat 0's
    one = [0.8, 1.2, 0.8, 1.2]
    assert parts["t_s"].to_list() == pytest.approx(
        one + [3 * t for t in one] + [2 * t for t in one]
    )


def test_per_request_seconds_are_rounded_to_the_nanosecond():
    spt = {("A", 4): 0.100000000037, ("B", 4): 0.100000000037}
    rows = single_rows(spt=spt) + multi_rows(spt=spt, slowdown=1.23456789012)
    parts = request_parts(requests_from_rows(rows))
    # t_m = 1.00000000037 x 1.23456789012 = 1.23456789058: 1.234567891; every t_s =
    # 1.00000000037: 1.0
    assert parts["t_m"].to_list() == [1.234567891] * 4
    for column in ("t_s", "t_s_best", "t_s_single"):
        assert parts[column].to_list() == [1.0] * 4, column


def test_ks_whose_costs_differ_by_less_than_half_a_nanosecond_tie():
    # every k=2 request costs 0.15 ns more than at k=4: a tie to the nanosecond, so the smaller
    # k is each task's best and the stream's own k (2) stays its single k
    spt = {("A", 2): 0.1 + 1.5e-11, ("A", 4): 0.1, ("B", 2): 0.1 + 1.5e-11, ("B", 4): 0.1}
    rows = single_rows(spt=spt) + multi_rows(k=2, spt=spt)
    r = only(degradation(requests_from_rows(rows), n_boot=50))
    assert (r["best_k"], r["best_single_k"]) == ("A=2, B=2", "2")


def test_a_stream_of_one_prompt_per_task_picks_the_single_k_cheapest_on_its_own_prompts():
    # at k=2 the stream costs 2.0 s, at k=4 1.9 s: no other half, so chosen in sample
    spt = SPT | {("B", 4): 0.11}
    rows = single_rows(spt=spt) + multi_rows(prompts=["A0", "B0"], k=2, spt=spt)
    r = only(degradation(requests_from_rows(rows), n_boot=50))
    assert r["best_single_k"] == "4"
    assert r["single_k_s"] == pytest.approx(1.9)


def test_the_decomposition_reads_the_clock_column_it_is_given():
    requests = requests_from_rows(single_rows() + multi_rows())
    doubled = requests.with_columns((pl.col("wall_s") * 2).alias("modelled_s"))
    r = only(degradation(doubled, seconds="modelled_s", n_boot=50))
    assert (r["multitask_s"], r["reference_s"]) == pytest.approx((8.8, 7.2))
    assert request_parts(doubled, seconds="modelled_s")["t_m"].sum() == pytest.approx(8.8)
    with pytest.raises(SchemaError, match="modelled_s"):
        degradation(requests, seconds="modelled_s")


NEEDED = ["target", "temperature", "drafter", "policy", "k", "run_id", "mixture", "category",
          "prompt_id", "repeat", "new_tokens", "wall_s", "request_id", "request_index"]  # fmt: skip


def test_the_decomposition_needs_only_its_columns_and_leaves_batched_requests_out():
    requests = requests_from_rows(single_rows() + multi_rows())
    full = only(degradation(requests, n_boot=50))
    assert only(degradation(requests.select(NEEDED), n_boot=50)) == full
    batched = requests_from_rows(
        [{**r, "run_id": "batched", "batch_size": 2, "wall_s": 9.0} for r in multi_rows()]
    )
    assert only(degradation(pl.concat([requests, batched]), n_boot=50)) == full


def test_a_task_with_three_prompts_alternates_them_between_the_two_halves():
    spt = {(f"{c}{i}", k): 0.1 for c in "AB" for i in range(3) for k in (2, 4)}
    parts = request_parts(requests_from_rows(prompt_rows(spt, stream_k=4)))
    assert parts["t_s_single"].to_list() == pytest.approx([1.0] * 6)
    r = only(degradation(requests_from_rows(prompt_rows(spt, stream_k=4)), n_boot=50))
    assert r["single_k_s"] == pytest.approx(6.0)


def test_the_default_seed_is_zero():
    rows = single_rows() + multi_rows()
    for row, slowdown in zip(rows[-4:], (1.0, 1.5, 1.2, 2.0), strict=True):
        row["wall_s"] *= slowdown  # requests of different extra seconds: a seed moves the bounds
    requests = requests_from_rows(rows)
    assert degradation(requests, n_boot=50).equals(degradation(requests, n_boot=50, seed=0))
    assert not degradation(requests, n_boot=50).equals(degradation(requests, n_boot=50, seed=1))


def test_the_decomposition_table_keeps_its_column_types_whatever_the_values():
    requests = requests_from_rows(single_rows() + multi_rows())
    table = degradation(requests, n_boot=50)
    # no control (a constant policy): every control_thin_tasks is null, still a list of structs
    assert table["control_thin_tasks"].to_list() == [None]
    assert table.schema["control_thin_tasks"] == table.schema["thin_tasks"]
    assert isinstance(table.schema["thin_tasks"], pl.List)
    assert table.schema["k"] == requests.schema["k"]
    assert table.schema["temperature"] == requests.schema["temperature"]


def test_a_request_table_missing_several_columns_is_refused_naming_them_all():
    requests = requests_from_rows(single_rows() + multi_rows()).drop("wall_s", "prompt_id")
    with pytest.raises(SchemaError, match=r"missing columns: .*prompt_id.*wall_s"):
        degradation(requests)
