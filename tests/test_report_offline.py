"""The exported page works with no network: one Vega bundle, every chart drawn, no script error,
no request to another host; untrusted text is shown as text and never runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import altair as alt
import nbformat
import polars as pl
import pytest
from report_chromium import open_offline, require_chromium
from report_fixtures import XSS_TEXTS, default_conditions, write_study

from specviz.metrics import per_position, summary
from specviz.plots import (
    k_trajectory,
    metric_by_category,
    per_position_curves,
    predicted_speedup_by_k,
    token_rounds,
    token_table,
)
from specviz.report.export import LIVE_ONLY_TAG, notebook_to_html
from specviz.report.publish import Published
from specviz.report.tokens import colored_output, output_text
from specviz.report.vega import VegaLoader, inline_script, render, script_json
from specviz.rundir import scan_events, scan_requests


def chart_cell(chart: alt.TopLevelMixin) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("chart")
    cell.outputs = [nbformat.v4.new_output("display_data", data=render(chart.to_dict()))]
    return cell


def html_cell(markup: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("html")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": markup})]
    return cell


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = default_conditions(texts=XSS_TEXTS)
    return write_study(tmp_path_factory.mktemp("offline") / "study", runs)


def test_script_json_cannot_close_the_script_element() -> None:
    text = script_json({"t": "</script><script>alert(1)</script>", "a": "x & y"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"t": "</script><script>alert(1)</script>", "a": "x & y"}


def test_inline_script_neutralises_closing_tags() -> None:
    source = 'var s = "</script><!-- x";'
    assert "</script" not in inline_script(source)
    assert "<!--" not in inline_script(source)


def test_page_has_one_bundle_and_no_outside_reference(study: Path) -> None:
    events = scan_events(study).collect()
    nb = nbformat.v4.new_notebook()
    loader = nbformat.v4.new_code_cell("enable_charts()")
    bundle = VegaLoader()._repr_mimebundle_()
    loader.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    widget = nbformat.v4.new_code_cell("widgets", metadata={"tags": [LIVE_ONLY_TAG]})
    widget.outputs = [nbformat.v4.new_output("stream", name="stdout", text="LIVE-ONLY-MARK")]
    published = nbformat.v4.new_code_cell("publish")
    published.outputs = [
        nbformat.v4.new_output("display_data", data=Published("x", 1)._repr_mimebundle_())
    ]
    table = summary(events.with_columns(method=pl.col("drafter")), by=["category", "method"])
    nb.cells = [
        loader,
        widget,
        published,
        chart_cell(metric_by_category(table, "tokens_per_s")),
        chart_cell(metric_by_category(table, "mean_accepted_length")),
    ]
    page = notebook_to_html(nb, "t")
    assert page.count("window.vegaEmbed=") == 1  # the bundle's export line, once
    assert "LIVE-ONLY-MARK" not in page and "published x" not in page
    assert "require.js" not in page and "<script src=" not in page
    assert "cdn.jsdelivr" not in page and "unpkg" not in page and "mathjax" not in page.lower()
    assert "Content-Security-Policy" in page


def test_report_page_draws_every_chart_offline_without_errors(study: Path, tmp_path: Path) -> None:
    require_chromium()
    events = scan_events(study).collect().with_columns(method=pl.col("drafter"))
    by = ["category", "method"]
    one_run = events.filter(pl.col("mixture") == "uniform-interleaved", pl.col("drafter") != "none")
    charts = [
        metric_by_category(summary(events, by=by), "acceptance_rate"),
        per_position_curves(per_position(events, by=by)),
        token_rounds(token_table(one_run)),
        k_trajectory(one_run),
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [chart_cell(c) for c in charts]
    page = tmp_path / "page.html"
    page.write_text(notebook_to_html(nb, "offline"))
    report = open_offline(page)
    assert report.charts_total == len(charts)
    assert report.charts_drawn == len(charts), report.chart_failures
    assert report.errors == []
    assert report.warnings == []
    assert report.external_requests == []


def test_untrusted_text_is_escaped_and_never_runs(study: Path, tmp_path: Path) -> None:
    require_chromium()
    events = scan_events(study).collect()
    requests = scan_requests(study).collect()
    run = requests.filter(pl.col("drafter") != "none")["run_id"][0]
    tokens = token_table(
        events.filter(pl.col("run_id") == run),
        decode=lambda ids: [XSS_TEXTS[i % len(XSS_TEXTS)] for i in range(len(ids))],
    )
    request_id = tokens["request_id"][0]
    tooltip_chart = (
        alt.Chart(pl.DataFrame({"x": [1, 2, 3], "t": list(XSS_TEXTS)}))
        .mark_text()
        .encode(x="x:O", text="t:N", tooltip="t:N")
        .properties(title=XSS_TEXTS[2])
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        chart_cell(tooltip_chart),
        chart_cell(token_rounds(tokens)),
        html_cell(colored_output(tokens, request_id).markup),
        html_cell(output_text(requests, request_id).markup),
    ]
    page = tmp_path / "xss.html"
    page.write_text(notebook_to_html(nb, XSS_TEXTS[0]))
    report = open_offline(
        page,
        evaluate={
            "text": "document.body.innerText",
            "imgs": "document.querySelectorAll('img').length",
            "injected": "document.querySelectorAll('[onerror]').length",
            "title": "document.title",
        },
    )
    assert report.dialogs == []
    assert report.errors == []
    assert report.charts_drawn == report.charts_total == 2
    assert report.evaluated["imgs"] == 0 and report.evaluated["injected"] == 0
    for text in XSS_TEXTS:
        assert text in report.evaluated["text"]  # shown literally
    assert report.evaluated["title"] == XSS_TEXTS[0]


def test_stock_altair_html_would_run_injected_script(tmp_path: Path) -> None:
    """Why specviz has its own renderer: altair's writes data into <script> unescaped."""
    require_chromium()
    chart = (
        alt.Chart(pl.DataFrame({"x": [1], "t": [XSS_TEXTS[2]]}))
        .mark_text()
        .encode(x="x:O", text="t:N")
    )
    bundle = chart._repr_mimebundle_()
    markup = (bundle[0] if isinstance(bundle, tuple) else bundle)["text/html"]
    page = tmp_path / "stock.html"
    page.write_text(f"<html><body>{markup}</body></html>")
    report = open_offline(page, chart_selector="div[id^=altair-viz]", timeout_s=3)
    assert report.dialogs  # the injected alert ran
    assert report.charts_drawn == 0


