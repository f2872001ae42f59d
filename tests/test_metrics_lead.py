"""Which term leads the answer is a typed result of specviz.metrics.lead, with no English
(tests/test_multitask_answer.py checks the sentences on a recorded study)."""

from __future__ import annotations

from specviz.metrics.answer import FINDING, NOISE, Term
from specviz.metrics.lead import Lead, StreamTerms, TuningLoss, lead, tuning_loss
from specviz.metrics.speedup import BASELINE


def term(part: str, status: str = FINDING, pct: float = 2.0) -> Term:
    return Term(part, status, pct, None, None)


def stream(
    *terms: Term,
    drafter: str = "prompt-lookup",
    multitask_pct: float | None = 1.0,
    every_task_best_k: tuple[int, ...] = (5,),
) -> StreamTerms:
    return StreamTerms(drafter, terms, multitask_pct, "5", every_task_best_k)


def test_the_largest_multitask_finding_leads_never_tuning_and_ties_go_to_the_first_stream():
    streams = [
        stream(term("composition", FINDING, 9.0), drafter=BASELINE),
        stream(term("tuning", FINDING, 9.0), term("composition", FINDING, -3.0)),
        stream(term("composition", FINDING, 3.0), term("residual", FINDING, 1.0)),
    ]
    assert lead(streams) == Lead(1, 1, FINDING, "composition", -3.0)


def test_a_named_finding_leads_before_a_larger_residual_which_leads_only_alone():
    streams = [
        stream(term("residual", FINDING, -3.5), term("carry_over", FINDING, -1.2)),
        stream(term("residual", FINDING, 2.0), term("drafter_memory", FINDING, -2.1)),
    ]
    assert lead(streams) == Lead(1, 1, FINDING, "drafter_memory", -2.1)
    only_residual = [stream(term("residual", FINDING, -3.5), term("carry_over", NOISE, -9.0))]
    assert lead(only_residual) == Lead(0, 0, FINDING, "residual", -3.5)


def test_without_a_finding_the_largest_multitask_extra_time_leads():
    streams = [
        stream(term("residual", NOISE), multitask_pct=1.0),
        stream(term("residual", NOISE), multitask_pct=-4.0),
        stream(term("residual"), drafter=BASELINE, multitask_pct=9.0),
    ]
    assert lead(streams) == Lead(1, None, NOISE, "total", -4.0)
    assert lead(streams[2:]) is None  # no drafted stream


def test_a_tuning_loss_says_whether_the_better_k_is_every_task_s_best():
    assert tuning_loss(stream(term("tuning"))) == TuningLoss(term("tuning"), True)
    together = tuning_loss(stream(term("tuning"), every_task_best_k=(2, 5)))
    assert together is not None and not together.every_task
    assert tuning_loss(stream(term("tuning", FINDING, -1.0))) is None  # k is better, not worse
    assert tuning_loss(stream(term("tuning", NOISE))) is None
    assert tuning_loss(stream(term("tuning"), drafter=BASELINE)) is None
