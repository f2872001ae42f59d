"""Claims about metric tables that mutation testing found unpinned: the single-task table's
counts and order, and a request that ended at its prefill."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest
from test_metrics_degradation import multi_rows, single_rows
from test_metrics_summary import SPEC

from specviz.metrics import (
    MissingCounterpartError,
    degradation,
    k_distribution,
    per_position,
    request_summary,
    request_table,
    single_task_best_k,
    summary,
)
from specviz.metrics.expressions import (
    EVENT_METRIC_COLUMNS,
    accepted,
    drafted,
    spec_step_acceptance_length,
)
from specviz.metrics.synthetic import RoundSpec, events_from_rounds, prefill, requests_from_rows
from specviz.rundir import SchemaError


def test_the_single_task_table_counts_requests_and_tokens_per_task_and_k_in_order():
    t = single_task_best_k(requests_from_rows(list(reversed(single_rows()))))
    assert t.select("category", "k", "requests", "tokens").rows() == [
        ("A", 2, 2, 20),
        ("A", 4, 2, 20),
        ("B", 2, 2, 20),
        ("B", 4, 2, 20),
    ]


def test_a_request_that_ended_at_its_prefill_is_still_one_request():
    s = summary(events_from_rounds([prefill(verify_s=0.2)], SPEC)).row(0, named=True)
    assert (s["requests"], s["rounds"], s["verify_rounds"], s["tokens"]) == (1, 1, 0, 1)


def two_requests() -> pl.DataFrame:
    """Request b (2 rounds, 3 drafted) before request a (1 round) in one run."""
    b = events_from_rounds(
        [prefill(), RoundSpec(3, 1)], replace(SPEC, request_id="b", request_index=1)
    )
    a = events_from_rounds([prefill()], replace(SPEC, request_id="a", request_index=0))
    return pl.concat([b, a])


def test_the_request_table_has_one_row_per_request_in_request_order():
    t = request_table(two_requests())
    assert t.select("request_id", "requests", "rounds", "drafted", "tokens").rows() == [
        ("a", 1, 1, 0, 1),
        ("b", 1, 2, 3, 3),
    ]


def test_the_request_table_names_a_missing_event_column():
    with pytest.raises(SchemaError, match="verify_s"):
        request_table(two_requests().drop("verify_s"))


def test_the_request_summary_reads_a_table_of_only_the_columns_it_needs():
    needed = ["new_tokens", "wall_s", "rounds", "n_turns", "drafted", "accepted", "ttft_s"]
    needed += ["prefill_s", "draft_s", "verify_s", "drafter"]
    row = dict(new_tokens=10, rounds=5, n_turns=1, drafted=12, accepted=6, wall_s=2.0)
    row |= dict(prefill_s=0.5, draft_s=0.1, verify_s=0.4, ttft_s=0.5)
    requests = requests_from_rows([row]).select(needed)
    s = request_summary(requests, "drafter").row(0, named=True)
    assert (s["requests"], s["tokens"], s["tokens_per_s"]) == (1, 10, 5.0)
    assert s["mean_accepted_length"] == pytest.approx((10 - 1) / (5 - 1))


def missing_prompts(n: int) -> list[dict]:
    """The decomposition fixture's stream plus ``n`` prompts of task A never run single-task."""
    extra = [f"A{i}" for i in range(10, 10 + n)]
    return single_rows() + multi_rows(prompts=["A0", "B0", *extra])


@pytest.mark.parametrize(("n", "more"), [(20, ""), (21, " and 1 more"), (23, " and 3 more")])
def test_missing_counterparts_are_named_twenty_at_most_and_counted(n, more):
    with pytest.raises(MissingCounterpartError) as caught:
        degradation(requests_from_rows(missing_prompts(n)))
    err = caught.value
    assert err.missing.height == n
    named = [f"model/constant/k=4 on tiny: A{i}" for i in range(10, 10 + min(n, 20))]
    assert str(err) == (
        f"{n} multitask request(s) have no single-task counterpart (same target, temperature, "
        f"drafter, policy, k and prompt): {'; '.join(named)}{more}. Run the single-task mixtures "
        "of these tasks with the same configuration."
    )


def test_k_shares_add_up_to_one_within_each_group():
    ours = events_from_rounds([prefill(), RoundSpec(3, 1), RoundSpec(2, 2, k=2)], SPEC)
    theirs = events_from_rounds(
        [prefill(), RoundSpec(3, 0)], replace(SPEC, run_id="o", request_id="o", drafter="other")
    )
    t = k_distribution(pl.concat([ours, theirs]), "drafter")
    assert t.select("drafter", "round_k", "rounds", "share").rows() == [
        ("model", 2, 1, 0.5),
        ("model", 3, 1, 0.5),
        ("other", 3, 1, 1.0),
    ]


