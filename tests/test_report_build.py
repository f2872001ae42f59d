"""``build_report``: one offline page that answers the question in numbers, or a clear error
and no file at all."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import polars as pl
import pytest
from report_chromium import FIRST_CHART_JS, PageReport, open_offline, require_chromium
from report_fixtures import (
    XSS_CATEGORY,
    XSS_TEXTS,
    SyntheticRun,
    default_conditions,
    isolate_jupyter,
    write_run,
    write_study,
)

from specviz.metrics import degradation, label_streams
from specviz.metrics.accounting import decode_clock
from specviz.plots import method_label
from specviz.plots.answer import TOTAL_TERM
from specviz.report import ReportError, build_report, load_runs
from specviz.report import kernel as kernel_module
from specviz.report.answer import ZERO, study_answer
from specviz.report.builder import REPORT_NOTEBOOKS, default_notebooks_dir
from specviz.report.kernel import CurrentInterpreterKernelManager, choose_kernel
from specviz.rundir import scan_requests

N_BOOT = 200


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(
        tmp_path_factory.mktemp("build") / "study",
        default_conditions(
            categories=("coding", "writing", XSS_CATEGORY), texts=(" and ".join(XSS_TEXTS),)
        ),
    )


@pytest.fixture(scope="module")
def built(study: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        isolate_jupyter(mp, home)
        start = time.perf_counter()
        out = build_report(study, home / "out" / "report.html", n_boot=N_BOOT, progress=False)
        return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def opened(built: tuple[Path, float]) -> PageReport:
    require_chromium()
    return open_offline(
        built[0],
        evaluate={
            "text": "document.body.innerText",
            "answer": "document.querySelector('.specviz-answer').innerText",
            "summary": "document.querySelector('.specviz-summary').textContent",
            "answer_before_charts": (
                "!!(document.querySelector('.specviz-answer').compareDocumentPosition("
                "document.querySelector('.specviz-chart')) & Node.DOCUMENT_POSITION_FOLLOWING)"
            ),
            "summary_folded": (
                "document.querySelector('.specviz-summary').closest('details:not([open])') !== null"
            ),
            "contents": (
                "Array.from(document.querySelectorAll('nav.specviz-contents a'))"
                ".map(a => [a.textContent, !!document.getElementById("
                "a.getAttribute('href').slice(1))])"
            ),
            "imgs": "document.querySelectorAll('img').length",
            "prompts": (
                "Array.from(document.querySelectorAll('details > pre'))"
                ".map(e => e.textContent).join('\\n')"
            ),
        },
    )


@pytest.mark.slow
def test_report_is_one_small_file_built_in_time(built: tuple[Path, float]) -> None:
    out, seconds = built
    assert out.is_file()
    assert out.stat().st_size < 5_000_000
    assert seconds < 120
    assert not list(out.parent.glob(".*partial"))


@pytest.mark.slow
def test_report_draws_every_chart_offline_with_no_error_or_request(opened: PageReport) -> None:
    assert opened.charts_total >= 10
    assert opened.charts_drawn == opened.charts_total, opened.chart_failures
    assert opened.errors == []
    assert opened.warnings == []  # Vega warns about specs it had to patch up
    assert opened.external_requests == []


@pytest.mark.slow
def test_output_text_and_labels_with_html_are_shown_and_never_run(opened: PageReport) -> None:
    assert opened.dialogs == []
    assert opened.evaluated["imgs"] == 0
    for text in (*XSS_TEXTS, XSS_CATEGORY):
        assert text in opened.evaluated["text"]
    prompts = opened.evaluated["prompts"]  # the prompts, shown as text in the token explorer
    assert prompts.startswith("Answer with: ")
    for text in XSS_TEXTS:
        assert text in prompts


@pytest.mark.slow
def test_an_in_process_report_says_under_its_title_that_specviz_measured_it(
    built: tuple[Path, float],
) -> None:
    page = built[0].read_text()
    assert "<strong>Specviz-measured</strong>" in page and "Server-measured" not in page


@pytest.mark.slow
def test_the_answer_comes_first_and_the_summary_tables_are_folded(
    study: Path, opened: PageReport
) -> None:
    first = opened.evaluated["answer"]
    assert first.startswith("How much slower is the multitask workload")
    assert opened.evaluated["answer_before_charts"]
    answer = study_answer(load_runs(study), n_boot=N_BOOT)
    assert answer["headline"]["text"] in first
    assert opened.evaluated["summary_folded"]  # the long tables sit in a closed <details>
    summary = opened.evaluated["summary"]
    assert answer["headline"]["text"] in summary
    requests = label_streams(decode_clock(scan_requests(study).collect())).collect()
    parts = degradation(requests, n_boot=N_BOOT).with_columns(method_label())
    row = parts.filter(pl.col("drafter") != "none").row(0, named=True)  # decode seconds
    pct = 100 * row["total"] / row["reference_s"]
    assert f"{pct:+.1f}% by the wall clock" in summary  # the wall clock, as the check


@pytest.mark.slow
def test_report_embeds_every_request_and_category_as_downloadable_csv(
    study: Path, built: tuple[Path, float]
) -> None:
    html = built[0].read_text()
    links = dict(re.findall(r'download="([^"]+)" href="data:text/csv;base64,([^"]+)"', html))
    assert {"requests.csv", "streams.csv", "categories.csv"} <= set(links)
    requests = pl.read_csv(io.BytesIO(base64.b64decode(links["requests.csv"])))
    assert requests.height == scan_requests(study).collect().height
    assert {"wall_s", "modelled_s"} <= set(requests.columns)
    categories = pl.read_csv(io.BytesIO(base64.b64decode(links["categories.csv"])))
    assert categories.height == 6  # 3 categories x 2 methods: every row, none truncated


@pytest.mark.slow
def test_contents_bar_links_every_section(opened: PageReport) -> None:
    contents = opened.evaluated["contents"]
    assert [label for label, _ in contents][:2] == ["Answer", "The numbers"]
    assert len(contents) == 2 + len(REPORT_NOTEBOOKS)
    assert all(found for _, found in contents)  # every link has its anchor on the page


@pytest.mark.slow
@pytest.mark.parametrize(("viewport", "screen"), [((1400, 1000), 1), ((800, 600), 2)])
def test_first_chart_starts_inside_the_first_screens(
    built: tuple[Path, float], viewport: tuple[int, int], screen: int
) -> None:
    report = open_offline(built[0], viewport=viewport, evaluate={"first": FIRST_CHART_JS})
    first = json.loads(report.evaluated["first"])
    assert (first["width"], first["height"]) == viewport
    assert first["top"] < screen * viewport[1], first


def _first_chart_spec(page: str) -> dict:
    """The Vega-Lite specification of the first chart in the page (document order)."""
    start = page.index('class="specviz-chart"')
    marker = "})("
    at = page.index(marker, start) + len(marker)
    spec, _ = json.JSONDecoder().raw_decode(page[at:])
    return spec


@pytest.mark.slow
def test_first_chart_draws_the_modelled_decomposition(
    study: Path, built: tuple[Path, float]
) -> None:
    spec = _first_chart_spec(built[0].read_text())
    rows = [r for values in spec["datasets"].values() for r in values]
    answer = study_answer(load_runs(study), n_boot=N_BOOT)
    drafted = [r for r in answer["streams"] if r["drafter"] != "none"]
    assert drafted
    for stream in drafted:
        mine = [r for r in rows if r["stream"].startswith(f"{stream['method']} · ")]
        total = next(r for r in mine if r["term"] == TOTAL_TERM)
        assert total["percent"] == pytest.approx(stream["total_pct"])  # modelled
        assert total["wall_percent"] == pytest.approx(stream["wall_total_pct"])  # the marker
        shown = {r["term"]: r["percent"] for r in mine if r["term"] != TOTAL_TERM}
        expected = {
            t["label"]: t["pct"]
            for t in stream["terms"]
            if t["status"] != ZERO and t["pct"] is not None  # not zero, and measured
        }
        assert shown == pytest.approx(expected)  # every term but the zero ones, modelled
    assert "(modelled)" in json.dumps(spec["title"])


@pytest.mark.slow
def test_terms_zero_by_construction_fold_into_one_footnote(built: tuple[Path, float]) -> None:
    page = built[0].read_text().lower()
    assert page.count("zero by construction") == 1


def _assert_fails_cleanly(tmp_path: Path, source: Path, match: str, **kwargs) -> None:
    out = tmp_path / "report.html"
    previous = '<meta name="generator" content="specviz 0.1.0">previous report'
    out.write_text(previous)  # a report specviz wrote, so only the data error can refuse it
    with pytest.raises(ReportError, match=match):
        build_report(source, out, progress=False, **kwargs)
    assert out.read_text() == previous  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, *[p.name for p in tmp_path.iterdir() if p != out and p.is_dir()]]
    )


def test_missing_source_is_named(tmp_path: Path) -> None:
    _assert_fails_cleanly(tmp_path, tmp_path / "nowhere", r"nowhere does not exist")


def test_directory_without_runs_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _assert_fails_cleanly(tmp_path, tmp_path / "empty", r"empty holds no run")


def test_run_that_recorded_nothing_is_named(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", SyntheticRun("r", "none", "coding", ("coding",)))
    (run / "events.parquet").unlink()
    (run / "requests.parquet").unlink()
    _assert_fails_cleanly(tmp_path, run, r"recorded nothing")


def test_unknown_category_is_named_with_the_known_ones(tmp_path: Path, study: Path) -> None:
    _assert_fails_cleanly(
        tmp_path,
        study,
        r"unknown category 'poetry'.*hold <img src=x onerror=\"alert\(5\)\">, coding, writing",
        categories=["poetry"],
    )


def test_runs_without_a_baseline_are_refused(tmp_path: Path) -> None:
    runs = default_conditions(drafters=("prompt-lookup",))
    source = write_study(tmp_path / "nobase", runs)
    _assert_fails_cleanly(tmp_path, source, r"no baseline run \(drafter 'none'\)")


def test_prompts_missing_from_the_baseline_are_named(tmp_path: Path) -> None:
    runs = [r for r in default_conditions() if not (r.drafter == "none" and r.mixture == "writing")]
    runs = [r for r in runs if not (r.drafter == "none" and r.mixture == "uniform-interleaved")]
    source = write_study(tmp_path / "partial", runs)
    _assert_fails_cleanly(tmp_path, source, r"have no baseline run.*writing-0")


def test_out_must_be_a_file(tmp_path: Path, study: Path) -> None:
    with pytest.raises(ReportError, match="is a directory"):
        build_report(study, tmp_path, progress=False)


@pytest.mark.slow
def test_a_failing_notebook_leaves_no_report(
    tmp_path: Path, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_jupyter(monkeypatch, tmp_path / "home")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in REPORT_NOTEBOOKS:
        text = (default_notebooks_dir() / f"{name}.py").read_text()
        if name == "acceptance_by_task":
            text += '\n# %%\nraise ValueError("the analysis broke")\n'
        (notebooks / f"{name}.py").write_text(text)
    out = tmp_path / "out" / "report.html"
    with pytest.raises(ReportError, match=r"ValueError: the analysis broke"):
        build_report(study, out, notebooks_dir=notebooks, n_boot=N_BOOT, progress=False)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_requested_kernel_must_exist() -> None:
    with pytest.raises(ReportError, match="no Jupyter kernel named 'no-such-kernel'"):
        choose_kernel("no-such-kernel")


def test_without_the_specviz_kernel_the_current_interpreter_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kernel_module, "KERNEL_NAME", "specviz-not-registered-here")
    choice = choose_kernel()
    assert choice.manager is CurrentInterpreterKernelManager
    import sys

    spec = CurrentInterpreterKernelManager(kernel_name=choice.name).kernel_spec
    assert spec.argv[0] == sys.executable


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--category", "poetry"], "unknown category 'poetry'"),
        ([], None),  # filled in: a missing directory
    ],
)
def test_specviz_report_exits_2_naming_the_problem(
    tmp_path: Path,
    study: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str | None,
) -> None:
    from specviz.cli import main

    source = study if message else tmp_path / "missing-study"
    out = tmp_path / "r.html"
    assert main(["report", str(source), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert (message or "missing-study does not exist") in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_report_controls_work_without_a_kernel(built: tuple[Path, float]) -> None:
    """Dropdowns and sliders are Vega params: moving them redraws the charts offline."""
    from report_chromium import browser

    texts = (
        "JSON.stringify(Array.from(document.querySelectorAll('.specviz-chart'))"
        ".map(c => Array.from(c.querySelectorAll('.mark-text text')).map(t => t.textContent)))"
    )

    def set_control(name: str, index_or_value: str) -> str:
        event = "e.tagName === 'SELECT' ? 'change' : 'input'"
        return (
            f"(() => {{ const e = document.querySelector('.vega-bindings [name={name}]');"
            f" e.value = {index_or_value}; e.dispatchEvent(new Event({event}));"
            " return e.value; })()"
        )

    ready = (
        "document.querySelectorAll('.specviz-chart svg.marks').length >= 10"
        " && document.querySelectorAll('.vega-bindings [name=k_pick]').length > 0"
    )

    def redrawn(previous: object) -> object:
        """The chart texts once they differ from ``previous`` (a loaded machine redraws late),
        or as they are after 10 s."""
        for _ in range(40):
            cdp.pump(0.25)
            now = cdp.evaluate(texts)
            if now != previous:
                return now
        return now

    with browser(require_chromium()) as cdp:
        for domain in ("Page", "Runtime"):
            cdp.send(f"{domain}.enable")
        cdp.send("Page.navigate", {"url": built[0].as_uri()})
        for _ in range(240):  # up to 60 s for every chart and control to render
            cdp.pump(0.25)
            if cdp.evaluate(ready):
                break
        before = cdp.evaluate(texts)
        assert cdp.evaluate(set_control("token_category", "e.options[2].value")) == "writing"
        after_category = redrawn(before)
        assert cdp.evaluate(set_control("token_request", "'1'")) == "1"
        after_request = redrawn(after_category)
        cdp.evaluate(set_control("k_pick", "'2'"))
        after_k = redrawn(after_request)
    assert before != after_category != after_request  # the token chart shows another request
    assert after_request != after_k  # the k slider moved the predicted-speedup labels


@pytest.mark.slow
def test_one_category_reports_that_nothing_can_be_compared(
    tmp_path: Path, study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeping one category leaves no multitask stream: the report says so instead of failing."""
    isolate_jupyter(monkeypatch, tmp_path / "home")
    out = build_report(
        study, tmp_path / "coding.html", categories=["coding"], n_boot=N_BOOT, progress=False
    )
    page = out.read_text()
    assert "No multitask stream could be compared" in page
    assert "Data: 8 runs, 12 requests, categories coding;" in page


