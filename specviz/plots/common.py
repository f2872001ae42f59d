"""What every specviz chart shares: input checks, row caps, labels, colours, controls.

Charts are built from tables that are already small: metric tables from :mod:`specviz.metrics`
(one row per group) or raw per-token / per-round rows cut down by :func:`cap_rows`. altair's
5,000-row guard stays on as a safety net (a chart that would embed more raises
``MaxRowsError``), so :data:`RAW_ROW_LIMIT` is the most raw rows one chart embeds, and a capped
chart says so in its subtitle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import altair as alt
import polars as pl

from specviz.errors import SpecvizError

RAW_ROW_LIMIT = 5_000

#: Axis titles of metric columns; the formulas are in specviz.metrics and docs/metrics.md.
METRIC_LABELS: dict[str, str] = {
    "acceptance_rate": "Acceptance rate (accepted / drafted)",
    "alpha": "Conditional acceptance α (accepted / verified)",
    "conditional_acceptance": "Conditional acceptance (accepted / verified)",
    "vllm_acceptance": "Acceptance per drafting round (vLLM)",
    "mean_accepted_length": "Mean accepted length (tokens / verify step)",
    "tokens_per_s": "Tokens per second",
    "modelled_tokens_per_s": "Tokens per second (modelled)",
    "wall_tokens_per_s": "Tokens per second (wall clock)",
    "speedup_modelled": "Speedup vs baseline (modelled, ratio of total tokens/s)",
    "speedup_wall": "Speedup vs baseline (wall clock, ratio of total tokens/s)",
    "speedup": "Speedup vs autoregressive baseline",
    "speedup_total": "Speedup vs baseline (ratio of total tokens/s)",
    "mean_k": "Mean draft length k",
}

#: Colours of token outcomes, shared by the token charts and the coloured output text.
STATUS_COLORS: dict[str, str] = {
    "accepted": "#4caf50",
    "rejected": "#e53935",
    "unverified": "#bdbdbd",
    "correction": "#fb8c00",
    "bonus": "#1e88e5",
    "prefill": "#757575",
}


#: The legend entry of a wall-clock figure drawn beside a modelled one.
CHECK_LABEL = "wall clock (the check)"


class PlotError(SpecvizError):
    """A chart was given a table it cannot draw (missing columns, no rows)."""


def metric_label(column: str) -> str:
    return METRIC_LABELS.get(column, column.replace("_", " "))


def require_columns(frame: pl.DataFrame, columns: Iterable[str], chart: str) -> None:
    """Raise PlotError naming the columns ``chart`` needs and ``frame`` lacks, or no rows."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PlotError(
            f"{chart}: the table lacks column(s) {', '.join(missing)} "
            f"(it has {', '.join(frame.columns) or 'none'})"
        )
    if frame.height == 0:
        raise PlotError(f"{chart}: the table has no rows")


def cap_rows(
    frame: pl.DataFrame, limit: int = RAW_ROW_LIMIT, what: str = "rows"
) -> tuple[pl.DataFrame, str | None]:
    """The first ``limit`` rows of ``frame`` and, when rows were dropped, a note saying so."""
    if limit < 1:
        raise PlotError(f"row limit must be >= 1 (got {limit})")
    if frame.height <= limit:
        return frame, None
    return frame.head(limit), f"capped: showing the first {limit:,} of {frame.height:,} {what}"


def title(text: str, *notes: str | None) -> alt.TitleParams:
    """A chart title whose subtitle lists the notes given (cap notices, conventions)."""
    lines = [n for n in notes if n]
    return alt.TitleParams(text=text, subtitle=lines or alt.Undefined, anchor="start")


def category_dropdown(
    categories: Sequence[str], name: str = "category", initial: str | None = None
) -> alt.Parameter:
    """A select control over ``categories`` plus "all" (null): use :func:`category_filter`."""
    options: list[str | None] = [None, *categories]
    labels = ["all", *categories]
    return alt.param(
        name=name,
        value=initial,
        bind=alt.binding_select(options=options, labels=labels, name="Category "),
    )


def category_filter(param: alt.Parameter, field: str = "category") -> str:
    """A filter expression: every row when ``param`` is null, else rows of that category."""
    return f"{param.name} == null || datum[{field!r}] == {param.name}"


def legend_toggle(field: str) -> alt.Parameter:
    """Click a legend entry to highlight it (shift-click for several); click again to reset."""
    return alt.selection_point(fields=[field], bind="legend")


def sorted_unique(frame: pl.DataFrame, column: str) -> list[str]:
    return sorted(str(v) for v in frame[column].unique().drop_nulls().to_list())


def method_color(frame: pl.DataFrame, title: str = "Method") -> alt.Color:
    """Colour by ``method`` with a stable order: methods sorted, the baseline ``none`` last, so
    a method keeps its colour in charts with and without the baseline."""
    return alt.Color("method:N", title=title, scale=alt.Scale(domain=method_order(frame)))


def method_order(frame: pl.DataFrame) -> list[str]:
    """The methods of ``frame`` sorted, the baseline ``none`` last."""
    methods = sorted_unique(frame, "method")
    return [m for m in methods if m != "none"] + (["none"] if "none" in methods else [])


def method_label() -> pl.Expr:
    """``method``: the drafter, its k-policy and k in one label (``none`` for the baseline)."""
    return (
        pl.when(pl.col("drafter") == "none")
        .then(pl.lit("none"))
        .otherwise(pl.format("{} {} k={}", pl.col("drafter"), pl.col("policy"), pl.col("k")))
        .alias("method")
    )


def check_marks(base: alt.Chart, column: str) -> alt.Chart:
    """Black diamonds at ``column`` (the wall-clock figure beside a modelled bar), with a legend
    entry saying it is the check; ``base`` carries the bars' position encodings."""
    return (
        base.transform_filter(f"isValid(datum[{column!r}])")
        .transform_calculate(clock=f"'{CHECK_LABEL}'")
        .mark_point(shape="diamond", filled=True, size=60, color="black")
        .encode(
            shape=alt.Shape(
                "clock:N", title=None, scale=alt.Scale(domain=[CHECK_LABEL], range=["diamond"])
            ),
        )
    )
