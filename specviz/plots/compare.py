"""Two studies side by side on the same axes: one bar per study for every row, with intervals."""

from __future__ import annotations

import altair as alt
import polars as pl

from specviz.plots.common import PlotError, check_marks, require_columns, sorted_unique, title

#: Columns of :func:`compared_bars`'s table (``wall`` may be null: no wall-clock check).
COMPARE_COLUMNS = ("row", "study", "value", "low", "high", "wall")


def compared_bars(
    table: pl.DataFrame,
    *,
    heading: str,
    x_title: str,
    studies: list[str],
    method: str | None = None,
    reference: float | None = None,
) -> alt.LayerChart:
    """For every ``row``, one bar per study (``value`` with its ``low``/``high`` 95% interval
    as a black rule), and a diamond at ``wall`` where set (the wall clock, the check).

    ``studies``: the study labels in display order (their colours). With a ``method`` column in
    ``table``, a dropdown picks the method (``method`` first); ``reference`` draws a dashed
    vertical rule (1.0 for speedup, 0 for extra time).
    """
    require_columns(table, COMPARE_COLUMNS, "compared_bars")
    with_method = "method" in table.columns
    columns = [*COMPARE_COLUMNS, *(["method"] if with_method else [])]
    data = table.select(columns).filter(pl.col("value").is_not_null())
    if data.height == 0:
        raise PlotError(f"compared_bars: nothing to draw for {heading!r}")
    rows = data.unique("row", maintain_order=True)["row"].to_list()
    tooltip = [
        alt.Tooltip("row:N", title="What"),
        alt.Tooltip("study:N", title="Study"),
        alt.Tooltip("value:Q", title=x_title, format=".3f"),
        alt.Tooltip("low:Q", title="95% CI low", format=".3f"),
        alt.Tooltip("high:Q", title="95% CI high", format=".3f"),
        alt.Tooltip("wall:Q", title="Wall clock (the check)", format=".3f"),
    ]
    base = alt.Chart(data).encode(
        y=alt.Y("row:N", title=None, sort=rows, axis=alt.Axis(labelLimit=360)),
        yOffset=alt.YOffset("study:N", sort=studies),
        tooltip=tooltip,
    )
    pick = None
    if with_method:
        tooltip.insert(0, alt.Tooltip("method:N", title="Method"))
        methods = sorted_unique(data, "method")
        pick = alt.param(
            name="compare_method",
            value=method if method in methods else methods[0],
            bind=alt.binding_select(options=methods, name="Method "),
        )
        base = base.transform_filter(f"datum.method == {pick.name}").encode(tooltip=tooltip)
    bars = base.mark_bar().encode(
        x=alt.X("value:Q", title=x_title),
        color=alt.Color("study:N", title="Study", sort=studies),
    )
    ci = base.mark_rule(color="black").encode(x="low:Q", x2="high:Q")
    layers = [bars, ci]
    checked = bool(data["wall"].is_not_null().any())
    if checked:
        layers.append(check_marks(base, "wall").encode(x="wall:Q"))
    if reference is not None:
        layers.append(
            alt.Chart(pl.DataFrame({"reference": [reference]}))
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(x="reference:Q")
        )
    chart = alt.layer(*layers)
    if pick is not None:
        chart = chart.add_params(pick)
    return chart.properties(
        title=title(
            heading,
            "black: bootstrap 95% CI" + ("; diamond: the wall clock, the check" if checked else ""),
        ),
        width=520,
        height=alt.Step(11),
    )
