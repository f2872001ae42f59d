"""Event-table metrics on small tables built by hand; every expected value is worked out below."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import (
    k_distribution,
    per_position,
    request_summary,
    request_table,
    summary,
)
from specviz.metrics.synthetic import (
    Labels,
    RoundSpec,
    events_from_rounds,
    prefill,
    requests_from_rows,
)

SPEC = Labels(run_id="spec", request_id="a", prompt_id="p1", drafter="model", policy="constant")
BASE = Labels(run_id="base", request_id="b", prompt_id="p1", drafter="none", policy="constant")


def spec_rounds() -> list[RoundSpec]:
    # drafted 3 every verify round; accepted 1, 3, 0, 2; the turn ends after round 4's 2 drafts
    return [
        prefill(verify_s=0.5),
        RoundSpec(3, 1, draft_s=0.03, verify_s=0.1),  # emits 2 (1 draft + correction)
        RoundSpec(3, 3, draft_s=0.03, verify_s=0.1),  # emits 4 (3 drafts + bonus)
        RoundSpec(3, 0, draft_s=0.03, verify_s=0.1),  # emits 1 (correction)
        RoundSpec(3, 2, draft_s=0.03, verify_s=0.1, emitted=2),  # emits 2, correction cut off
    ]


def base_rounds() -> list[RoundSpec]:
    return [
        prefill(verify_s=0.4),
        RoundSpec(verify_s=0.05),
        RoundSpec(verify_s=0.05),
        RoundSpec(verify_s=0.05),
    ]


@pytest.fixture
def events() -> pl.DataFrame:
    return pl.concat(
        [events_from_rounds(spec_rounds(), SPEC), events_from_rounds(base_rounds(), BASE)]
    )


def row(frame: pl.DataFrame, **where) -> dict:
    out = frame.filter(*[pl.col(c) == v for c, v in where.items()])
    assert out.height == 1, out
    return out.row(0, named=True)


def test_counts_and_rates_match_hand_computation(events):
    s = row(summary(events, "drafter"), drafter="model")
    assert (s["requests"], s["rounds"], s["verify_rounds"]) == (1, 5, 4)
    assert (s["drafted"], s["accepted"], s["verified_drafts"]) == (12, 6, 9)
    assert s["tokens"] == 1 + 2 + 4 + 1 + 2
    assert s["acceptance_rate"] == pytest.approx(6 / 12)
    assert s["alpha"] == pytest.approx(6 / 9)
    assert s["mean_accepted_length"] == pytest.approx(9 / 4)
    assert s["mean_k"] == pytest.approx(3.0)


def test_plain_decoding_has_mean_accepted_length_one_and_no_acceptance_rate(events):
    s = row(summary(events, "drafter"), drafter="none")
    assert s["mean_accepted_length"] == pytest.approx(1.0)
    assert s["acceptance_rate"] is None
    assert s["tokens"] == 4


def test_time_shares_and_throughput_count_each_round_once(events):
    s = row(summary(events, "drafter"), drafter="model")
    assert s["draft_s"] == pytest.approx(0.12)
    assert s["verify_s"] == pytest.approx(0.4)
    assert s["prefill_s"] == pytest.approx(0.5)
    assert s["tokens_per_s"] == pytest.approx(10 / 1.02)
    assert s["draft_share"] == pytest.approx(0.12 / 1.02)
    assert s["verify_share"] + s["draft_share"] + s["prefill_share"] == pytest.approx(1.0)
    assert s["decode_s_per_token"] == pytest.approx(0.52 / 9)


def test_per_position_conditional_acceptance_divides_by_verified_drafts(events):
    pos = per_position(events.filter(pl.col("drafter") == "model"))
    assert pos["drafted"].to_list() == [4, 4, 4]
    assert pos["verified"].to_list() == [4, 3, 2]
    assert pos["accepted"].to_list() == [3, 2, 1]
    assert pos["conditional_acceptance"].to_list() == pytest.approx([3 / 4, 2 / 3, 1 / 2])
    assert pos["vllm_acceptance"].to_list() == pytest.approx([3 / 4, 2 / 4, 1 / 4])


def test_grouping_by_k_uses_the_configured_k_so_prefill_rows_stay_with_their_request(events):
    s = summary(events, "k")
    assert s["k"].to_list() == [0, 3]
    assert row(s, k=3)["tokens"] == 10
    assert row(s, k=3)["requests"] == 1
    assert row(s, k=0)["tokens"] == 4


def test_grouping_by_k_under_an_adaptive_policy_keeps_the_initial_k():
    labels = Labels(run_id="h", request_id="h0", policy="heuristic")
    rounds = [
        prefill(),
        RoundSpec(3, 3, k=3),
        RoundSpec(5, 1, k=5),
        RoundSpec(4, 4, k=4),
        RoundSpec(4, 0, k=6),
    ]
    ev = events_from_rounds(rounds, labels)
    s = summary(ev, "k")
    assert s["k"].to_list() == [3]
    assert s["mean_k"][0] == pytest.approx((3 + 5 + 4 + 6) / 4)
    assert s["mean_drafted"][0] == pytest.approx((3 + 5 + 4 + 4) / 4)
    dist = k_distribution(ev)
    assert dist["round_k"].to_list() == [3, 4, 5, 6]
    assert dist["rounds"].to_list() == [1, 1, 1, 1]
    assert dist["share"].to_list() == pytest.approx([0.25] * 4)
    assert dist["mean_drafted"].to_list() == pytest.approx([3, 4, 5, 4])


def test_prefill_of_every_turn_is_excluded_from_verify_rounds():
    rounds = [prefill(turn=0), RoundSpec(2, 2, turn=0), prefill(turn=1), RoundSpec(2, 0, turn=1)]
    s = summary(events_from_rounds(rounds))
    assert s["verify_rounds"][0] == 2
    assert s["mean_accepted_length"][0] == pytest.approx((3 + 1) / 2)
    assert s["tokens"][0] == 6


def test_request_table_sums_back_to_the_summary(events):
    table = request_table(events, "drafter")
    assert table.height == 2
    total = summary(events)
    for column in ("tokens", "rounds", "drafted", "accepted", "verified_drafts"):
        assert table[column].sum() == total[column][0]
    model = table.filter(pl.col("drafter") == "model").row(0, named=True)
    assert model["verify_tokens"] / model["verify_rounds"] == pytest.approx(9 / 4)


def test_request_summary_mean_accepted_length_agrees_with_events(events):
    requests = requests_from_rows(
        [
            dict(
                run_id="spec",
                prompt_id="p1",
                new_tokens=10,
                rounds=5,
                n_turns=1,
                drafted=12,
                accepted=6,
                wall_s=1.2,
                prefill_s=0.5,
                draft_s=0.12,
                verify_s=0.4,
                ttft_s=0.5,
            ),
            dict(
                run_id="base",
                prompt_id="p1",
                drafter="none",
                k=0,
                new_tokens=4,
                rounds=4,
                n_turns=1,
                wall_s=0.6,
                prefill_s=0.4,
                verify_s=0.15,
                ttft_s=0.4,
            ),
        ]
    )
    by_events = summary(events, "drafter")
    by_requests = request_summary(requests, "drafter")
    assert by_requests["mean_accepted_length"].to_list() == pytest.approx(
        by_events["mean_accepted_length"].to_list()
    )
    spec = row(by_requests, drafter="model")
    assert spec["tokens_per_s"] == pytest.approx(10 / 1.2)
    assert spec["acceptance_rate"] == pytest.approx(0.5)
    assert spec["other_share"] == pytest.approx((1.2 - 0.5 - 0.12 - 0.4) / 1.2)
    assert row(by_requests, drafter="none")["mean_accepted_length"] == pytest.approx(1.0)


def test_summary_accepts_lazy_frames_and_gives_the_same_result(events):
    assert summary(events.lazy(), "category").equals(summary(events, "category"))