def test_k_distribution_reads_a_table_of_only_the_columns_it_needs():
    events = events_from_rounds([prefill(), RoundSpec(3, 1)], SPEC)
    needed = [*EVENT_METRIC_COLUMNS, "run_id", "request_index"]
    assert k_distribution(events.select(needed))["share"].to_list() == [1.0]


def test_a_drafted_token_with_no_recorded_verdict_is_not_counted_as_accepted():
    events = events_from_rounds([prefill(), RoundSpec(3, 2)], SPEC)
    first_draft = (pl.col("kind") == "draft") & (pl.col("position") == 0)
    unknown = events.with_columns(
        pl.when(first_draft).then(None).otherwise(pl.col("accepted")).alias("accepted")
    )
    counts = unknown.select(accepted().alias("accepted"), drafted().alias("drafted")).row(0)
    assert counts == (1, 3)


def test_a_servers_acceptance_length_is_one_plus_accepted_per_spec_step_and_null_without_steps():
    counts = pl.DataFrame({"accepted": [6, 0, 3], "steps": [4, 0, 0]})
    length = counts.select(spec_step_acceptance_length(pl.col("accepted"), pl.col("steps")))
    assert length.to_series().to_list() == [2.5, None, None]


def test_the_request_summary_sums_wall_seconds_and_averages_each_requests_throughput():
    rows = [dict(new_tokens=10, wall_s=1.0), dict(new_tokens=30, wall_s=2.0)]
    s = request_summary(requests_from_rows(rows)).row(0, named=True)
    assert s["wall_s"] == 3.0
    assert s["request_tokens_per_s"] == pytest.approx((10 / 1 + 30 / 2) / 2)
    assert s["tokens_per_s"] == pytest.approx(40 / 3)


def test_the_request_summary_gives_mean_ttft_and_each_share_of_the_wall_clock_in_group_order():
    rows = [
        dict(drafter="b", new_tokens=10, wall_s=2.0, ttft_s=0.5, draft_s=0.2, verify_s=0.6,
             prefill_s=0.4),
        dict(drafter="a", new_tokens=10, wall_s=2.0, ttft_s=0.3, draft_s=0.2, verify_s=1.0,
             prefill_s=0.2),
    ]  # fmt: skip
    s = request_summary(requests_from_rows(rows)).row(0, named=True)
    shares = [s[c] for c in ("draft_share", "verify_share", "prefill_share", "other_share")]
    assert (s["ttft_s"], shares) == (pytest.approx(0.4), pytest.approx([0.1, 0.4, 0.15, 0.35]))
    assert request_summary(requests_from_rows(rows), "drafter")["drafter"].to_list() == ["a", "b"]


def test_grouping_by_k_takes_each_runs_first_verify_round_and_zero_without_one():
    later = events_from_rounds([prefill(), RoundSpec(2, 1)], replace(SPEC, request_index=1))
    first = events_from_rounds([prefill(), RoundSpec(3, 1)], replace(SPEC, request_id="b"))
    plain = events_from_rounds([prefill()], replace(SPEC, run_id="plain", request_id="c"))
    t = summary(pl.concat([later, first, plain]), ["run_id", "k"])
    assert t.select("run_id", "k", "requests").rows() == [("plain", 0, 1), ("spec", 3, 2)]


def test_per_position_counts_a_round_that_drafted_one_token_and_sorts_by_position():
    events = events_from_rounds([prefill(), RoundSpec(1, 1), RoundSpec(3, 2)], SPEC)
    t = per_position(events.reverse())
    assert t.select("position", "drafting_rounds").rows() == [(0, 2), (1, 2), (2, 2)]


def test_per_position_reads_a_table_of_only_the_columns_it_needs_and_names_a_missing_one():
    events = events_from_rounds([prefill(), RoundSpec(3, 1)], SPEC)
    needed = [*EVENT_METRIC_COLUMNS, "run_id", "request_index"]
    assert per_position(events.select(needed))["accepted"].to_list() == [1, 0, 0]
    with pytest.raises(SchemaError, match="verify_s"):
        per_position(two_requests().drop("verify_s"))


def test_the_request_table_sums_each_requests_seconds_from_only_the_columns_it_needs():
    rounds = [prefill(verify_s=0.2), RoundSpec(3, 1, draft_s=0.03, verify_s=0.1)]
    events = events_from_rounds(rounds, SPEC)
    needed = [*EVENT_METRIC_COLUMNS, "run_id", "request_id", "request_index"]
    t = request_table(events.select(needed))
    assert t.select("draft_s", "verify_s", "prefill_s").row(0) == pytest.approx((0.03, 0.1, 0.2))
    assert t.schema["requests"] == pl.Int64


def test_the_summary_reads_a_table_of_only_the_columns_it_needs():
    events = events_from_rounds([prefill(), RoundSpec(3, 1)], SPEC)
    needed = [*EVENT_METRIC_COLUMNS, "run_id", "request_index"]
    assert summary(events.select(needed))["accepted"].to_list() == [1]