def test_the_registered_specviz_kernel_runs_notebooks_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    import nbformat

    from specviz.report.execute import ExecutionLimits, run_notebook

    isolate_jupyter(monkeypatch, tmp_path / "home")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "specviz"],
        check=True,
        capture_output=True,
    )
    choice = choose_kernel()
    assert choice.name == "specviz"
    assert choice.manager is not CurrentInterpreterKernelManager
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.prefix)")]
    executed = run_notebook(
        nb,
        tmp_path / "out.ipynb",
        name="sys-prefix",
        parameters={},
        kernel=choice,
        cwd=tmp_path,
        limits=ExecutionLimits(cell_s=60, start_s=60, total_s=120),
    )
    # the kernel runs in this environment (its interpreter may be python or python3 there)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.prefix


@pytest.mark.slow
def test_the_per_request_distributions_are_folded_below_the_first_screen(
    study: Path, built: tuple[Path, float]
) -> None:
    from specviz.metrics.distributions import study_distributions
    from specviz.report.distributions import TITLE, distribution_table

    markup = built[0].read_text().replace("&#x27;", "'")
    at = markup.index(f'<details class="specviz-details"><summary>{TITLE}')
    assert markup.index("specviz-answer") < at  # after the answer, closed
    data = load_runs(study)
    table = distribution_table(study_distributions(data.events, data.requests))
    for histogram in table["histogram"].unique().to_list():
        assert histogram in markup
