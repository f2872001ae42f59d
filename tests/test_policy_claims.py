"""Claims about the cost-aware policy's belief that only partial acceptance can test: a round
counts at most one rejection (the first rejected draft ends it; later drafts were never judged).
"""

from __future__ import annotations

import math

import pytest

from specviz.config import PolicyConfig
from specviz.cost import CostModel
from specviz.policies import CostAware, _Belief, build_policy


def costs(verify: list[float], draft: float) -> CostModel:
    return CostModel(tuple(verify), {"suffix": tuple(draft * n for n in range(5))})


def test_a_round_with_one_of_four_accepted_counts_one_rejection():
    policy = CostAware(4, costs([1.0] * 5, 0.05), "suffix")
    policy.start_request("coding")
    policy.update(4, 4, 1)
    belief = policy.beliefs["coding"]
    assert (belief.accepted, belief.rejected) == (1.0, 1.0)


def test_a_round_with_every_draft_accepted_counts_no_rejection():
    belief = _Belief()
    belief.observe(4, 4, decay=0.5)
    belief.observe(4, 4, decay=0.5)
    assert (belief.accepted, belief.rejected) == (4 * 0.5 + 4, 0.0)


def test_past_rounds_weigh_less_by_the_decay_each_round():
    belief = _Belief()
    belief.observe(3, 0, decay=0.5)  # one rejection
    belief.observe(3, 2, decay=0.5)  # two accepted, one rejection
    assert (belief.accepted, belief.rejected) == (2.0, 0.5 + 1.0)


def test_one_accepted_of_four_every_round_keeps_drafting_three():
    # 30 rounds of 4 drafted / 1 accepted: alpha is about 1/2 (one accepted and one rejected
    # token per round). Counting the three unjudged drafts as rejections would put alpha near
    # 1/4 and the choice at k = 0.
    policy = CostAware(4, costs([1.0, 1.6, 1.9, 1.4, 2.0], 0.05), "suffix")
    policy.start_request("coding")
    for _ in range(30):
        policy.update(4, 4, 1)
    assert policy.alpha() == pytest.approx(0.5, abs=0.03)
    assert policy.next_k() == 3


@pytest.mark.parametrize(
    "kind",
    ["constant", "heuristic", "heuristic-per-request", "heuristic-per-task", "svip", "confidence"],
)
def test_a_built_policy_is_named_as_its_config_kind(kind):
    assert build_policy(PolicyConfig(kind, 3)).name == kind


def test_a_built_cost_aware_policy_prices_with_the_model_it_was_given():
    model = costs([1.0, 1.5, 2.0, 2.5, 3.0], 0.2)
    policy = build_policy(PolicyConfig("cost-aware", 4), model, drafter="suffix")
    assert isinstance(policy, CostAware) and policy.name == "cost-aware"
    assert (policy.k_max, policy.draft_cost(2), policy.verify_cost(3)) == (4, 0.4, 2.0)
    assert not policy.shadows  # drafting one token costs a fifth of a one-row verify


def flat(draft: tuple[float, ...] = (0.0,) * 5) -> CostModel:
    return CostModel((1.0,) * 5, {"suffix": draft})


def test_drafting_nothing_costs_nothing_even_when_a_draft_call_has_a_fixed_cost():
    policy = CostAware(4, flat((0.3, 0.4, 0.5, 0.6, 0.7)), "suffix")
    assert (policy.draft_cost(0), policy.draft_cost(1), policy.draft_cost(4)) == (0.0, 0.4, 0.7)


def test_a_task_without_evidence_has_the_priors_mean_and_lower_quartile():
    policy = CostAware(4, flat(), "suffix")
    policy.start_request("new")
    a, b = 0.5, 2.0
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    assert policy.alpha() == pytest.approx(0.2)
    assert policy.cautious_alpha() == pytest.approx(0.2 - 0.674 * sd)


def test_the_cautious_alpha_is_the_beta_mean_less_0674_standard_deviations():
    policy = CostAware(4, flat(), "suffix")
    policy.start_request("t")
    policy.beliefs["t"] = _Belief(accepted=9.5, rejected=3.0)
    a, b = 10.0, 5.0
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    assert policy.cautious_alpha() == pytest.approx(a / (a + b) - 0.674 * sd, abs=1e-12)


def test_when_every_k_is_worth_the_same_the_smallest_k_wins():
    # a belief of alpha = 0: every k emits one token per round, at the same (flat) cost
    policy = CostAware(4, flat(), "suffix", prior=(0.0, 1.0))
    policy.start_request("t")
    assert policy.cautious_alpha() == 0.0
    assert policy.next_k() == 0


def test_a_probe_drafts_the_best_k_of_at_least_one():
    policy = CostAware(4, costs([1.0, 2.0, 2.5, 3.0, 3.5], 0.05), "suffix")
    policy.start_request("t")
    for _ in range(policy.probe_every):
        policy.update(0, 0, 0)
    assert (
        policy.next_k() == 1
    )  # the costlier the round, the worse: the probe is as cheap as can be


def test_a_drafting_round_that_accepted_ends_the_probe_back_off():
    policy = CostAware(4, costs([1.0, 2.0, 2.5, 3.0, 3.5], 0.05), "suffix")
    policy.start_request("t")
    policy.beliefs["t"] = _Belief(accepted=5.0, rejected=1.0, failed_probes=3)
    policy.update(2, 2, 0)  # not a probe (no idle rounds), nothing accepted: the back-off stays
    assert policy.beliefs["t"].failed_probes == 3
    policy.update(2, 2, 1)  # one accepted: the task drafts again, probes start afresh
    assert policy.beliefs["t"].failed_probes == 0


def test_a_round_whose_drafter_had_nothing_to_propose_leaves_the_belief_as_it_was():
    policy = CostAware(4, costs([1.0, 2.0, 2.5, 3.0, 3.5], 0.05), "suffix")
    policy.start_request("t")
    policy.update(3, 3, 2)
    before = (policy.beliefs["t"].accepted, policy.beliefs["t"].rejected)
    policy.update(3, 0, 0)  # asked for 3, the drafter found none (no decay, no rejection)
    assert (policy.beliefs["t"].accepted, policy.beliefs["t"].rejected) == before
