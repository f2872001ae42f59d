"""Charts: built from metric tables, valid Vega-Lite, capped raw views that say so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import altair as alt
import polars as pl
import pytest
from report_fixtures import default_conditions, write_study

from specviz.metrics import (
    degradation,
    label_streams,
    per_position,
    predicted_speedup_curve,
    request_summary,
    speedup,
    summary,
    theory_vs_measured,
)
from specviz.plots import (
    PlotError,
    cap_rows,
    degradation_bars,
    k_trajectory,
    method_label,
    metric_by_category,
    mixture_sweep,
    per_position_curves,
    predicted_speedup_by_k,
    single_vs_multitask,
    task_share,
    theory_vs_measurement,
    token_rounds,
    token_table,
)
from specviz.report.tables import stream_labels
from specviz.rundir import scan_events, scan_requests


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    study = write_study(tmp_path_factory.mktemp("plots") / "study", default_conditions())
    requests = scan_requests(study).collect().with_columns(method_label())
    methods = requests.select("run_id", "method").unique("run_id")
    events = scan_events(study).collect().join(methods, on="run_id")
    return events, requests


def spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()  # validates against the Vega-Lite schema


def objects(node: object) -> Iterator[dict]:
    """Every JSON object in a chart's specification, at any depth."""
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            yield from objects(value)


def params(chart: alt.TopLevelMixin) -> list[dict]:
    return [p for node in objects(spec(chart)) for p in node.get("params", [])]


def controls(chart: alt.TopLevelMixin, kind: str) -> list[dict]:
    """Params bound to an input of ``kind`` (select, range)."""
    return [
        p
        for p in params(chart)
        if isinstance(p.get("bind"), dict) and p["bind"].get("input") == kind
    ]


def inline_rows(chart: alt.TopLevelMixin) -> int:
    return sum(len(v) for v in spec(chart).get("datasets", {}).values())


def test_metric_by_category_draws_one_bar_per_category_and_method(tables) -> None:
    events, _ = tables
    table = summary(events, by=["category", "method"])
    chart = metric_by_category(table, "mean_accepted_length", reference=1.0)
    assert inline_rows(chart) == table.height + 1  # bars + the reference rule
    assert any(p.get("bind") == "legend" for p in params(chart))


def test_per_position_curves_have_a_category_dropdown(tables) -> None:
    events, _ = tables
    chart = per_position_curves(per_position(events, by=["category", "method"]))
    dropdowns = controls(chart, "select")
    assert dropdowns and dropdowns[0]["bind"]["labels"][0] == "all"


def test_mixture_charts_build_from_metric_tables(tables) -> None:
    events, requests = tables
    labelled = stream_labels(label_streams(requests).collect())
    streams = request_summary(labelled, by=["method", "stream"])
    spec(single_vs_multitask(streams, "tokens_per_s"))
    sweep = speedup(labelled, by=["mixture", "method"], n_boot=100).join(
        task_share(requests), on="mixture"
    )
    assert sorted(sweep["largest_task_share"].unique().to_list()) == [0.5, 1.0]
    spec(mixture_sweep(sweep, "speedup_total"))
    spec(degradation_bars(stream_labels(degradation(labelled, n_boot=100))))
    theory = stream_labels(theory_vs_measured(events, by=["drafter", "policy", "k", "category"]))
    spec(theory_vs_measurement(theory))
    curve = predicted_speedup_curve(events, by=["drafter", "category"], ks=range(1, 6))
    sliders = controls(predicted_speedup_by_k(curve, [4]), "range")
    assert len(sliders) == 1 and sliders[0]["value"] == 4


def test_token_table_statuses_agree_with_the_metrics(tables) -> None:
    events, _ = tables
    run = events.filter(pl.col("drafter") != "none", pl.col("mixture") == "coding")
    tokens = token_table(run)
    counts = dict(tokens.group_by("status").len().iter_rows())
    metrics = summary(run)
    assert counts["accepted"] == metrics["accepted"][0]
    drafted = counts["accepted"] + counts.get("rejected", 0) + counts.get("unverified", 0)
    assert drafted == metrics["drafted"][0]
    assert counts["rejected"] + counts.get("unverified", 0) > 0
    assert counts["prefill"] == metrics["requests"][0]
    # the target's token sits after every draft of its round: no two tokens share a cell
    assert tokens.select("request_id", "round", "slot").is_duplicated().sum() == 0


def test_token_rounds_caps_requests_and_rows_and_says_so(tables) -> None:
    events, _ = tables
    tokens = token_table(events.filter(pl.col("drafter") != "none"))
    chart = token_rounds(tokens, requests_per_category=1, max_rows=50)
    subtitle = " ".join(spec(chart)["title"]["subtitle"])
    assert "capped: 1 requests per category" in subtitle
    assert "showing the first 50 of" in subtitle
    assert inline_rows(chart) == 50 + 2  # the tokens, and one message row per category


