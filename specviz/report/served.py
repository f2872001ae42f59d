"""The report of a server-measured study (``specviz run/study --endpoint``).

A server reports per-request counts (the acceptance histogram, spec steps, drafted and accepted
tokens) and the client times each request; it reports no per-round events with timings and no
token ids. So the served report answers the study's question on what a server can show:
acceptance (the draft acceptance rate and vLLM's mean acceptance length, from the server's
counts), tokens per second and time to first token (the client's clock), single-task against
multitask, per category. Per-position acceptance is drawn only where the server gave per-step
counts (vLLM ``detailed``, written as event rows); the cost-accounted clock, the decomposition,
theory against measurement, the k trajectory and the token explorer are not computed, and the
page says why in one line (:data:`NOT_COMPUTED`).

Every figure and table of the served report carries a marker (:func:`measured_marker`) naming
where each of its numbers came from: the server's figures or the client's clock. The
aggregates are :func:`specviz.endpoint.summary.summary_rows`, the same as ``specviz summary``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from specviz.endpoint.summary import server_table, summary_rows
from specviz.metrics import label_streams
from specviz.metrics.speedup import BASELINE
from specviz.report.data import check_categories, check_source
from specviz.report.errors import ReportError
from specviz.report.html import Html, element, esc, text_element
from specviz.report.summary import QUESTION
from specviz.report.tables import stream_labels
from specviz.rundir import (
    EVENTS_FILE,
    RunDirError,
    SchemaError,
    collect_tables,
    find_run_dirs,
    scan_events,
)

#: the CSS class (and text) of every served figure's marker; specviz-measured pages carry
#: :data:`SPECVIZ_MARK` once, under the title
SERVER_MARK = "server-measured"
SPECVIZ_MARK = "specviz-measured"
BY = ("method", "category", "stream")
NOT_COMPUTED = (
    "Not computed from a server's figures: the cost-accounted (modelled) clock and the "
    "decomposition of the multitask slowdown, theory against measurement, the k trajectory and "
    "the token explorer. They need per-round events with draft and verify times and token ids, "
    "which a server does not report (docs/serving.md)."
)
ACCEPTANCE_SOURCE = "acceptance: the server's per-request counts"
CLOCK_SOURCE = "tokens/s, time to first token and chunk gaps: the client's clock"


@dataclass(frozen=True)
class ServedData:
    """The request rows of every server-measured run under ``source`` with the server's
    figures beside them (``method`` and ``stream`` labelled), and the per-step event rows the
    server's ``detailed`` counts gave (empty without them)."""

    source: Path
    run_dirs: tuple[Path, ...]
    requests: pl.DataFrame
    events: pl.DataFrame
    categories: tuple[str, ...]

    @property
    def metrics_sources(self) -> tuple[str, ...]:
        """Which servers' figures the runs hold (``vllm``, ``sglang``, ``llama.cpp``); empty:
        none gave any."""
        return tuple(sorted(self.requests["metrics_source"].drop_nulls().unique().to_list()))


def load_served(source: str | Path, categories: Sequence[str] | None = None) -> ServedData:
    """Read and check the server-measured runs at or below ``source`` (ReportError naming the
    problem, as :func:`specviz.report.data.load_runs` does for in-process runs)."""
    path = check_source(source)
    try:
        run_dirs = find_run_dirs(path)
        table = server_table(run_dirs)
        events = collect_tables(scan_events(run_dirs), run_dirs, EVENTS_FILE)
    except (RunDirError, SchemaError) as err:
        raise ReportError(f"{path}: {err}") from err
    if table.height == 0:
        raise ReportError(f"{path} holds runs but no finished request: run or resume it first")
    wanted = check_categories(table, categories, path)
    if wanted:
        table = table.filter(pl.col("category").is_in(wanted))
        events = events.filter(pl.col("category").is_in(wanted))
    labelled = stream_labels(label_streams(table).collect())
    requests = table.join(
        labelled.select("run_id", "request_id", "method", "stream"),
        on=["run_id", "request_id"],
        how="inner",
    )
    methods = requests.select("run_id", "method").unique("run_id")
    events = events.join(methods, on="run_id", how="inner")
    present = tuple(sorted(requests["category"].unique().to_list()))
    return ServedData(path, tuple(run_dirs), requests, events, tuple(wanted) or present)


def served_rows(data: ServedData) -> pl.DataFrame:
    """Per method, category and stream (single-task or multitask): the server's acceptance
    and the client's timings (:func:`specviz.endpoint.summary.summary_rows`)."""
    return summary_rows(data.requests, BY)


