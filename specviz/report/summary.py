"""The report's opening summary: how much slower the multitask stream is, and why, in numbers.

Built only from values the notebooks published (:mod:`specviz.report.publish`), which they
computed with :mod:`specviz.metrics`; this module formats, it computes no metric. Every piece of
data text is escaped.
"""

from __future__ import annotations

from typing import Any

from specviz.metrics.speedup import BASELINE
from specviz.report.html import element, esc, text_element

PARTS = (
    ("composition", "composition"),
    ("k_mismatch", "k mismatch"),
    ("carry_over", "carry-over"),
    ("residual", "residual"),
)
QUESTION = "How much slower is the multitask workload than single-task, and why?"


def _pct(value: float | None, reference: float) -> str:
    if value is None or not reference:
        return "n/a"
    return f"{100 * value / reference:+.1f}%"


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _streams(published: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["method"], r["stream"]): r for r in published.get("collapse.streams", [])}


def verdict(total: float, reference: float) -> str:
    """``"slower: +15.4% time"`` or ``"faster: -6.9% time"`` for the same tokens."""
    word = "slower" if total > 0 else "faster" if total < 0 else "as fast"
    return f"{word}: {_pct(total, reference)} time for the same tokens"


def headline(row: dict[str, Any], streams: dict[tuple[str, str], dict[str, Any]]) -> str:
    """One sentence for one decomposed multitask stream (plain text, escaped by the caller)."""
    ref = row["reference_s"]
    parts = ", ".join(f"{label} {_pct(row[key], ref)}" for key, label in PARTS)
    text = (
        f"{row['method']} on {row['mixture']}: {row['multitask_tokens_per_s']:.1f} tokens/s "
        f"multitask vs {row['reference_tokens_per_s']:.1f} tokens/s single-task, "
        f"{verdict(row['total'], ref)} (95% CI "
        f"{_pct(row['total_low'], ref)} to {_pct(row['total_high'], ref)}). "
        f"Why: {parts} of the single-task time."
    )
    single = streams.get((row["method"], "single-task"))
    multi = streams.get((row["method"], "multitask"))
    if single and multi:
        text += (
            f" Acceptance rate {_num(single['acceptance_rate'], '.3f')} single-task vs "
            f"{_num(multi['acceptance_rate'], '.3f')} multitask; mean accepted length "
            f"{_num(single['mean_accepted_length'], '.2f')} vs "
            f"{_num(multi['mean_accepted_length'], '.2f')} tokens per verify step."
        )
    return text


def control_sentence(row: dict[str, Any]) -> str:
    """The baseline's own multitask-vs-single-task gap: what is not speculative decoding."""
    ref = row["reference_s"]
    return (
        f"Control: the autoregressive baseline (no drafter) on {row['mixture']} is "
        f"{verdict(row['total'], ref)} (95% CI {_pct(row['total_low'], ref)} to "
        f"{_pct(row['total_high'], ref)}). It drafts nothing, so a gap of this size in the "
        "speculative methods is machine noise or prompt effects, not speculation."
    )


def _table(rows: list[dict[str, Any]]) -> str:
    header = "".join(
        text_element("th", h)
        for h in (
            "method",
            "mixture",
            "multitask tok/s",
            "single-task tok/s",
            "extra time",
            *[label for _, label in PARTS],
            "best k per task",
        )
    )
    body = []
    for r in rows:
        ref = r["reference_s"]
        cells = [
            r["method"],
            r["mixture"],
            f"{r['multitask_tokens_per_s']:.1f}",
            f"{r['reference_tokens_per_s']:.1f}",
            _pct(r["total"], ref),
            *[_pct(r[key], ref) for key, _ in PARTS],
            r.get("best_k") or "",
        ]
        body.append(element("tr", "".join(text_element("td", c) for c in cells)))
    return element(
        "table", element("thead", element("tr", header)) + element("tbody", "".join(body))
    )


def summary_html(published: dict[str, Any]) -> str:
    """The summary block: the question, one answer sentence per stream, a table, the data."""
    rows = [r for r in published.get("collapse.degradation", []) if r.get("total") is not None]
    streams = _streams(published)
    out = [text_element("h2", QUESTION)]
    drafted = [r for r in rows if r["method"] != BASELINE]
    controls = [r for r in rows if r["method"] == BASELINE]
    if drafted:
        # the answer leads with the speculative method that loses most; the baseline is a control
        worst = max(drafted, key=lambda r: r["total"] / r["reference_s"] if r["reference_s"] else 0)
        out.append(element("p", element("strong", esc(headline(worst, streams)))))
        others = [r for r in drafted if r is not worst]
        items = [headline(r, streams) for r in others] + [control_sentence(r) for r in controls]
        if items:
            out.append(element("ul", "".join(text_element("li", i) for i in items)))
        out.append(_table(drafted + controls))
        out.append(
            text_element(
                "p",
                "Extra time = seconds to serve the multitask stream's requests minus the seconds "
                "the single-task runs need for the same number of tokens, as a share of the "
                "latter. Composition: the stream weights tasks differently from the benchmark; "
                "k mismatch: one k for every task instead of each task's best; carry-over: an "
                "adaptive policy's state carried from one task to the next; residual: the rest "
                "of what interleaving costs (see docs/metrics.md).",
                class_="specviz-note",
            )
        )
    else:
        out.append(
            text_element(
                "p",
                "No multitask stream could be compared: the study needs single-task and "
                "multitask mixtures run with the same method.",
            )
        )
    data = published.get("report.data")
    if data:
        out.append(
            text_element(
                "p",
                f"Data: {data['runs']} runs, {data['requests']} requests, categories "
                f"{', '.join(data['categories'])}; methods {', '.join(data['methods'])}.",
                class_="specviz-note",
            )
        )
    return element("section", "".join(out), class_="specviz-summary")