def test_uncapped_views_say_nothing_about_caps(tables) -> None:
    events, _ = tables
    one = events.filter(pl.col("drafter") != "none", pl.col("mixture") == "writing")
    subtitle = spec(token_rounds(token_table(one)))["title"]["subtitle"]
    assert not any("capped" in line for line in subtitle)


def test_k_trajectory_links_a_brush_and_refuses_several_runs(tables) -> None:
    events, _ = tables
    multi = events.filter(pl.col("drafter") != "none", pl.col("mixture") == "uniform-interleaved")
    chart = k_trajectory(multi)
    assert any(p.get("select", {}).get("type") == "interval" for p in params(chart))
    with pytest.raises(PlotError, match="one run"):
        k_trajectory(events)


def test_cap_rows_reports_what_it_dropped() -> None:
    frame = pl.DataFrame({"x": range(10)})
    kept, note = cap_rows(frame, 4, "tokens")
    assert kept.height == 4 and note == "capped: showing the first 4 of 10 tokens"
    assert cap_rows(frame, 10)[1] is None


def test_missing_columns_name_the_chart_and_the_columns() -> None:
    with pytest.raises(PlotError, match=r"metric_by_category: .*method"):
        metric_by_category(pl.DataFrame({"category": ["a"], "x": [1.0]}), "x")
    with pytest.raises(PlotError, match="no rows"):
        metric_by_category(
            pl.DataFrame(schema={"category": pl.String, "method": pl.String, "x": pl.Float64}), "x"
        )


def test_more_raw_rows_than_altair_allows_fail_loudly(tmp_path: Path) -> None:
    big = pl.DataFrame({"category": ["a"] * 6000, "method": ["m"] * 6000, "x": [1.0] * 6000})
    with pytest.raises(alt.MaxRowsError):
        metric_by_category(big, "x").to_dict()


def tooltip_titles(chart: alt.TopLevelMixin) -> list[tuple[str, str | None]]:
    """(field, title) of every tooltip entry in the chart's specification."""
    found: list[tuple[str, str | None]] = []
    for node in objects(spec(chart)):
        tips = node.get("tooltip")
        for tip in tips if isinstance(tips, list) else [tips] if isinstance(tips, dict) else []:
            if "field" in tip:
                found.append((tip["field"], tip.get("title")))
    return found


def test_every_tooltip_has_a_readable_title(tables) -> None:
    events, requests = tables
    labelled = stream_labels(label_streams(requests).collect())
    streams = request_summary(labelled, by=["method", "stream"])
    sweep = speedup(labelled, by=["mixture", "method"], n_boot=100).join(
        task_share(requests), on="mixture"
    )
    run = events.filter(pl.col("drafter") != "none", pl.col("mixture") == "uniform-interleaved")
    charts = [
        single_vs_multitask(streams, "tokens_per_s"),
        mixture_sweep(sweep, "speedup_total"),
        degradation_bars(stream_labels(degradation(labelled, n_boot=100))),
        theory_vs_measurement(
            stream_labels(theory_vs_measured(events, by=["drafter", "policy", "k", "category"]))
        ),
        predicted_speedup_by_k(
            predicted_speedup_curve(events, by=["drafter", "category"], ks=range(1, 6))
        ),
        metric_by_category(summary(events, by=["category", "method"]), "tokens_per_s"),
        per_position_curves(per_position(events, by=["category", "method"])),
        token_rounds(token_table(run)),
        k_trajectory(run),
    ]
    for chart in charts:
        tips = tooltip_titles(chart)
        assert tips, chart
        untitled = [field for field, name in tips if not name or "_" in name]
        assert untitled == [], untitled  # no raw field name such as tokens_per_s


def test_speed_bars_carry_the_wall_clock_as_a_labelled_check(tables) -> None:
    _, requests = tables
    labelled = stream_labels(label_streams(requests).collect())
    streams = request_summary(labelled, by=["method", "stream"]).with_columns(
        pl.col("tokens_per_s").alias("wall_tokens_per_s"),
        (pl.col("tokens_per_s") * 0.9).alias("modelled_tokens_per_s"),
    )
    chart = spec(single_vs_multitask(streams, "modelled_tokens_per_s", check="wall_tokens_per_s"))
    text = str(chart)
    assert "Tokens per second (modelled)" in text and "wall clock (the check)" in text


def test_token_slider_shows_a_category_s_last_request_past_its_end(tables) -> None:
    events, _ = tables
    run = events.filter(pl.col("drafter") != "none", pl.col("mixture") == "uniform-interleaved")
    chart = spec(token_rounds(token_table(run)))
    text = str(chart)
    assert "min(token_request, datum.last_nth)" in text
    assert "has no request #" in text


def test_predicted_speedup_values_are_a_sorted_list_beside_the_curves(tables) -> None:
    events, _ = tables
    curve = predicted_speedup_curve(events, by=["drafter", "category"], ks=range(1, 6))
    chart = spec(predicted_speedup_by_k(curve, [2]))
    readout = chart["hconcat"][1]
    assert readout["mark"]["type"] == "text"
    assert readout["encoding"]["y"]["field"] == "rank"  # one row per value: no overlap