def headline(data: ServedData) -> dict[str, Any]:
    """The served finding: per drafted method, the multitask stream's mean acceptance length
    and tokens per second against its single-task streams (pooled over requests), the method
    whose acceptance moves most first. ``text`` says it in one sentence; for a server that
    reports no spec steps (llama.cpp) it says the acceptance rate's move instead."""
    drafted = data.requests.filter(pl.col("drafter") != BASELINE)
    rows = summary_rows(drafted, ("method", "stream"))
    single = rows.filter(pl.col("stream") == "single-task")
    multi = rows.filter(pl.col("stream") == "multitask")
    pairs = multi.join(single, on="method", suffix="_single").with_columns(
        (pl.col("mean_acceptance_length") - pl.col("mean_acceptance_length_single")).alias("shift"),
        (pl.col("acceptance_rate") - pl.col("acceptance_rate_single")).alias("rate_shift"),
    )
    if pairs.height == 0:
        return {
            "text": "No multitask stream could be compared: the study needs single-task and "
            "multitask mixtures sent with the same method.",
            "pairs": [],
        }
    pairs = pairs.sort("shift", "rate_shift", nulls_last=True)
    top = pairs.row(0, named=True)
    speed = (
        f"tokens per second on the client's clock {top['tokens_per_s']:.1f} multitask vs "
        f"{top['tokens_per_s_single']:.1f} single-task"
    )
    if top["shift"] is None and top["rate_shift"] is not None:  # no spec steps (llama.cpp)
        text = (
            f"{top['method']}: acceptance rate {top['acceptance_rate']:.3f} in the multitask "
            f"stream vs {top['acceptance_rate_single']:.3f} on the same tasks single-task "
            f"({top['rate_shift']:+.3f}, from the server's counts; it reports no spec steps, "
            f"so no mean acceptance length); {speed}."
        )
    elif top["shift"] is None:
        text = (
            f"{top['method']}: the server reported no speculative-decoding metrics, so only "
            f"timings compare: {speed}."
        )
    else:
        text = (
            f"{top['method']}: mean acceptance length {top['mean_acceptance_length']:.2f} in "
            f"the multitask stream vs {top['mean_acceptance_length_single']:.2f} on the same "
            f"tasks single-task ({top['shift']:+.2f}, from the server's counts); {speed}."
        )
    return {"text": text, "pairs": pairs.to_dicts()}


def marker_markup(*sources: str) -> str:
    """The marker every served figure and table carries, as HTML: server-measured, and where
    each of its numbers came from (``sources``)."""
    badge = element("strong", esc(SERVER_MARK.capitalize()))
    detail = esc("; ".join(sources)) if sources else ""
    return element("p", f"{badge}: {detail}", class_=f"specviz-note {SERVER_MARK}")


def measured_marker(*sources: str) -> Html:
    """:func:`marker_markup` to display in a notebook cell, above the figure it marks."""
    return Html(marker_markup(*sources))


def answer_html(data: ServedData, found: dict[str, Any], answer_id: str) -> Html:
    """The question, the served finding, which server's figures it rests on, and what a
    server's figures cannot give."""
    servers = ", ".join(data.metrics_sources) or "none: the server reported no figures"
    body = (
        text_element("h2", QUESTION)
        + element("p", element("strong", esc(found["text"])))
        + marker_markup(f"speculative-decoding figures from {servers}", CLOCK_SOURCE)
        + text_element("p", NOT_COMPUTED, class_="specviz-note specviz-not-computed")
    )
    return Html(element("section", body, class_="specviz-answer", id=answer_id))


def per_position_note(data: ServedData) -> str | None:
    """Why per-position acceptance is not drawn, or None when the server gave per-step counts."""
    if data.events.height:
        return None
    given = (
        "per-request totals only"
        if data.metrics_sources
        else "no speculative-decoding metrics at all"
    )
    return (
        f"Per-position acceptance is not shown: the server reported {given} (vLLM: start it "
        "with --per-request-spec-decode-metrics detailed for per-step counts; llama.cpp "
        "reports none)."
    )


def note_html(text: str) -> Html:
    """A line of the page that says why something is not shown."""
    return Html(text_element("p", text, class_="specviz-note"))


def missing_metrics_note(data: ServedData) -> str | None:
    """A line for runs whose server reported no speculative-decoding figures, or None."""
    drafted = pl.col("drafter") != BASELINE
    silent = data.requests.filter(pl.col("metrics_source").is_null() & drafted)
    if silent.height == 0:
        return None
    methods = ", ".join(sorted(silent["method"].unique().to_list()))
    return (
        f"The server reported no speculative-decoding metrics for {methods}: their acceptance "
        "is blank, their timings are recorded."
    )
