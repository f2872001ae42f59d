"""What the report shows first: the finding in one sentence, the regime it holds for (dtype and
verify-cost curve, :func:`specviz.report.summary.regime_text`), its decomposition, its acceptance.

Built from :func:`specviz.report.answer.study_answer`'s result (worded by
:mod:`specviz.report.summary`); this module only reshapes it: the decomposition as a long table
of modelled terms for :func:`specviz.plots.answer.decomposition_terms` (terms taken from the
data, so a new term appears without a change here), the terms that are zero by construction
folded into one footnote, and acceptance per category and stream for
:func:`specviz.plots.answer.acceptance_by_stream`. The notebook cells that display them carry
the :data:`FIRST_SCREEN_TAG`; the report builder moves those cells to the top of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from specviz.metrics import label_streams, metric_intervals, summary
from specviz.metrics.speedup import BASELINE
from specviz.plots.answer import TERM_COLUMNS, TOTAL_TERM
from specviz.report.answer import ZERO
from specviz.report.data import StudyData
from specviz.report.html import Html, element, text_element
from specviz.report.summary import drafted_first, first_screen_parts, render_html
from specviz.report.tables import stream_labels, with_intervals

FIRST_SCREEN_TAG = "first-screen"
ANSWER_ID = "specviz-answer"


def stream_name(row: dict[str, Any]) -> str:
    """``method · mixture`` (the baseline marked as the control)."""
    control = " (control)" if row["drafter"] == BASELINE else ""
    return f"{row['method']} · {row['mixture']}{control}"


def decomposition_long(answer: dict[str, Any]) -> pl.DataFrame:
    """One row per stream and term of the modelled decomposition (columns
    :data:`specviz.plots.answer.TERM_COLUMNS`), plus each stream's total with its wall-clock
    twin; terms zero by construction or not measured are left out (see :func:`zero_footnote`)."""
    rows = []
    for r in drafted_first(answer["streams"]):
        name = stream_name(r)
        for order, t in enumerate(r["terms"]):
            if t["status"] == ZERO or t["pct"] is None:
                continue
            rows.append((name, t["label"], order, t["pct"], t["low_pct"], t["high_pct"], None))
        rows.append(
            (name, TOTAL_TERM, len(r["terms"]), r["total_pct"], r["total_low_pct"],
             r["total_high_pct"], r["wall_total_pct"])
        )  # fmt: skip
    schema = dict.fromkeys(TERM_COLUMNS, pl.Float64) | {
        "stream": pl.String,
        "term": pl.String,
        "order": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def zero_footnote(streams: Sequence[dict[str, Any]]) -> str:
    """One sentence for every term that is zero by construction, grouped by term and reason
    (empty when none is)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in drafted_first(streams):
        for t in r["terms"]:
            if t["status"] == ZERO:
                groups.setdefault((t["label"], t["reason"]), []).append(stream_name(r))
    if not groups:
        return ""
    parts = [
        f"{label} for {', '.join(names)} ({reason})" for (label, reason), names in groups.items()
    ]
    return "Zero by construction, so not drawn: " + "; ".join(parts) + "."


def answer_html(answer: dict[str, Any] | None) -> Html:
    """The question and the headline sentence (or why nothing can be compared), the regime,
    the tuning losses and the wall-clock load warning
    (:func:`specviz.report.summary.first_screen_parts`)."""
    body = render_html(first_screen_parts(answer))
    return Html(element("section", body, class_="specviz-answer", id=ANSWER_ID))


def footnote_html(answer: dict[str, Any]) -> Html:
    note = zero_footnote(answer["streams"])
    return Html(text_element("p", note, class_="specviz-note") if note else "")


def stream_events(data: StudyData) -> pl.DataFrame:
    """The events of unbatched requests with ``stream`` (single-task or multitask)."""
    labelled = stream_labels(label_streams(data.requests).collect())
    streams = labelled.select("run_id", "request_id", "stream")
    return data.events.join(streams, on=["run_id", "request_id"], how="inner")


def acceptance_streams(data: StudyData, n_boot: int) -> pl.DataFrame:
    """Acceptance rate per method, category and stream, with its bootstrap 95% interval
    (:func:`specviz.metrics.summary`, :func:`specviz.metrics.metric_intervals`); drafted
    methods only."""
    events = stream_events(data).filter(pl.col("drafter") != BASELINE)
    by = ["method", "category", "stream"]
    table = summary(events, by=by)
    intervals = metric_intervals(events, by=by, metrics=["acceptance_rate"], n_boot=n_boot)
    return with_intervals(table, intervals, by).sort(by)
