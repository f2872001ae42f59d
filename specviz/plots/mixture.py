"""Single-task against multitask streams: throughput, the mixture sweep, and why it degrades."""

from __future__ import annotations

import altair as alt
import polars as pl

from specviz.metrics.degradation import TERM_LABELS, TERMS
from specviz.plots.common import (
    PlotError,
    check_marks,
    legend_toggle,
    method_color,
    metric_label,
    require_columns,
    title,
)

STREAM_ORDER = ["single-task", "multitask"]


def single_vs_multitask(
    table: pl.DataFrame, metric: str, *, heading: str | None = None, check: str | None = None
) -> alt.LayerChart:
    """``metric`` of single-task and multitask streams side by side, per method.

    ``table``: one row per (method, stream) where ``stream`` is ``single-task`` or
    ``multitask``, e.g. ``specviz.metrics.request_summary`` over requests labelled by
    ``specviz.metrics.degradation.label_streams``. ``check``: a column drawn as a diamond on
    each bar, labelled as the wall-clock check (the bars being modelled figures).
    """
    columns = ["method", "stream", metric, *([check] if check else [])]
    require_columns(table, columns, "single_vs_multitask")
    data = table.select(columns).filter(pl.col(metric).is_not_null())
    if data.height == 0:
        raise PlotError(f"single_vs_multitask: no {metric} values to draw")
    label = metric_label(metric)
    tooltip = [
        alt.Tooltip("method:N", title="Method"),
        alt.Tooltip("stream:N", title="Stream"),
        alt.Tooltip(f"{metric}:Q", title=label, format=".3f"),
    ]
    if check:
        tooltip.append(alt.Tooltip(f"{check}:Q", title=metric_label(check), format=".3f"))
    base = alt.Chart(data).encode(
        x=alt.X("method:N", title="Method"),
        xOffset=alt.XOffset("stream:N", sort=STREAM_ORDER),
        tooltip=tooltip,
    )
    bars = base.mark_bar().encode(
        y=alt.Y(f"{metric}:Q", title=label),
        color=alt.Color("stream:N", title="Stream", sort=STREAM_ORDER),
    )
    layers = [bars]
    if check:
        layers.append(check_marks(base, check).encode(y=f"{check}:Q"))
    return alt.layer(*layers).properties(
        title=title(
            heading or f"{label}: single-task vs multitask",
            "diamond: the wall clock, the check" if check else None,
        ),
        width=420,
        height=240,
    )


def task_share(requests: pl.DataFrame) -> pl.DataFrame:
    """Per mixture: requests, categories and the share of its largest task (1.0 = one task)."""
    require_columns(requests, ["mixture", "category", "run_id"], "task_share")
    counts = requests.group_by("mixture", "category").agg(pl.len().alias("n"))
    return counts.group_by("mixture").agg(
        pl.col("n").sum().alias("requests"),
        pl.col("category").n_unique().alias("categories"),
        (pl.col("n").max() / pl.col("n").sum()).alias("largest_task_share"),
    )


def mixture_sweep(
    table: pl.DataFrame, metric: str = "speedup_total", *, clock: str | None = None
) -> alt.LayerChart:
    """``metric`` of every mixture against how concentrated it is on one task.

    ``table``: one row per (mixture, method) with ``metric`` and ``largest_task_share`` (from
    :func:`task_share`); x runs from 1.0 (a single task) down to 1/n (the uniform mix). Points
    of one method are joined in x order; click the legend to highlight a method. ``clock``
    (``modelled``, ``wall clock``) names the seconds the metric was computed on, in the axis
    title.
    """
    require_columns(table, ["mixture", "method", "largest_task_share", metric], "mixture_sweep")
    data = table.select("mixture", "method", "largest_task_share", metric).filter(
        pl.col(metric).is_not_null()
    )
    pick = legend_toggle("method")
    label = metric_label(metric) + (f", {clock}" if clock else "")
    base = alt.Chart(data).encode(
        x=alt.X(
            "largest_task_share:Q",
            title="Share of the largest task in the stream",
            scale=alt.Scale(reverse=True),
        ),
        y=alt.Y(f"{metric}:Q", title=label),
        color=method_color(data),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.2)),
    )
    line = (
        base.transform_aggregate(value=f"mean({metric})", groupby=["method", "largest_task_share"])
        .mark_line()
        .encode(y="value:Q")
    )
    points = (
        base.mark_circle(size=70)
        .encode(
            tooltip=[
                alt.Tooltip("mixture:N", title="Mixture"),
                alt.Tooltip("method:N", title="Method"),
                alt.Tooltip("largest_task_share:Q", format=".2f", title="Largest task's share"),
                alt.Tooltip(f"{metric}:Q", format=".3f", title=label),
            ]
        )
        .add_params(pick)
    )
    return alt.layer(line, points).properties(
        title=title(
            f"{label} from one task to the uniform mix",
            "line: mean over the mixtures at the same share",
        ),
        width=420,
        height=260,
    )


