"""The report's first screen: the decomposition of every multitask stream's extra time, and
acceptance per category single-task vs multitask.

Both charts take small long-format tables (one row per stream and term, one row per method,
category and stream); the terms come from the data, so a term added to the decomposition
appears without a change here. Speed is modelled (cost-accounted) seconds; the wall clock is
drawn as the check, labelled as such.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from specviz.plots.common import PlotError, require_columns, sorted_unique, title

STREAM_ORDER = ["single-task", "multitask"]
WALL_MARK = "wall-clock total (the check)"
TOTAL_TERM = "total extra time"

#: Colours of the terms in display order (Vega's tableau10), and of the total (grey).
TERM_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#eeca3b", "#9d755d", "#ff9da6")
TOTAL_COLOR = "#616161"

#: Columns of :func:`decomposition_terms`'s table.
TERM_COLUMNS = ("stream", "term", "order", "percent", "low", "high", "wall_percent")


def decomposition_terms(table: pl.DataFrame, *, heading: str | None = None) -> alt.LayerChart:
    """Each stream's extra time split into its terms, modelled, with 95% intervals.

    ``table``: one row per (stream, term) with ``percent`` (modelled share of single-task decode time),
    ``low``/``high`` (its bootstrap 95% interval), ``order`` (terms' display order) and
    ``wall_percent`` (set on the total's row only: the wall-clock total, drawn as a diamond).
    """
    require_columns(table, TERM_COLUMNS, "decomposition_terms")
    data = table.select(TERM_COLUMNS).filter(pl.col("percent").is_not_null())
    if data.height == 0:
        raise PlotError("decomposition_terms: no decomposed multitask stream")
    terms = data.group_by("term").agg(pl.col("order").min()).sort("order", "term")["term"].to_list()
    streams = data.unique("stream", maintain_order=True)["stream"].to_list()
    x_title = "Extra time, % of single-task decode time (modelled)"
    base = alt.Chart(data).encode(
        y=alt.Y("stream:N", title=None, sort=streams, axis=alt.Axis(labelLimit=320)),
        yOffset=alt.YOffset("term:N", sort=terms),
    )
    tooltip = [
        alt.Tooltip("stream:N", title="Method · mixture"),
        alt.Tooltip("term:N", title="Term"),
        alt.Tooltip("percent:Q", title="Modelled, % of single-task decode time", format="+.1f"),
        alt.Tooltip("low:Q", title="95% CI low, %", format="+.1f"),
        alt.Tooltip("high:Q", title="95% CI high, %", format="+.1f"),
        alt.Tooltip("wall_percent:Q", title="Wall clock (the check), %", format="+.1f"),
    ]
    colors = [TOTAL_COLOR if t == TOTAL_TERM else TERM_COLORS[i % len(TERM_COLORS)]
              for i, t in enumerate(terms)]  # fmt: skip
    bars = base.mark_bar(height={"band": 0.9}).encode(
        x=alt.X("percent:Q", title=x_title),
        color=alt.Color("term:N", title="Term", scale=alt.Scale(domain=terms, range=colors)),
        tooltip=tooltip,
    )
    ci = base.mark_rule(color="black").encode(x="low:Q", x2="high:Q", tooltip=tooltip)
    wall = (
        base.transform_filter("isValid(datum.wall_percent)")
        .transform_calculate(clock=f"'{WALL_MARK}'")
        .mark_point(shape="diamond", filled=True, size=70, color="black")
        .encode(
            x="wall_percent:Q",
            shape=alt.Shape(
                "clock:N",
                title=None,
                scale=alt.Scale(domain=[WALL_MARK], range=["diamond"]),
            ),
            tooltip=tooltip,
        )
    )
    return alt.layer(bars, ci, wall).properties(
        title=title(
            heading or "Where the multitask stream's extra time goes (modelled)",
            "bars: each term, % of single-task decode time; black: 95% CI; diamond: wall-clock total",
        ),
        width=520,
        height=alt.Step(11),
    )


def acceptance_by_stream(table: pl.DataFrame, *, method: str | None = None) -> alt.LayerChart:
    """Acceptance rate per category, single-task vs multitask, for one method at a time.

    ``table``: one row per (method, category, stream) with ``acceptance_rate`` and its
    ``acceptance_rate_low``/``_high`` interval (e.g. :func:`specviz.metrics.summary` with
    :func:`specviz.metrics.metric_intervals`); a dropdown picks the method (``method`` first).
    """
    needed = ["method", "category", "stream", "acceptance_rate", "acceptance_rate_low",
              "acceptance_rate_high"]  # fmt: skip
    require_columns(table, needed, "acceptance_by_stream")
    data = table.select(needed).filter(pl.col("acceptance_rate").is_not_null())
    if data.height == 0:
        raise PlotError("acceptance_by_stream: no drafted tokens to draw")
    methods = sorted_unique(data, "method")
    start = method if method in methods else methods[0]
    pick = alt.param(
        name="acceptance_method",
        value=start,
        bind=alt.binding_select(options=methods, name="Method "),
    )
    label = "Acceptance rate (accepted / drafted)"
    tooltip = [
        alt.Tooltip("method:N", title="Method"),
        alt.Tooltip("category:N", title="Category"),
        alt.Tooltip("stream:N", title="Stream"),
        alt.Tooltip("acceptance_rate:Q", title=label, format=".3f"),
        alt.Tooltip("acceptance_rate_low:Q", title="95% CI low", format=".3f"),
        alt.Tooltip("acceptance_rate_high:Q", title="95% CI high", format=".3f"),
    ]
    base = (
        alt.Chart(data)
        .transform_filter(f"datum.method == {pick.name}")
        .encode(
            y=alt.Y("category:N", title="Category", sort=sorted_unique(data, "category")),
            yOffset=alt.YOffset("stream:N", sort=STREAM_ORDER),
        )
    )
    bars = base.mark_bar().encode(
        x=alt.X("acceptance_rate:Q", title=label, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("stream:N", title="Stream", sort=STREAM_ORDER),
        tooltip=tooltip,
    )
    ci = base.mark_rule(color="black").encode(
        x="acceptance_rate_low:Q", x2="acceptance_rate_high:Q", tooltip=tooltip
    )
    return (
        alt.layer(bars, ci)
        .add_params(pick)
        .properties(
            title=title(
                "Acceptance per category, single-task vs multitask",
                "black: bootstrap 95% CI over requests; pick the method below",
            ),
            width=520,
            height=alt.Step(11),
        )
    )
