"""What to do on a stream is a typed result of specviz.metrics.advice, with no English
(tests/test_multitask_answer.py checks the advice in words)."""

from __future__ import annotations

from specviz.metrics.advice import (
    CHANGE_K,
    DO_NOT_SPECULATE,
    KEEP_K,
    ROUTE_BY_TASK,
    Advice,
    advise,
)
from specviz.metrics.answer import FINDING, NOISE, Term


def term(part: str, status: str = FINDING, pct: float = 2.0) -> Term:
    return Term(part, status, pct, None, None)


SPECULATE = [{"category": "a", "speculate": True}, {"category": "b", "speculate": True}]


def test_the_oracle_s_routes_decide_first():
    losses = [term("tuning"), term("k_mismatch"), term("carry_over")]
    baseline = [{"category": "a", "speculate": False}, {"category": "b", "speculate": False}]
    assert advise(losses, baseline, False) == Advice(DO_NOT_SPECULATE)
    some = [{"category": "a", "speculate": True}, {"category": "b", "speculate": False}]
    assert advise(losses, some, True) == Advice(ROUTE_BY_TASK, speculate_on=("a",))


def test_established_losses_route_by_task_in_order_then_tuning_changes_k():
    losses = [term("tuning"), term("k_mismatch"), term("carry_over"), term("drafter_memory")]
    assert advise(losses, SPECULATE, False) == Advice(ROUTE_BY_TASK, term("drafter_memory"))
    assert advise(losses[:3], SPECULATE, False) == Advice(ROUTE_BY_TASK, term("carry_over"))
    mismatch = [*losses[:2], term("carry_over", NOISE)]
    assert advise(mismatch, SPECULATE, False) == Advice(ROUTE_BY_TASK, term("k_mismatch"))
    # a negative k mismatch is a gain, not a loss
    tuning = [term("tuning"), term("k_mismatch", FINDING, -2.0), term("carry_over", NOISE)]
    assert advise(tuning, SPECULATE, False) == Advice(CHANGE_K, term("tuning"))
    nothing = [term("tuning", NOISE), term("k_mismatch", NOISE), term("carry_over", NOISE)]
    assert advise(nothing, SPECULATE, False) == Advice(KEEP_K)
    assert advise(nothing, [], True) == Advice(KEEP_K)  # no routes: the terms decide
