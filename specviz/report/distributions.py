"""The per-request distributions (:mod:`specviz.metrics.distributions`) where users read them.

:func:`distributions_answer` is the ``distributions`` object of ``specviz summary --json`` (and
of the study answer the report publishes); :func:`distributions_html` renders that same object
as one compact table, folded in a ``<details>`` below the report's first screen, so the page and
the JSON show the same numbers. One row per method, task and stream kind: acceptance length
(request-weighted mean, token-weighted mean, p50, p90, p99, min), acceptance rate (mean, p50),
tokens per second and latency (p50, p99), the time split and the accepted-length histogram.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from specviz.metrics.distributions import HISTOGRAM_KEYS, KEYS, study_distributions
from specviz.plots.common import method_label
from specviz.report.data import StudyData
from specviz.report.html import Html, element, text_element
from specviz.report.numbers import frame_table

TITLE = "Per-request distributions (AIPerf's statistics)"
COLUMNS = {
    "method": "method",
    "category": "task",
    "stream": "stream",
    "requests": "requests",
    "length": "acceptance length: mean · token-weighted · p50 · p90 · p99 · min",
    "rate": "acceptance rate: mean · p50",
    "tokens_per_s": "tokens/s: p50 · p99",
    "latency": "latency s: p50 · p99",
    "split": "time: draft · verify · prefill",
    "histogram": "spec steps by accepted drafts (method, task)",
}


def distributions_answer(data: StudyData) -> dict[str, Any]:
    """The ``distributions`` object of the study answer (in-process runs)."""
    return study_distributions(data.events, data.requests)


def _numbers(row: Mapping[str, Any], keys: tuple[str, ...], pct: bool) -> str:
    """``row``'s ``keys`` joined by middle dots (``-`` where a value is null)."""

    def one(x: Any) -> str:
        if x is None:
            return "-"
        return f"{x:.0%}" if pct else f"{x:.3g}"

    return " · ".join(one(row.get(k)) for k in keys)


def _stats(value: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{value}_{name}" for name in names)


def _histograms(rows: list[Mapping[str, Any]]) -> pl.DataFrame:
    """``accepted:share`` of every bin, per method and task, as one text column."""
    keys = list(HISTOGRAM_KEYS)
    schema = {k: pl.String for k in keys} | {"k": pl.Int64, "histogram": pl.String}
    if not rows:
        return pl.DataFrame(schema=schema)
    hist = pl.DataFrame(rows).sort([*keys, "accepted"])
    return hist.group_by(keys, maintain_order=True).agg(
        pl.format("{}:{}%", "accepted", (pl.col("share") * 100).round(0).cast(pl.Int64))
        .str.join(" ")
        .alias("histogram")
    )


def distribution_table(found: Mapping[str, Any]) -> pl.DataFrame:
    """The :func:`distributions_answer` object (or a server's) as the report's compact rows."""
    stats = found["requests"]
    if not stats:
        return pl.DataFrame({c: [] for c in COLUMNS}, schema=dict.fromkeys(COLUMNS, pl.String))
    shares = {
        tuple(s[k] for k in KEYS): s for s in (found.get("time_shares") or [])
    }  # None: a server reports no times
    rows = []
    for row in stats:
        split = shares.get(tuple(row[k] for k in KEYS))
        length = _stats("acceptance_length", "mean", "token_weighted_mean", "p50", "p90", "p99",
                        "min")  # fmt: skip
        rows.append(
            {
                **{k: row[k] for k in KEYS},
                "requests": str(row["requests"]),
                "length": _numbers(row, length, pct=False),
                "rate": _numbers(row, _stats("acceptance_rate", "mean", "p50"), pct=True),
                "tokens_per_s": _numbers(row, _stats("tokens_per_s", "p50", "p99"), pct=False),
                "latency": _numbers(row, _stats("latency_s", "p50", "p99"), pct=False),
                "split": "-"
                if split is None
                else _numbers(split, ("draft_share", "verify_share", "prefill_share"), pct=True),
            }
        )
    table = pl.DataFrame(rows).with_columns(method_label())
    table = table.join(
        _histograms(found["accepted_histogram"]), on=list(HISTOGRAM_KEYS), how="left"
    )
    return table.with_columns(pl.col("histogram").fill_null("-")).select(list(COLUMNS))


def distributions_html(found: Mapping[str, Any]) -> Html:
    """The compact table, folded under :data:`TITLE`, with the convention below it."""
    body = frame_table(distribution_table(found), COLUMNS).markup + text_element(
        "p", found["convention"], class_="specviz-note"
    )
    return Html(element("details", text_element("summary", TITLE) + body, class_="specviz-details"))
