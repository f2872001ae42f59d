"""Event rows have one writer: the recorder's layout (specviz.recorder.event_layout) serves both
the engine's records and the vectorised synthetic tables."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from specviz.metrics.synthetic import Labels, RoundSpec, events_from_rounds, synthetic_events
from specviz.rundir import KIND_BONUS, KIND_CORRECTION, KIND_DRAFT, KINDS

LAYOUT = ["turn", "round", "prefill", "position", "k", "n_drafted", "kind", "accepted",
          "verified", "emitted", "draft_s", "verify_s"]  # fmt: skip


def test_synthetic_events_lay_out_rows_as_the_recorder_does():
    events = synthetic_events(2_000, seed=3, k=4, rounds_per_request=30)
    for request in events.partition_by("request_id", maintain_order=True)[:3]:
        per_round = request.group_by("round", maintain_order=True).agg(
            pl.col("n_drafted").first(),
            pl.col("accepted").sum().alias("n_accepted"),
            pl.col("prefill").first(),
            pl.col("draft_s").first(),
            pl.col("verify_s").first(),
        )
        fields = ("n_drafted", "n_accepted", "prefill", "draft_s", "verify_s")
        specs = [
            RoundSpec(drafted=d, accepted=a, prefill=p, draft_s=ds, verify_s=vs)
            for d, a, p, ds, vs in per_round.select(fields).iter_rows()
        ]
        recorded = events_from_rounds(specs, Labels())
        assert_frame_equal(request.select(LAYOUT), recorded.select(LAYOUT))


def test_target_rows_are_verified_corrections_after_a_rejection_and_bonuses_otherwise():
    events = synthetic_events(5_000, seed=1, k=3)
    assert set(events["kind"].unique()) == set(KINDS)
    target = events.filter(pl.col("kind") != KIND_DRAFT)
    assert target["verified"].all()
    assert target["target_token"].null_count() == 0
    kinds = target.select(
        pl.when(pl.col("position") < pl.col("n_drafted"))
        .then(pl.lit(KIND_CORRECTION))
        .otherwise(pl.lit(KIND_BONUS))
    ).to_series()
    assert kinds.to_list() == target["kind"].to_list()
