"""The draft length k along a run's request stream, and where the task changes."""

from __future__ import annotations

import altair as alt
import polars as pl

from specviz.metrics import expressions as ex
from specviz.plots.common import (
    RAW_ROW_LIMIT,
    PlotError,
    cap_rows,
    legend_toggle,
    require_columns,
    title,
)

TRAJECTORY_COLUMNS = (
    "run_id",
    "request_index",
    "category",
    "round",
    "prefill",
    "kind",
    "k",
    "n_drafted",
    "position",
    "accepted",
    "verified",
    "emitted",
    "draft_s",
    "verify_s",
)


def k_trajectory(events: pl.DataFrame, *, max_rows: int = RAW_ROW_LIMIT) -> alt.VConcatChart:
    """k per request along the stream (top; brush to zoom) and k per verify round (bottom).

    ``events``: the events of one run. The top view has one point per request (mean k and
    acceptance rate, from :mod:`specviz.metrics.expressions`), coloured by the request's
    category, with a dashed rule wherever the category changes from the previous request: an
    adaptive policy whose state persists across requests carries k from one task into the next.
    Dragging over the top view selects requests for the bottom view, which shows every verify
    round (k asked for, drafts accepted); it embeds at most ``max_rows`` rounds and says so.
    """
    require_columns(events, TRAJECTORY_COLUMNS, "k_trajectory")
    runs = events["run_id"].n_unique()
    if runs != 1:
        raise PlotError(f"k_trajectory: pass the events of one run (got {runs} runs)")
    per_request = (
        events.group_by("request_index", "category")
        .agg(ex.mean_k().alias("mean_k"), ex.acceptance_rate().alias("acceptance_rate"))
        .sort("request_index")
        .with_columns(
            (pl.col("category") != pl.col("category").shift(1)).fill_null(False).alias("switch")
        )
    )
    rounds = (
        events.filter(ex.is_verify_round())
        .sort("request_index", "round")
        .select(
            "request_index",
            "category",
            "round",
            "k",
            pl.col("position").alias("accepted_drafts"),
        )
        .with_row_index("step")
    )
    rounds, note = cap_rows(rounds, max_rows, "verify rounds")
    brush = alt.selection_interval(encodings=["x"], name="requests")
    pick = legend_toggle("category")
    color = alt.Color("category:N", title="Category")
    overview_points = (
        alt.Chart(per_request)
        .mark_circle(size=50)
        .encode(
            x=alt.X("request_index:Q", title="Request (stream order)"),
            y=alt.Y("mean_k:Q", title="Mean k of the request"),
            color=color,
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.2)),
            tooltip=[
                alt.Tooltip("request_index:Q", title="Request # in the stream"),
                alt.Tooltip("category:N", title="Category"),
                alt.Tooltip("mean_k:Q", format=".2f", title="Mean draft length k"),
                alt.Tooltip("acceptance_rate:Q", format=".3f", title="Acceptance rate"),
            ],
        )
        .add_params(brush, pick)
    )
    layers: list[alt.Chart] = []
    if per_request["switch"].any():
        layers.append(
            alt.Chart(per_request.filter(pl.col("switch")))
            .mark_rule(strokeDash=[3, 3], color="gray", opacity=0.6)
            .encode(x="request_index:Q")
        )
    overview = alt.layer(*layers, overview_points).properties(
        width=640,
        height=160,
        title=title("Draft length k along the stream", "dashed: the task changes; drag to zoom"),
    )
    detail = (
        alt.Chart(rounds)
        .mark_line(interpolate="step-after", point=True)
        .encode(
            x=alt.X("step:Q", title="Verify round (stream order)"),
            y=alt.Y("k:Q", title="k asked for"),
            color=color,
            detail="request_index:Q",
            tooltip=[
                alt.Tooltip("request_index:Q", title="Request # in the stream"),
                alt.Tooltip("category:N", title="Category"),
                alt.Tooltip("round:Q", title="Round"),
                alt.Tooltip("k:Q", title="Draft length k"),
                alt.Tooltip("accepted_drafts:Q", title="Accepted drafts"),
            ],
        )
        .transform_filter(brush)
        .properties(
            width=640,
            height=160,
            title=title("k per verify round of the selected requests", note),
        )
    )
    return alt.vconcat(overview, detail)
