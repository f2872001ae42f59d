"""Claims about per-position acceptance with rounds that drafted nothing (a prompt-lookup miss:
the policy asked for k drafts, the drafter found none): such a round is a verify round, but not
a drafting round, so it changes neither position's acceptance."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest
from test_metrics_summary import SPEC, spec_rounds

from specviz.metrics import per_position, summary
from specviz.metrics.synthetic import RoundSpec, events_from_rounds


def with_misses() -> pl.DataFrame:
    rounds = spec_rounds()
    # two rounds where the policy asked for 3 drafts and the drafter had none
    rounds[2:2] = [RoundSpec(0, 0, k=3, verify_s=0.1), RoundSpec(0, 0, k=3, verify_s=0.1)]
    return events_from_rounds(rounds, SPEC)


def test_a_round_that_drafted_nothing_is_not_a_drafting_round_of_vllm_acceptance():
    pos = per_position(with_misses())
    assert pos["drafted"].to_list() == [4, 4, 4]
    assert pos["drafting_rounds"].to_list() == [4, 4, 4]  # 6 verify rounds, 4 drafted
    assert pos["vllm_acceptance"].to_list() == pytest.approx([3 / 4, 2 / 4, 1 / 4])
    assert pos["conditional_acceptance"].to_list() == pytest.approx([3 / 4, 2 / 3, 1 / 2])


def test_a_round_that_drafted_nothing_still_counts_as_a_verify_round_of_one_token():
    s = summary(with_misses()).row(0, named=True)
    assert (s["verify_rounds"], s["drafted"], s["accepted"]) == (6, 12, 6)
    assert s["mean_accepted_length"] == pytest.approx((9 + 2) / 6)
    assert s["acceptance_rate"] == pytest.approx(6 / 12)


def test_per_position_acceptance_is_kept_apart_per_group():
    other = events_from_rounds(
        [RoundSpec(2, 2, verify_s=0.1), RoundSpec(2, 0, verify_s=0.1)],
        replace(SPEC, run_id="other", request_id="o", drafter="other"),
    )
    pos = per_position(pl.concat([with_misses(), other]), "drafter")
    theirs = pos.filter(pl.col("drafter") == "other")
    assert theirs["drafting_rounds"].to_list() == [2, 2]
    assert theirs["accepted"].to_list() == [1, 1]
    assert theirs["vllm_acceptance"].to_list() == pytest.approx([1 / 2, 1 / 2])
    ours = pos.filter(pl.col("drafter") == "model")
    assert ours["drafting_rounds"].to_list() == [4, 4, 4]
