"""Claims about the cost-aware policy's belief that only partial acceptance can test: a round
counts at most one rejection (the first rejected draft ends it; later drafts were never judged).
"""

from __future__ import annotations

import pytest

from specviz.cost import CostModel
from specviz.config import PolicyConfig
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
