"""Per-token views of individual requests: every drafted and target token, round by round."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import altair as alt
import polars as pl

from specviz.plots.common import (
    RAW_ROW_LIMIT,
    STATUS_COLORS,
    cap_rows,
    require_columns,
    sorted_unique,
    title,
)
from specviz.rundir import KIND_DRAFT

TOKEN_COLUMNS = (
    "request_id",
    "request_index",
    "category",
    "round",
    "position",
    "prefill",
    "k",
    "n_drafted",
    "kind",
    "draft_token",
    "target_token",
    "accepted",
    "verified",
    "emitted",
    "p",
    "q",
)

#: Decodes token ids to their text, one string per id (a tokenizer's ``convert_ids_to_tokens``
#: followed by cleanup, or anything else); without one a token shows as ``#id``.
Decoder = Callable[[Sequence[int]], Sequence[str]]


def token_status() -> pl.Expr:
    """accepted | rejected | unverified (drafts), correction | bonus | prefill (target tokens)."""
    return (
        pl.when(pl.col("kind") == KIND_DRAFT)
        .then(
            pl.when(pl.col("accepted").fill_null(False))
            .then(pl.lit("accepted"))
            .when(pl.col("verified"))
            .then(pl.lit("rejected"))
            .otherwise(pl.lit("unverified"))
        )
        .when(pl.col("prefill"))
        .then(pl.lit("prefill"))
        .otherwise(pl.col("kind"))
    )


def token_table(events: pl.DataFrame, decode: Decoder | None = None) -> pl.DataFrame:
    """One row per token with ``status``, ``token`` (id) and ``text``, sorted in stream order.

    ``slot`` is where the token sits in its round's row: drafts at their position, the target's
    correction or bonus token after all drafts (it shares ``position`` with the first rejected
    draft). ``nth`` numbers the requests of each category in stream order (0, 1, ...).
    """
    require_columns(events, TOKEN_COLUMNS, "token_table")
    table = (
        events.select(TOKEN_COLUMNS)
        .with_columns(
            token_status().alias("status"),
            pl.when(pl.col("kind") == KIND_DRAFT)
            .then(pl.col("draft_token"))
            .otherwise(pl.col("target_token"))
            .alias("token"),
            pl.when(pl.col("kind") == KIND_DRAFT)
            .then(pl.col("position"))
            .otherwise(pl.col("n_drafted"))
            .alias("slot"),
            pl.col("request_index")
            .rank("dense")
            .over("category")
            .cast(pl.Int32)
            .sub(1)
            .alias("nth"),
        )
        .sort("request_index", "round", "position", pl.col("kind") != KIND_DRAFT)
    )
    if decode is None:
        text = pl.format("#{}", pl.col("token"))
        return table.with_columns(text.alias("text"))
    ids = table["token"].to_list()
    texts = list(decode([int(i) for i in ids]))
    return table.with_columns(pl.Series("text", texts, dtype=pl.String))


def token_rounds(
    tokens: pl.DataFrame,
    *,
    requests_per_category: int = 5,
    max_rows: int = RAW_ROW_LIMIT,
) -> alt.LayerChart:
    """Round-by-round view of one request: a row per verify round, a cell per token.

    ``tokens`` comes from :func:`token_table`. A dropdown picks the category and a slider the
    request (its order within the category); cells are coloured by outcome and the tooltip
    gives the token, its probabilities and the round's k. Only the first
    ``requests_per_category`` requests of each category and at most ``max_rows`` tokens are
    embedded; the subtitle says so when that drops anything.
    """
    require_columns(tokens, ["status", "text", "nth", *TOKEN_COLUMNS], "token_rounds")
    n_requests = tokens.select(pl.struct("category", "request_id").n_unique()).item()
    kept = tokens.filter(pl.col("nth") < requests_per_category)
    kept_requests = kept.select(pl.struct("category", "request_id").n_unique()).item()
    notes = []
    if kept_requests < n_requests:
        notes.append(
            f"capped: {requests_per_category} requests per category "
            f"({kept_requests:,} of {n_requests:,} requests)"
        )
    data, cap_note = cap_rows(
        kept.select(
            "category",
            "nth",
            "request_id",
            "round",
            "slot",
            "position",
            "k",
            "status",
            "emitted",
            pl.col("text").str.slice(0, 16).alias("label"),
            "text",
            "token",
            "p",
            "q",
        ),
        max_rows,
        "tokens",
    )
    notes.append(cap_note)
    categories = sorted_unique(data, "category")
    category = alt.param(
        name="token_category",
        value=categories[0],
        bind=alt.binding_select(options=categories, name="Category "),
    )
    data = data.with_columns(pl.col("nth").max().over("category").alias("last_nth"))
    max_nth = int(data["last_nth"].max())
    nth = alt.param(
        name="token_request",
        value=0,
        bind=alt.binding_range(min=0, max=max(max_nth, 1), step=1, name="Request # in category "),
    )
    # the slider spans the category with the most requests; past a category's last request
    # the chart shows that last one and the line above the chart says so
    shown = f"min({nth.name}, datum.last_nth)"
    base = (
        alt.Chart(data)
        .transform_filter(f"datum.category == {category.name} && datum.nth == {shown}")
        .encode(
            x=alt.X("slot:O", title="Slot in round (drafts by position, then the target's token)"),
            y=alt.Y("round:O", title="Round"),
        )
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            "status:N",
            title="Token",
            scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
        ),
        opacity=alt.condition("datum.emitted", alt.value(1.0), alt.value(0.45)),
        tooltip=[
            alt.Tooltip("request_id:N", title="Request"),
            alt.Tooltip("round:O", title="Round"),
            alt.Tooltip("position:O", title="Draft position"),
            alt.Tooltip("k:Q", title="Draft length k"),
            alt.Tooltip("status:N", title="Outcome"),
            alt.Tooltip("text:N", title="Token text"),
            alt.Tooltip("token:Q", title="Token id"),
            alt.Tooltip("p:Q", format=".3f", title="p (target probability)"),
            alt.Tooltip("q:Q", format=".3f", title="q (draft probability)"),
            alt.Tooltip("emitted:N", title="In the output"),
        ],
    )
    labels = base.mark_text(fontSize=10, limit=70).encode(text="label:N")
    message = (
        alt.Chart(data.group_by("category").agg(pl.col("last_nth").first()).sort("category"))
        .transform_filter(f"datum.category == {category.name}")
        .transform_calculate(
            message=(
                f"'request #' + min({nth.name}, datum.last_nth) + ' of #0 to #' + datum.last_nth"
                f" + ' in ' + datum.category + ({nth.name} > datum.last_nth ? ' (this category "
                "has no request #' + "
                f"{nth.name} + '; showing its last)' : '')"
            )
        )
        .mark_text(align="left", baseline="bottom", fontSize=11, color="#444")
        .encode(x=alt.value(0), y=alt.value(-4), text="message:N")
    )
    return (
        alt.layer(cells, labels, message)
        .add_params(category, nth)
        .properties(
            title=_offset(
                title(
                    "Tokens of one request, round by round",
                    "faded: drafted or generated but not part of the output",
                    *notes,
                )
            ),
            width=alt.Step(75),
            height=alt.Step(16),
        )
    )


def _offset(params: alt.TitleParams) -> alt.TitleParams:
    """The title lifted to leave a line for the request message under it."""
    params.offset = 20
    return params