def degradation_bars(table: pl.DataFrame) -> alt.FacetChart:
    """Where a multitask stream's extra time goes, as % of the single-task reference time.

    ``table``: ``specviz.metrics.degradation.degradation`` output with a ``method`` column. Each
    bar is one part (composition, tuning, k mismatch, carry-over, residual) of one (method, mixture);
    black ticks mark the bootstrap interval; the parts add up to the total.
    """
    parts = list(TERMS)
    needed = [
        "method",
        "mixture",
        "reference_s",
        "total",
        *[f"{p}{s}" for p in parts for s in ("", "_low", "_high")],
    ]
    require_columns(table, needed, "degradation_bars")
    long = pl.concat(
        [
            table.select(
                "method",
                "mixture",
                pl.lit(TERM_LABELS[p]).alias("part"),
                (100 * pl.col(p) / pl.col("reference_s")).alias("percent"),
                (100 * pl.col(f"{p}_low") / pl.col("reference_s")).alias("low"),
                (100 * pl.col(f"{p}_high") / pl.col("reference_s")).alias("high"),
                pl.col(p).alias("seconds"),
                (100 * pl.col("total") / pl.col("reference_s")).alias("total_percent"),
            )
            for p in parts
        ]
    ).filter(pl.col("percent").is_not_null())
    if long.height == 0:
        raise PlotError("degradation_bars: no decomposed multitask stream")
    long = long.with_columns(pl.format("{} · {}", "method", "mixture").alias("stream"))
    return _faceted_parts(long, parts)


def _faceted_parts(long: pl.DataFrame, parts: list[str]) -> alt.FacetChart:
    base = alt.Chart().encode(
        y=alt.Y("part:N", title=None, sort=[TERM_LABELS[p] for p in parts]),
    )
    bars = base.mark_bar().encode(
        x=alt.X("percent:Q", title="% of the single-task reference time"),
        color=alt.condition("datum.percent > 0", alt.value("#e53935"), alt.value("#43a047")),
        tooltip=[
            alt.Tooltip("stream:N", title="Method · mixture"),
            alt.Tooltip("part:N", title="Term"),
            alt.Tooltip("percent:Q", format="+.1f", title="% of single-task decode time"),
            alt.Tooltip("seconds:Q", format="+.3f", title="Extra seconds"),
            alt.Tooltip("low:Q", format="+.1f", title="95% CI low, %"),
            alt.Tooltip("high:Q", format="+.1f", title="95% CI high, %"),
            alt.Tooltip("total_percent:Q", format="+.1f", title="Total extra time, %"),
        ],
    )
    ci = base.mark_rule(color="black").encode(x="low:Q", x2="high:Q")
    return (
        alt.layer(bars, ci, data=long)
        .properties(width=360)
        .facet(
            row=alt.Row("stream:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left"))
        )
        .properties(
            title=title(
                "Why the multitask stream is slower",
                "bars: share of the extra time; black: bootstrap 95% CI",
            )
        )
    )


