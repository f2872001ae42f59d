"""Claims about :func:`specviz.policies.build_policy` for a cost-aware policy, written for the
mutants ``make mutation`` found surviving: it needs *both* a cost model and its drafter's name,
and says so in one line when either is missing."""

from __future__ import annotations

import pytest

from specviz.config import ConfigError, PolicyConfig
from specviz.cost import CostModel
from specviz.policies import CostAware, build_policy

MESSAGE = "policy cost-aware needs a cost model and its drafter's name"
COSTS = CostModel(verify_s=(1.0, 1.1, 1.2, 1.3, 1.4), draft_s={"suffix": (0.0, 0.1)})


def test_a_cost_aware_policy_without_a_cost_model_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        build_policy(PolicyConfig("cost-aware", 4), None, drafter="suffix")
    assert str(caught.value) == MESSAGE


def test_a_cost_aware_policy_without_its_drafters_name_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        build_policy(PolicyConfig("cost-aware", 4), COSTS)
    assert str(caught.value) == MESSAGE


def test_a_cost_aware_policy_with_both_is_built() -> None:
    assert isinstance(
        build_policy(PolicyConfig("cost-aware", 4), COSTS, drafter="suffix"), CostAware
    )
