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
from specviz.schema import KIND_DRAFT

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
    max_nth = int(data["nth"].max())
    nth = alt.param(
        name="token_request",
        value=0,
        bind=alt.binding_range(min=0, max=max(max_nth, 1), step=1, name="Request # in category "),
    )
    base = (
        alt.Chart(data)
        .transform_filter(f"datum.category == {category.name} && datum.nth == {nth.name}")
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
            "request_id:N",
            "round:O",
            "position:O",
            "k:Q",
            "status:N",
            alt.Tooltip("text:N", title="token text"),
            alt.Tooltip("token:Q", title="token id"),
            alt.Tooltip("p:Q", format=".3f", title="p (target)"),
            alt.Tooltip("q:Q", format=".3f", title="q (draft)"),
            "emitted:N",
        ],
    )
    labels = base.mark_text(fontSize=10, limit=70).encode(text="label:N")
    return (
        alt.layer(cells, labels)
        .add_params(category, nth)
        .properties(
            title=title(
                "Tokens of one request, round by round",
                "faded: drafted or generated but not part of the output",
                *notes,
            ),
            width=alt.Step(75),
            height=alt.Step(16),
        )
    )
