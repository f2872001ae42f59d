"""Rebuilding cross-request state from a run directory, so a resumed run ends exactly as an
uninterrupted one.

Two kinds of state cross requests: a policy's (the persistent heuristic's k, the per-task
heuristic's k per task, the cost-aware policy's acceptance beliefs) and a drafter's memory (the
suffix cache). Both are functions of the finished requests' rounds in stream order, which the
event log records: the policy is replayed round by round (``start_request(category)``, then
``update`` with what it heard of every verify round, :func:`specviz.policies.heard`: the
round's counts, or its shadow token against the target's), the memory is refilled with every
finished turn's output (the ``emitted`` tokens, in round and position order).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from specviz.drafters.base import LearnsAcrossRequests
from specviz.policies import DraftPolicy, heard
from specviz.rundir import KIND_DRAFT, scan_events


def _done_events(run_dir: Path, done: set[str]) -> pl.LazyFrame:
    return scan_events(run_dir).filter(pl.col("request_id").is_in(sorted(done)))


def restore_policy(run_dir: Path, policy: DraftPolicy, done: set[str]) -> None:
    """Replay the updates the policy heard during the finished requests ``done``."""
    if not done:
        return
    rounds = (
        _done_events(run_dir, done)
        .filter(~pl.col("prefill"))
        .group_by("request_index", "round", maintain_order=True)
        .agg(
            pl.col("category").first(),
            pl.col("k").first(),
            pl.col("n_drafted").first(),
            pl.col("accepted").sum(),
            pl.col("shadow_token").drop_nulls().first(),
            pl.col("target_token").filter(pl.col("kind") != KIND_DRAFT).first(),
        )
        .sort("request_index", "round")
        .collect()
    )
    last_request = None
    for request_index, _, category, k, n_drafted, accepted, shadow, emitted in rounds.iter_rows():
        if request_index != last_request:
            policy.start_request(category)
            last_request = request_index
        policy.update(k, *heard(n_drafted, accepted, shadow, emitted))


def restore_memory(run_dir: Path, drafter: object, done: set[str]) -> None:
    """Hand a drafter with cross-request memory every finished turn's output, in stream order."""
    if not done or not isinstance(drafter, LearnsAcrossRequests):
        return
    turns = (
        _done_events(run_dir, done)
        .filter(pl.col("emitted"))
        .sort("request_index", "turn", "round", "position")
        .group_by("request_index", "turn", maintain_order=True)
        .agg(pl.col("category").first(), pl.col("target_token"))
        .collect()
    )
    last_request = None
    for request_index, _, category, tokens in turns.iter_rows():
        if request_index != last_request:
            drafter.start_request(category)
            last_request = request_index
        drafter.end_turn(tokens)
