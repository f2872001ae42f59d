"""Acceptance and throughput by task category and drafter."""

from __future__ import annotations

import altair as alt
import polars as pl

from specviz.plots.common import (
    category_dropdown,
    category_filter,
    check_marks,
    legend_toggle,
    method_color,
    method_order,
    metric_label,
    require_columns,
    sorted_unique,
    title,
)


def metric_by_category(
    table: pl.DataFrame,
    metric: str,
    *,
    ci: tuple[str, str] | None = None,
    reference: float | None = None,
    heading: str | None = None,
    check: str | None = None,
) -> alt.LayerChart:
    """Bars of ``metric`` per category, one bar per method; click the legend to highlight.

    ``table``: one row per (category, method) with the ``metric`` column, e.g. from
    ``specviz.metrics.summary(events, by=["category", "method"])``. ``ci`` names lower and upper
    bound columns drawn as error bars; ``reference`` draws a horizontal rule (1.0 for speedup);
    ``check`` names a column drawn as a diamond on each bar, labelled as the wall-clock check
    (the bars being modelled figures).
    """
    needed = ["category", "method", metric, *(ci or ()), *([check] if check else [])]
    require_columns(table, needed, "metric_by_category")
    data = table.select(needed).filter(pl.col(metric).is_not_null())
    pick = legend_toggle("method")
    y_title = metric_label(metric)
    base = alt.Chart(data).encode(
        x=alt.X("category:N", title="Category", sort=sorted_unique(data, "category")),
        xOffset=alt.XOffset("method:N", sort=method_order(data)),
    )
    tooltip = [
        alt.Tooltip("category:N", title="Category"),
        alt.Tooltip("method:N", title="Method"),
        alt.Tooltip(f"{metric}:Q", title=y_title, format=".3f"),
    ]
    if ci:
        tooltip += [
            alt.Tooltip(f"{ci[0]}:Q", title="95% CI low", format=".3f"),
            alt.Tooltip(f"{ci[1]}:Q", title="95% CI high", format=".3f"),
        ]
    if check:
        tooltip.append(alt.Tooltip(f"{check}:Q", title=metric_label(check), format=".3f"))
    bars = (
        base.mark_bar()
        .encode(
            y=alt.Y(f"{metric}:Q", title=y_title),
            color=method_color(data),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.25)),
            tooltip=tooltip,
        )
        .add_params(pick)
    )
    layers: list[alt.Chart] = [bars]
    if ci:
        layers.append(base.mark_rule(color="black").encode(y=f"{ci[0]}:Q", y2=f"{ci[1]}:Q"))
    if check:
        layers.append(check_marks(base, check).encode(y=f"{check}:Q", tooltip=tooltip))
    if reference is not None:
        layers.append(
            alt.Chart(pl.DataFrame({"reference": [reference]}))
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(y="reference:Q")
        )
    notes = ["error bars: bootstrap 95% CI over requests"] if ci else []
    if check:
        notes.append("diamond: the wall clock, the check")
    return alt.layer(*layers).properties(
        title=title(heading or f"{y_title} by category", *notes), width=420, height=260
    )


def per_position_curves(
    table: pl.DataFrame,
    value: str = "conditional_acceptance",
    *,
    heading: str | None = None,
) -> alt.Chart:
    """Acceptance at each draft position, one line per method, a dropdown to pick the category.

    ``table``: one row per (category, method, position) with ``value`` and ``verified`` (the
    number of drafts that reached the position), e.g. from
    ``specviz.metrics.per_position(events, by=["category", "method"])``. With the dropdown on
    "all" the lines of every category are drawn, thin, one per (category, method).
    """
    needed = ["category", "method", "position", value, "verified"]
    require_columns(table, needed, "per_position_curves")
    data = table.select(needed).filter(pl.col(value).is_not_null())
    categories = sorted_unique(data, "category")
    pick = category_dropdown(categories, initial=categories[0])
    toggle = legend_toggle("method")
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("position:O", title="Draft position (0-based)"),
            y=alt.Y(f"{value}:Q", title=metric_label(value), scale=alt.Scale(domain=[0, 1])),
            color=method_color(data),
            detail="category:N",
            opacity=alt.condition(toggle, alt.value(1.0), alt.value(0.15)),
            tooltip=[
                alt.Tooltip("category:N", title="Category"),
                alt.Tooltip("method:N", title="Method"),
                alt.Tooltip("position:O", title="Draft position"),
                alt.Tooltip(f"{value}:Q", format=".3f", title=metric_label(value)),
                alt.Tooltip("verified:Q", title="Drafts that reached it"),
            ],
        )
        .add_params(pick, toggle)
        .transform_filter(category_filter(pick))
        .properties(
            title=title(
                heading or "Acceptance by draft position",
                "accepted / drafts that reached the position: comparable across k",
            ),
            width=420,
            height=260,
        )
    )
