"""The first screen's tables: terms from the data, zero terms in one footnote, acceptance by
stream from the metrics."""

from __future__ import annotations

import copy

import polars as pl
import pytest
from report_fixtures import default_conditions, write_study

from specviz.metrics import label_streams, summary
from specviz.plots.answer import TOTAL_TERM, acceptance_by_stream, decomposition_terms
from specviz.report import load_runs
from specviz.report.answer import FINDING, ZERO, study_answer
from specviz.report.first_screen import (
    acceptance_streams,
    decomposition_long,
    stream_name,
    zero_footnote,
)
from specviz.report.tables import stream_labels

N_BOOT = 100


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    source = write_study(tmp_path_factory.mktemp("first") / "study", default_conditions())
    data = load_runs(source)
    return data, study_answer(data, n_boot=N_BOOT)


def test_every_stream_has_its_modelled_total_and_wall_clock_check(study) -> None:
    _, answer = study
    table = decomposition_long(answer)
    totals = table.filter(pl.col("term") == TOTAL_TERM)
    assert totals.height == len(answer["streams"])
    for row in answer["streams"]:
        total = totals.filter(pl.col("stream") == stream_name(row)).row(0, named=True)
        assert total["percent"] == pytest.approx(row["total_pct"])
        assert total["wall_percent"] == pytest.approx(row["wall_total_pct"])
    decomposition_terms(table).to_dict()  # a valid chart


def test_a_new_term_in_the_data_is_drawn_without_a_code_change(study) -> None:
    _, answer = study
    grown = copy.deepcopy(answer)
    stream = next(r for r in grown["streams"] if r["drafter"] != "none")
    stream["terms"].insert(
        1,
        {"part": "tuning", "label": "tuning", "status": FINDING, "pct": 3.0, "low_pct": 1.0,
         "high_pct": 5.0, "detectable_pct": None, "reason": "", "wall_pct": 2.5},
    )  # fmt: skip
    table = decomposition_long(grown)
    assert "tuning" in table.filter(pl.col("stream") == stream_name(stream))["term"].to_list()
    assert "tuning" in str(decomposition_terms(table).to_dict())


def test_zero_terms_are_left_out_of_the_chart_and_named_in_one_footnote(study) -> None:
    _, answer = study
    zero = [(r, t) for r in answer["streams"] for t in r["terms"] if t["status"] == ZERO]
    assert zero
    table = decomposition_long(answer)
    note = zero_footnote(answer["streams"])
    for row, term in zero:
        drawn = table.filter(pl.col("stream") == stream_name(row))["term"].to_list()
        assert term["label"] not in drawn
        assert term["label"] in note and term["reason"] in note and stream_name(row) in note
    assert note.count("Zero by construction") == 1


def test_acceptance_by_stream_is_the_metric_on_each_stream_s_events(study) -> None:
    data, _ = study
    table = acceptance_streams(data, n_boot=N_BOOT)
    assert set(table["stream"]) == {"single-task", "multitask"}
    labelled = stream_labels(label_streams(data.requests).collect())
    multi = labelled.filter(pl.col("multitask"), pl.col("drafter") != "none")
    events = data.events.join(multi.select("run_id", "request_id"), on=["run_id", "request_id"])
    expected = summary(events, by=["method", "category"])
    got = table.filter(pl.col("stream") == "multitask").sort("method", "category")
    assert got["acceptance_rate"].to_list() == pytest.approx(expected["acceptance_rate"].to_list())
    assert (got["acceptance_rate_low"] <= got["acceptance_rate"]).all()
    acceptance_by_stream(table).to_dict()


def test_the_finding_sentence_is_the_answer_s_headline(study) -> None:
    from specviz.report.first_screen import answer_html

    _, answer = study
    assert answer["headline"]["text"] in str(answer_html(answer))
    assert "No multitask stream could be compared" in str(answer_html(None))