def theory_vs_measurement(table: pl.DataFrame) -> alt.LayerChart:
    """Predicted against measured decode speedup, one point per group, with the y = x line.

    ``table``: ``specviz.metrics.theory.theory_vs_measured`` output with a ``method`` column
    (and ``category`` when grouped by it). Points on the line: the i.i.d. model explains the
    measurement; below it: acceptance is burstier than one alpha per position assumes.
    """
    require_columns(
        table, ["method", "predicted_speedup", "measured_speedup", "alpha"], "theory_vs_measurement"
    )
    cols = ["method", "predicted_speedup", "measured_speedup", "alpha"]
    if "category" in table.columns:
        cols.append("category")
    data = table.select(cols).drop_nulls(["predicted_speedup", "measured_speedup"])
    if data.height == 0:
        raise PlotError("theory_vs_measurement: no group has both a prediction and a measurement")
    hi = float(max(data["predicted_speedup"].max(), data["measured_speedup"].max())) * 1.1
    lo = float(min(data["predicted_speedup"].min(), data["measured_speedup"].min(), 1.0)) * 0.9
    diagonal = (
        alt.Chart(pl.DataFrame({"x": [lo, hi]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="x:Q", y="x:Q")
    )
    pick = legend_toggle("method")
    names = {
        "method": "Method",
        "category": "Category",
        "predicted_speedup": "Predicted decode speedup (×)",
        "measured_speedup": "Measured decode speedup (×)",
        "alpha": "α (accepted / verified)",
    }
    tooltip = [
        alt.Tooltip(c + (":N" if c in ("method", "category") else ":Q"), title=names[c])
        if c in ("method", "category")
        else alt.Tooltip(f"{c}:Q", title=names[c], format=".3f")
        for c in cols
    ]
    points = (
        alt.Chart(data)
        .mark_point(filled=True, size=70)
        .encode(
            x=alt.X(
                "predicted_speedup:Q",
                title="Predicted decode speedup (Leviathan et al.)",
                scale=alt.Scale(domain=[lo, hi]),
            ),
            y=alt.Y(
                "measured_speedup:Q",
                title="Measured decode speedup",
                scale=alt.Scale(domain=[lo, hi]),
            ),
            color=method_color(data),
            shape=alt.Shape("category:N", title="Category")
            if "category" in cols
            else alt.Undefined,
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.2)),
            tooltip=tooltip,
        )
        .add_params(pick)
    )
    return alt.layer(diagonal, points).properties(
        title=title("Theory vs measurement", "dashed: prediction = measurement"),
        width=360,
        height=360,
    )


def predicted_speedup_by_k(
    curve: pl.DataFrame, measured_k: list[int] | None = None
) -> alt.HConcatChart:
    """Predicted speedup against draft length k per category, with a k slider.

    ``curve``: ``specviz.metrics.theory.predicted_speedup_curve`` output (one row per group and
    k). The slider moves a rule to a k; beside the chart, every category's prediction at that k,
    sorted by value;
    ``measured_k`` (the k values actually run) start the slider at the first of them.
    """
    require_columns(
        curve, ["category", "drafter", "k", "predicted_speedup"], "predicted_speedup_by_k"
    )
    data = curve.select("category", "drafter", "k", "predicted_speedup", "alpha").drop_nulls(
        "predicted_speedup"
    )
    if data.height == 0:
        raise PlotError("predicted_speedup_by_k: no predictions")
    k_min, k_max = int(data["k"].min()), int(data["k"].max())
    start = (measured_k or [k_min])[0]
    k = alt.param(
        name="k_pick", value=start, bind=alt.binding_range(min=k_min, max=k_max, step=1, name="k ")
    )
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("k:Q", title="Draft length k", scale=alt.Scale(domain=[k_min, k_max])),
            y=alt.Y("predicted_speedup:Q", title="Predicted decode speedup"),
            color=alt.Color("category:N", title="Category"),
            strokeDash=alt.StrokeDash("drafter:N", title="Drafter"),
            tooltip=[
                alt.Tooltip("category:N", title="Category"),
                alt.Tooltip("drafter:N", title="Drafter"),
                alt.Tooltip("k:Q", title="Draft length k"),
                alt.Tooltip("alpha:Q", format=".3f", title="α (accepted / verified)"),
                alt.Tooltip("predicted_speedup:Q", format=".3f", title="Predicted speedup (×)"),
            ],
        )
        .properties(width=420, height=260)
    )
    rule = (
        alt.Chart(data)
        .mark_rule(color="black")
        .encode(x="k:Q")
        .transform_filter(f"datum.k == {k.name}")
    )
    # the values at the chosen k as a list sorted by value, beside the chart: labels placed at
    # the points piled on top of each other where the curves meet (k = 2)
    readout = (
        alt.Chart(data)
        .transform_filter(f"datum.k == {k.name}")
        .transform_window(
            rank="row_number()",
            sort=[alt.SortField("predicted_speedup", order="descending")],
        )
        .transform_calculate(
            label="datum.category + ' · ' + datum.drafter + ': '"
            " + format(datum.predicted_speedup, '.2f')"
        )
        .mark_text(align="left", fontSize=11)
        .encode(
            x=alt.value(0),
            y=alt.Y("rank:O", axis=None),
            text="label:N",
            color=alt.Color("category:N", title="Category"),
        )
        .properties(
            width=240,
            height=alt.Step(14),
            title="Predicted speedup at the chosen k",
            view=alt.ViewBackground(strokeOpacity=0),
        )
    )
    return (
        alt.hconcat(alt.layer(lines, rule), readout)
        .add_params(k)
        .properties(
            title=title("Predicted speedup by draft length", "move the slider to read a k"),
        )
    )