def test_tooltips_show_untrusted_text_as_text(tmp_path: Path) -> None:
    require_chromium()
    from report_chromium import PageReport, browser, record

    chart = (
        alt.Chart(pl.DataFrame({"x": [1, 2, 3], "t": list(XSS_TEXTS)}))
        .mark_square(size=2000)
        .encode(x="x:O", tooltip="t:N")
        .properties(width=300, height=80)
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [chart_cell(chart)]
    page = tmp_path / "tooltips.html"
    page.write_text(notebook_to_html(nb, "tooltips"))
    shown = []
    report = PageReport()
    with browser(require_chromium()) as cdp:
        for domain in ("Page", "Runtime"):
            cdp.send(f"{domain}.enable")
        cdp.send("Page.navigate", {"url": page.as_uri()})
        points: list = []
        for _ in range(40):
            cdp.pump(0.25)
            points = json.loads(
                cdp.evaluate(
                    "JSON.stringify(Array.from(document.querySelectorAll("
                    "'.specviz-chart .mark-symbol path')).map(p => {"
                    "const r = p.getBoundingClientRect(); "
                    "return [r.x + r.width / 2, r.y + r.height / 2]; }))"
                )
                or "[]"
            )
            if len(points) == 3:
                break
        for x, y in points:
            cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
            cdp.pump(0.4)
            shown.append(cdp.evaluate("document.getElementById('vg-tooltip-element').innerText"))
        for event in cdp.events:
            record(report, event)
    assert shown == list(XSS_TEXTS)  # the tooltip text is the markup itself, as text
    assert report.dialogs == [] and report.errors == []


def test_token_slider_past_a_category_s_last_request_shows_it_and_says_so(
    study: Path, tmp_path: Path
) -> None:
    """A category with one request: the slider at 1 draws that request, with a message."""
    from report_chromium import browser

    require_chromium()
    events = scan_events(study).collect()
    run = events.filter(pl.col("mixture") == "uniform-interleaved", pl.col("drafter") != "none")
    tokens = token_table(run)
    tokens = tokens.filter((pl.col("category") != "writing") | (pl.col("nth") == 0))
    nb = nbformat.v4.new_notebook()
    nb.cells = [chart_cell(token_rounds(tokens))]
    page = tmp_path / "slider.html"
    page.write_text(notebook_to_html(nb, "slider"))
    cells_js = "document.querySelectorAll('.specviz-chart .mark-rect path').length"
    text_js = (
        "Array.from(document.querySelectorAll('.specviz-chart .mark-text text'))"
        ".map(t => t.textContent).join('\\n')"
    )
    with browser(require_chromium()) as cdp:
        for domain in ("Page", "Runtime"):
            cdp.send(f"{domain}.enable")
        cdp.send("Page.navigate", {"url": page.as_uri()})
        for _ in range(60):
            cdp.pump(0.25)
            if cdp.evaluate(cells_js):
                break
        for name, value in (("token_category", "'writing'"), ("token_request", "'1'")):
            cdp.evaluate(
                f"(() => {{ const e = document.querySelector('.vega-bindings [name={name}]');"
                f" e.value = {value}; e.dispatchEvent(new Event("
                "e.tagName === 'SELECT' ? 'change' : 'input')); })()"
            )
            cdp.pump(0.5)
        drawn = cdp.evaluate(cells_js)
        text = cdp.evaluate(text_js)
    assert drawn > 0  # not an empty chart
    assert "request #0 of #0 to #0 in writing (this category has no request #1" in text


def test_predicted_speedups_at_k_2_do_not_overlap(tmp_path: Path) -> None:
    """Where the curves meet (three categories within 0.02 at k = 2), each value is readable."""
    require_chromium()
    curve = pl.DataFrame(
        [
            (category, "prompt-lookup", k, 1.5 + 0.01 * i - 0.1 * abs(k - 2), 0.5)
            for i, category in enumerate(("coding", "math", "writing"))
            for k in range(1, 6)
        ],
        schema=["category", "drafter", "k", "predicted_speedup", "alpha"],
        orient="row",
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [chart_cell(predicted_speedup_by_k(curve, [2]))]
    page = tmp_path / "readout.html"
    page.write_text(notebook_to_html(nb, "readout"))
    boxes_js = (
        "JSON.stringify(Array.from(document.querySelectorAll("
        "'.specviz-chart .mark-text.role-mark text'))"
        ".map(t => { const r = t.getBoundingClientRect(); return [r.top, r.bottom]; }))"
    )
    report = open_offline(page, evaluate={"boxes": boxes_js})
    assert report.charts_drawn == 1 and report.errors == []
    boxes = sorted(json.loads(report.evaluated["boxes"]))
    assert len(boxes) == curve.filter(pl.col("k") == 2)["predicted_speedup"].drop_nulls().len()
    assert all(a[1] <= b[0] + 0.5 for a, b in itertools.pairwise(boxes))
