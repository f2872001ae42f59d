"""``specviz report A B``: two studies on the same axes, B - A with its interval, offline."""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import re
from pathlib import Path

import polars as pl
import pytest
from report_chromium import open_offline, require_chromium
from report_fixtures import default_conditions, write_study

from specviz.metrics.compare import difference
from specviz.report import load_runs
from specviz.report.answer import study_answer
from specviz.report.compare import build_comparison

N_BOOT = 200


def test_difference_of_symmetric_intervals_adds_half_widths_in_quadrature() -> None:
    d = difference(1.0, 0.7, 1.3, 2.0, 1.6, 2.4)
    assert d.value == pytest.approx(1.0)
    assert d.low == pytest.approx(1.0 - math.hypot(0.3, 0.4))
    assert d.high == pytest.approx(1.0 + math.hypot(0.3, 0.4))
    assert d.established


def test_difference_keeps_each_interval_s_asymmetry() -> None:
    # a's upper arm and b's lower arm widen the lower bound; the other arms the upper one
    d = difference(0.0, -0.1, 0.5, 0.0, -0.2, 0.1)
    assert d.low == pytest.approx(-math.hypot(0.2, 0.5))
    assert d.high == pytest.approx(math.hypot(0.1, 0.1))
    assert not d.established


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two recorded studies that differ in how much a multitask stream lowers acceptance."""
    root = tmp_path_factory.mktemp("compare")
    runs = default_conditions(categories=("coding", "writing"))
    a = write_study(root / "fp32", runs)
    b = write_study(root / "bf16", [dataclasses.replace(r, multitask_penalty=0.5) for r in runs])
    return a, b


@pytest.fixture(scope="module")
def compared(studies: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare-out") / "compare.html"
    return build_comparison(studies, out, n_boot=N_BOOT, progress=False)


@pytest.mark.slow
def test_comparison_of_two_studies_draws_offline(compared: Path) -> None:
    require_chromium()
    report = open_offline(compared, evaluate={"text": "document.body.innerText"})
    assert report.charts_total == 3  # decomposition, acceptance, speedup
    assert report.charts_drawn == report.charts_total, report.chart_failures
    assert report.errors == [] and report.warnings == []
    assert report.external_requests == []
    assert "A: fp32" in report.evaluated["text"] and "B: bf16" in report.evaluated["text"]
    assert compared.stat().st_size < 5_000_000


@pytest.mark.slow
def test_comparison_gives_b_minus_a_of_each_stream_s_extra_time(
    studies: tuple[Path, Path], compared: Path
) -> None:
    html = compared.read_text()
    link = re.search(r'download="differences.csv" href="data:text/csv;base64,([^"]+)"', html)
    assert link
    diffs = pl.read_csv(io.BytesIO(base64.b64decode(link.group(1))))
    a, b = (study_answer(load_runs(s), n_boot=N_BOOT) for s in studies)
    stream_a = next(r for r in a["streams"] if r["drafter"] != "none")
    stream_b = next(r for r in b["streams"] if r["drafter"] == stream_a["drafter"])
    row = diffs.filter(
        pl.col("what").str.starts_with(stream_a["method"]),
        pl.col("what").str.ends_with("total extra time"),
    ).row(0, named=True)
    expected = difference(
        stream_a["total_pct"], stream_a["total_low_pct"], stream_a["total_high_pct"],
        stream_b["total_pct"], stream_b["total_low_pct"], stream_b["total_high_pct"],
    )  # fmt: skip
    assert row["a"] == pytest.approx(stream_a["total_pct"])
    assert row["difference"] == pytest.approx(expected.value)
    assert (row["low"], row["high"]) == pytest.approx((expected.low, expected.high))
    assert {"acceptance rate", "speedup over the baseline (modelled)"} <= set(diffs["quantity"])


def test_report_with_three_sources_exits_2_naming_the_usage(
    tmp_path: Path, studies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from specviz.cli import main

    a, b = studies
    out = tmp_path / "c.html"
    assert main(["report", str(a), str(b), str(a), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "takes two run or study directories, got 3" in err and "Traceback" not in err
    assert not out.exists()


def test_comparison_names_a_bad_second_study_before_any_work(
    tmp_path: Path, studies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from specviz.cli import main

    out = tmp_path / "c.html"
    missing = tmp_path / "nowhere"
    assert main(["report", str(studies[0]), str(missing), "--out", str(out), "--quiet"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert not out.exists()
