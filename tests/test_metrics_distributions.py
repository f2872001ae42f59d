"""Per-request distributions (AIPerf's statistics) on a small hand-computed fixture.

Single-task stream ``r1`` (coding, prompt lookup k = 2): request A is short and accepts
nothing (one verify round: 2 drafted, 0 accepted; 2 new tokens), request B is long and accepts
everything (three rounds of 2 drafted, 2 accepted; 10 new tokens). Per request:
acceptance length A = 1/1 = 1, B = 9/3 = 3; rate A = 0, B = 1. So the request-weighted mean
acceptance length is 2, the token-weighted (2 x 1 + 10 x 3) / 12 = 8/3 and the pooled ratio of
``summary`` (1 + 9) / (1 + 3) = 2.5: long outputs that accept more lift the token-weighted mean.
Multitask stream ``r2`` (coding and math, same method): one request each."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import summary
from specviz.metrics.distributions import (
    accepted_histogram,
    histogram_from_counts,
    request_distributions,
    request_values,
    server_request_values,
    study_distributions,
    time_shares,
)

#: a round: (prefill, drafted, accepted); prefill rounds emit one token and take 0.5 s, verify
#: rounds draft for 0.1 s and verify for 0.2 s
A = [(True, 0, 0), (False, 2, 0)]
B = [(True, 0, 0), (False, 2, 2), (False, 2, 2), (False, 2, 2)]
C = [(True, 0, 0), (False, 2, 1)]
D = [(True, 0, 0), (False, 2, 2)]


def event_rows(run_id: str, request_id: str, rounds: list[tuple[bool, int, int]]) -> list[dict]:
    rows = []
    for number, (prefill, drafted, accepted) in enumerate(rounds):
        base = {
            "run_id": run_id, "request_id": request_id, "request_index": 0, "turn": 0,
            "round": number,
            "prefill": prefill, "k": 0 if prefill else 2, "n_drafted": drafted,
            "draft_s": 0.0 if prefill else 0.1, "verify_s": 0.5 if prefill else 0.2,
        }  # fmt: skip
        for i in range(drafted):
            rows.append(base | {"kind": "draft", "position": i, "accepted": i < accepted,
                                "verified": i <= accepted, "emitted": i < accepted})  # fmt: skip
        kind = "bonus" if accepted == drafted else "correction"
        rows.append(base | {"kind": kind, "position": accepted, "accepted": None,
                            "verified": True, "emitted": True})  # fmt: skip
    return rows


def new_tokens(rounds: list[tuple[bool, int, int]]) -> int:
    return sum(1 + accepted for _, _, accepted in rounds)


REQUESTS = [  # (run, mixture, request, category, rounds, wall seconds)
    ("r1", "coding", "A", "coding", A, 1.0),
    ("r1", "coding", "B", "coding", B, 2.0),
    ("r2", "mix", "C", "coding", C, 1.0),
    ("r2", "mix", "D", "math", D, 0.5),
]


@pytest.fixture
def tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    events = pl.DataFrame(
        [row for run, _, rid, _, rounds, _ in REQUESTS for row in event_rows(run, rid, rounds)]
    )
    requests = pl.DataFrame(
        [
            {
                "run_id": run,
                "mixture": mixture,
                "request_id": rid,
                "request_index": i,
                "category": category,
                "prompt_id": rid,
                "repeat": 0,
                "target": "t",
                "temperature": 0.0,
                "drafter": "prompt-lookup",
                "policy": "constant",
                "k": 2,
                "new_tokens": new_tokens(rounds),
                "wall_s": wall,
                "latency_s": wall,
            }
            for i, (run, mixture, rid, category, rounds, wall) in enumerate(REQUESTS)
        ]
    )
    return events, requests


def single_coding(frame: pl.DataFrame) -> dict:
    rows = frame.filter((pl.col("stream") == "single-task") & (pl.col("category") == "coding"))
    assert rows.height == 1
    return rows.row(0, named=True)


def test_request_and_token_weighted_means_differ_when_long_outputs_accept_more(tables) -> None:
    events, requests = tables
    stats = single_coding(request_distributions(request_values(events, requests)))
    assert stats["requests"] == 2 and stats["tokens"] == 12
    assert stats["acceptance_length_mean"] == pytest.approx(2.0)
    assert stats["acceptance_length_token_weighted_mean"] == pytest.approx(32 / 12)
    pooled = summary(events.filter(pl.col("run_id") == "r1"))["mean_accepted_length"][0]
    assert pooled == pytest.approx(2.5)  # the third weighting: by verify rounds
    assert stats["acceptance_rate_mean"] == pytest.approx(0.5)
    assert stats["acceptance_rate_token_weighted_mean"] == pytest.approx(10 / 12)


def test_percentiles_interpolate_linearly_between_requests(tables) -> None:
    events, requests = tables
    stats = single_coding(request_distributions(request_values(events, requests)))
    assert stats["acceptance_length_p50"] == pytest.approx(2.0)
    assert stats["acceptance_length_p90"] == pytest.approx(2.8)
    assert stats["acceptance_length_p99"] == pytest.approx(2.98)
    assert (stats["acceptance_length_min"], stats["acceptance_length_max"]) == (1.0, 3.0)
    # tokens/s per request: A 2 / 1 s, B 10 / 2 s; latency A 1 s, B 2 s
    assert (stats["tokens_per_s_min"], stats["tokens_per_s_max"]) == (2.0, 5.0)
    assert stats["tokens_per_s_token_weighted_mean"] == pytest.approx((2 * 2 + 10 * 5) / 12)
    assert stats["latency_s_p50"] == pytest.approx(1.5)


def test_streams_are_kept_apart_by_kind(tables) -> None:
    events, requests = tables
    stats = request_distributions(request_values(events, requests))
    multi = stats.filter(pl.col("stream") == "multitask").sort("category")
    assert multi["category"].to_list() == ["coding", "math"]
    assert multi["acceptance_length_mean"].to_list() == pytest.approx([2.0, 3.0])
    assert multi["requests"].to_list() == [1, 1]


def test_histogram_counts_spec_steps_by_accepted_drafts(tables) -> None:
    events, requests = tables
    hist = accepted_histogram(events, requests, ["category", "stream"])
    single = hist.filter((pl.col("category") == "coding") & (pl.col("stream") == "single-task"))
    assert single.select("accepted", "steps", "share").rows() == [(0, 1, 0.25), (2, 3, 0.75)]
    per_task = accepted_histogram(events, requests)  # per method and task, streams pooled
    coding = per_task.filter(pl.col("category") == "coding")
    assert coding.select("accepted", "steps").rows() == [(0, 1), (1, 1), (2, 3)]


def test_time_split_is_the_share_of_draft_verify_and_prefill_seconds(tables) -> None:
    events, requests = tables
    shares = single_coding(time_shares(events, requests))
    # prefill 2 x 0.5, draft 4 x 0.1, verify 4 x 0.2 = 2.2 s
    assert shares["prefill_share"] == pytest.approx(1.0 / 2.2)
    assert shares["draft_share"] == pytest.approx(0.4 / 2.2)
    assert shares["verify_share"] == pytest.approx(0.8 / 2.2)


def test_server_counts_give_the_same_values_in_vllms_convention(tables) -> None:
    _, requests = tables
    # what a vLLM server reports for A and B: spec steps, accepted, drafted, histogram
    server = requests.with_columns(
        pl.Series("num_spec_steps", [1, 3, 1, 1]),
        pl.Series("accepted", [0, 6, 1, 2]),
        pl.Series("drafted", [2, 6, 2, 2]),
        pl.Series("acceptance_histogram", [[1], [0, 0, 3], [0, 1], [0, 0, 1]]),
    )
    stats = single_coding(request_distributions(server_request_values(server)))
    assert stats["acceptance_length_mean"] == pytest.approx(2.0)  # 1 + 0/1, 1 + 6/3
    assert stats["acceptance_length_token_weighted_mean"] == pytest.approx(32 / 12)
    hist = histogram_from_counts(server).filter(pl.col("category") == "coding")
    assert hist.select("accepted", "steps").rows() == [(0, 1), (1, 1), (2, 3)]


def test_study_distributions_are_json_with_every_statistic(tables) -> None:
    import json

    events, requests = tables
    found = json.loads(json.dumps(study_distributions(events, requests)))
    row = found["requests"][0]
    for value in ("acceptance_length", "acceptance_rate", "tokens_per_s", "latency_s"):
        for stat in ("mean", "token_weighted_mean", "p50", "p90", "p99", "min"):
            assert f"{value}_{stat}" in row
    assert {"drafter", "policy", "k", "category", "stream"} <= set(row)
    assert found["accepted_histogram"] and found["time_shares"]
    assert "bonus" in found["convention"]
