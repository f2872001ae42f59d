"""``specviz report`` on a server-measured study: a study sent with ``--endpoint`` to scripted
servers (a speculating one with vLLM ``detailed`` figures, and a baseline without figures),
then the report: its answer and tables from the server's counts and the client's clock, every
figure and table marked as server-measured, and what a server cannot give said in one line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from engine_helpers import run_cli
from fake_server import MODEL, FakeServer, stream_answer, write_pld_study
from report_chromium import open_offline, require_chromium
from report_fixtures import isolate_jupyter
from starlette.responses import Response

from specviz.report.builder import MEASURED_LINES, build_report
from specviz.report.served import (
    NOT_COMPUTED,
    SERVER_MARK,
    headline,
    load_served,
    missing_metrics_note,
    per_position_note,
    served_rows,
)

K = 3
# accepted drafts per spec step, by the prompt's category: two steps per turn
ACCEPTED = {"coding": [3, 1], "math": [0, 1]}


def _speculating(n: int, body: dict[str, Any]) -> Response:
    accepted = ACCEPTED[body["messages"][-1]["content"].split()[0]]
    figures = {
        "acceptance_histogram": [accepted.count(j) for j in range(K + 1)],
        "num_spec_steps": len(accepted),
        "num_accepted_draft_tokens": sum(accepted),
        "num_draft_tokens": K * len(accepted),
        "num_spec_tokens": K,
        "mean_acceptance_length": 1 + sum(accepted) / len(accepted),
        "draft_acceptance_rate": sum(accepted) / (K * len(accepted)),
        "per_step_accepted": accepted,
        "per_step_drafted": [K] * len(accepted),
    }
    return stream_answer({"metrics": {"speculative_decoding": figures}})


def _plain(n: int, body: dict[str, Any]) -> Response:
    return stream_answer({})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-category study (single-task mixtures and their uniform mix) sent to the scripted
    servers: ``pld`` speculates, ``baseline`` does not."""
    root = tmp_path_factory.mktemp("served")
    rows = [
        {"question_id": f"{c}-{i}", "category": c, "turns": [f"{c} {i}: say hi"]}
        for c in ACCEPTED
        for i in range(2)
    ]
    study = write_pld_study(root, "served", MODEL, rows, max_new_tokens=8, k=K, options="")
    with FakeServer(_speculating) as pld, FakeServer(_plain) as plain:
        result = run_cli(
            "study", str(study), "--out", str(root / "out"), "--quiet",
            "--endpoint", f"pld={pld.url}", "--endpoint", f"baseline={plain.url}",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.fixture(scope="module")
def page(served: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        isolate_jupyter(mp, home)
        return build_report(served, home / "report.html", n_boot=200, progress=False)


def _text(path: Path) -> str:
    import html

    markup = re.sub(r"<(script|style).*?</\1>", "", path.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def test_served_figures_are_the_servers_counts_per_category_and_stream(served: Path) -> None:
    rows = served_rows(load_served(served))
    drafted = rows.filter(rows["method"] != "none")
    assert drafted["requests"].to_list() == [2, 2, 2, 2]  # one row per request, not per id
    by_category = dict(zip(drafted["category"], drafted["mean_acceptance_length"], strict=True))
    assert by_category == {"coding": 1 + 4 / 2, "math": 1 + 1 / 2}
    assert set(drafted["acceptance_rate"].to_list()) == {4 / 6, 1 / 6}
    baseline = rows.filter(rows["method"] == "none")
    assert baseline["mean_acceptance_length"].is_null().all()  # no figures: blank, not zero


def test_per_position_acceptance_is_drawn_only_from_per_step_counts(served: Path) -> None:
    data = load_served(served)
    assert per_position_note(data) is None
    summary_only = dataclasses.replace(data, events=data.events.clear())
    assert "per-request totals only" in (per_position_note(summary_only) or "")
    unknown = [
        pl.lit(None, dtype=pl.Int64).alias(c) for c in ("accepted", "drafted", "num_spec_steps")
    ]
    silent = dataclasses.replace(  # a server that reported no figures
        summary_only,
        requests=data.requests.with_columns(
            pl.lit(None, dtype=pl.String).alias("metrics_source"), *unknown
        ),
    )
    assert "no speculative-decoding metrics" in (per_position_note(silent) or "")
    assert "pld constant k=3" in (missing_metrics_note(silent) or "")
    assert "the server reported no speculative-decoding metrics" in headline(silent)["text"]


@pytest.mark.slow
def test_report_of_a_served_study_answers_from_the_servers_figures(
    served: Path, page: Path
) -> None:
    text = _text(page)
    assert headline(load_served(served))["text"] in text
    assert "mean acceptance length 2.25 in the multitask stream vs 2.25" in text
    assert NOT_COMPUTED in text
    assert _text_of(MEASURED_LINES[True]).split(": ", 1)[1] in text  # under the title
    assert "Speedup over the baseline server" in page.read_text()
    assert "specviz-summary" not in page.read_text()  # the in-process summary is not faked


def _text_of(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup)


@pytest.mark.slow
def test_every_figure_and_table_of_a_served_report_is_marked_server_measured(page: Path) -> None:
    cells = re.split(r'<div class="jp-Cell ', page.read_text())[1:]
    shown = [c for c in cells if "specviz-chart" in c or "specviz-table" in c]
    assert len(shown) >= 5
    unmarked = [c[:200] for c in shown if f'class="specviz-note {SERVER_MARK}"' not in c]
    assert unmarked == []


@pytest.mark.slow
def test_a_served_report_draws_every_chart_offline(page: Path) -> None:
    require_chromium()
    opened = open_offline(page)
    assert opened.charts_total >= 5
    assert opened.charts_drawn == opened.charts_total, opened.chart_failures
    assert opened.errors == [] and opened.external_requests == []


def test_a_comparison_of_a_served_study_is_refused_in_one_line(served: Path, tmp_path) -> None:
    result = run_cli("report", str(served), str(served), "--out", str(tmp_path / "c.html"))
    assert result.returncode == 2 and "server-measured" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.html").exists()


def test_server_summary_json_has_the_distributions_of_the_servers_counts(served: Path) -> None:
    from specviz.endpoint.summary import server_summary

    found = server_summary(served)["distributions"]
    assert found["time_shares"] is None  # a server reports no draft or verify times
    hist = pl.DataFrame(found["accepted_histogram"])
    for category, bins in {"coding": [(1, 0.5), (3, 0.5)], "math": [(0, 0.5), (1, 0.5)]}.items():
        assert hist.filter(pl.col("category") == category).select("accepted", "share").rows() == (
            bins
        )  # ACCEPTED: two spec steps per request
    rows = pl.DataFrame(found["requests"])
    drafted = rows.filter(pl.col("drafter") != "none")
    assert set(drafted["stream"]) == {"single-task", "multitask"}
    for category, length in {"coding": 1 + 4 / 2, "math": 1 + 1 / 2}.items():
        mine = drafted.filter(pl.col("category") == category)
        assert mine["acceptance_length_p50"].to_list() == [length, length]
        assert mine["acceptance_length_token_weighted_mean"].to_list() == pytest.approx(
            [length, length]
        )
    baseline = rows.filter(pl.col("drafter") == "none")
    assert baseline["acceptance_length_mean"].is_null().all()  # no counts: blank, not 1.00


@pytest.mark.slow
def test_a_served_report_shows_the_distributions_folded(page: Path) -> None:
    from specviz.report.distributions import TITLE

    markup = page.read_text().replace("&#x27;", "'")
    assert f'<details class="specviz-details"><summary>{TITLE}</summary>' in markup
    assert "spec steps by accepted drafts" in markup and "1:50% 3:50%" in markup
