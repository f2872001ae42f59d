"""The summary formats the study's answer: modelled figures first, the wall clock as the check,
every term said for what it is; data text in it is escaped."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from report_fixtures import XSS_CATEGORY, default_conditions, write_study

from specviz.metrics.answer import NOISE, Term, WallLoad, classify_term
from specviz.metrics.study import Stream, StreamTerm
from specviz.report.answer import FINDING, NOT_ESTIMABLE, ZERO, study_answer
from specviz.report.data import load_runs
from specviz.report.summary import (
    QUESTION,
    REMEDIES_TITLE,
    answer_text,
    load_lines,
    summary_html,
    term_reason,
    term_sentence,
    verdict,
)

ROW = {"reference_s": 10.0, "control": "not needed"}


def stream(load: WallLoad, *terms: Term) -> Stream:
    """A stream ``m`` on ``mix`` as far as the sentences read it (its name, load and terms)."""
    named = {"method": "m", "mixture": "mix"}
    terms_ = tuple(StreamTerm(t, 9.0, 1.5) for t in terms)
    return Stream(named, {}, None, (), load, terms_)  # type: ignore[arg-type]


def test_verdict_says_slower_or_faster() -> None:
    assert verdict(2.0, 10.0) == "slower: +20.0% time for the same tokens"
    assert verdict(-1.0, 10.0) == "faster: -10.0% time for the same tokens"


def test_a_term_whose_interval_excludes_zero_is_a_finding() -> None:
    row = ROW | {"residual": 1.0, "residual_low": 0.2, "residual_high": 1.5}
    term = classify_term(row, "residual")
    assert term.status == FINDING and term.pct == 10.0


def test_a_term_inside_the_noise_names_the_smallest_detectable_effect() -> None:
    row = ROW | {"composition": 0.1, "composition_low": -0.4, "composition_high": 0.6}
    term = classify_term(row, "composition")
    assert term.status == NOISE
    assert term.detectable_pct == pytest.approx(5.0)  # half the interval's width, of 10 s


def test_an_exact_zero_in_every_resample_is_zero_by_construction() -> None:
    row = ROW | {"carry_over": 0.0, "carry_over_low": 0.0, "carry_over_high": 0.0}
    term = classify_term(row, "carry_over")
    assert term.status == ZERO and "no state" in term_reason(StreamTerm(term, 0.0, 1.5))


def test_a_term_resampling_a_one_request_task_has_no_interval_but_says_why() -> None:
    row = ROW | {"residual": 1.0, "residual_low": 1.0, "residual_high": 1.0,
                 "thin_tasks": [{"category": "coding", "requests": 1}]}  # fmt: skip
    term = classify_term(row, "residual")
    assert term.status == NOT_ESTIMABLE and term.pct == 10.0
    assert term.low_pct is None and term.high_pct is None
    found = stream(WallLoad(False, None, None), term)
    sentence = term_sentence(found, found.terms[0])
    assert "+10.0% (interval not estimable: 1 request for coding; use ≥ 2 per task)" in sentence
    assert "CI" not in sentence


def test_one_request_per_task_gives_no_zero_width_interval_anywhere(tmp_path) -> None:
    # coding and writing have one request each in the multitask stream: pooled into one
    # resampling stratum, every interval has their spread
    runs = default_conditions(requests_per_category=1)
    answer = study_answer(load_runs(write_study(tmp_path / "pooled", runs)), n_boot=100)
    text = answer_text(answer)
    assert "interval not estimable" not in text and "95% CI" in text
    assert not re.search(r"95% CI (\S+) to \1\b", text)  # no zero-width interval
    # a lone task of one request has nothing to pool with: no interval, and it says why
    runs = [
        replace(r, categories=("coding", "coding", "writing")) if len(r.categories) > 1 else r
        for r in default_conditions(requests_per_category=1)
    ]
    answer = study_answer(load_runs(write_study(tmp_path / "lone", runs)), n_boot=100)
    text = answer_text(answer)
    assert "interval not estimable: 1 request for writing; use ≥ 2 per task" in text
    assert not re.search(r"95% CI (\S+) to \1\b", text)
    assert not any("CI" in line for line in [answer["headline"]["text"], *answer["findings"]])
    assert answer["headline"]["status"] == NOISE  # nothing is established without intervals


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> dict:
    runs = default_conditions(categories=("coding", "writing", XSS_CATEGORY))
    study = write_study(tmp_path_factory.mktemp("answer") / "study", runs)
    return study_answer(load_runs(study), n_boot=200)


def test_summary_leads_with_the_modelled_answer_and_shows_the_wall_clock(answer: dict) -> None:
    html = summary_html({"answer": answer})
    assert QUESTION in html
    lead = html.split("<strong>", 1)[1].split("</strong>", 1)[0]
    assert lead.startswith("prompt-lookup constant k=4 on uniform-interleaved")
    assert "modelled; wall clock" in lead and "modelled / wall-clock seconds" in lead
    rows = html.split("<tbody>", 1)[1]
    assert rows.index("<td>modelled</td>") < rows.index("<td>wall clock</td>")
    assert rows.index("prompt-lookup constant k=4") < rows.index("<td>none</td>")
    assert "Cost curve" in html and "verify ms by rows" in html


def test_summary_escapes_labels(answer: dict) -> None:
    html = summary_html({"answer": answer})
    assert XSS_CATEGORY not in html
    assert "&lt;img src=x" in html


def test_summary_without_an_answer_says_what_is_missing() -> None:
    assert "No multitask stream could be compared" in summary_html({})


def test_summary_says_which_remedies_are_not_in_this_study(answer: dict) -> None:
    text = answer_text(answer)
    assert f"{REMEDIES_TITLE}:" in text and "(modelled; wall clock)" in REMEDIES_TITLE
    for remedy in ("task-aware policy", "per-task drafter memory", "cost-aware k"):
        assert f"{remedy}: not in this study." in text
    assert "not in this study" in summary_html({"answer": answer})


def test_a_load_line_without_a_wall_interval_says_so_instead_of_a_zero_allowance() -> None:
    load = WallLoad(True, 2.0, None, {"multitask_load": 1.02, "single_task_load": 1.0,
                                      "min_load": 1.0, "max_load": 1.1})  # fmt: skip
    (line,) = load_lines([stream(load)])
    assert "by +2.0%, with no interval to hold it against: its wall-clock figures" in line
    assert "±" not in line
