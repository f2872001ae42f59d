"""One request's output, every token coloured by its fate (accepted, correction, bonus, ...).

The text comes from the run's tokenizer when it can be loaded (:func:`token_decoder`), else each
token shows as ``#id``. Every token string is escaped: model output may contain HTML.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from specviz.plots.common import STATUS_COLORS
from specviz.plots.tokens import Decoder
from specviz.report.html import Html, element, esc, text_element

LEGEND = (
    ("accepted", "accepted draft"),
    ("rejected", "rejected draft (not in the output)"),
    ("correction", "target's correction"),
    ("bonus", "bonus token (whole draft accepted)"),
    ("prefill", "first token of a turn (prefill)"),
)


def _style(status: str) -> str:
    color = STATUS_COLORS[status]
    style = f"background:{color}33;border-bottom:2px solid {color};"
    if status == "rejected":
        style += "text-decoration:line-through;opacity:0.7;"
    return style


def token_decoder(run_meta: dict[str, Any]) -> Decoder | None:
    """Decode token ids with the tokenizer of the run's target model, or None if unavailable.

    Loading needs only the tokenizer files: a local model directory, the dequantized copy of a
    GGUF model in specviz's cache, or a hub id in the local Hugging Face cache.
    """
    try:
        from specviz.model_source import load_tokenizer

        tokenizer = load_tokenizer(run_meta["config"]["target"]["name"])
    except Exception:  # any failure: show ids; the notebook says so
        return None

    def decode(ids: list[int] | Any) -> list[str]:
        return [tokenizer.decode([int(i)]) for i in ids]

    return decode


def colored_output(tokens: pl.DataFrame, request_id: str) -> Html:
    """The tokens of ``request_id`` (a :func:`specviz.plots.tokens.token_table`) as coloured text.

    Emitted tokens appear in order; a rejected draft appears struck through just before the
    target's correction that replaced it; unverified drafts (after a rejection) are left out.
    Hovering a token shows its round, slot and probabilities.
    """
    rows = tokens.filter(pl.col("request_id") == request_id)
    if rows.height == 0:
        return Html(text_element("p", f"no tokens recorded for request {request_id}"))
    spans = []
    for row in rows.iter_rows(named=True):
        status = row["status"]
        if status == "unverified" or (not row["emitted"] and status != "rejected"):
            continue
        detail = f"round {row['round']}, slot {row['slot']}: {status}"
        if row["p"] is not None:
            detail += f", p={row['p']:.3f}"
        if row["q"] is not None:
            detail += f", q={row['q']:.3f}"
        spans.append(text_element("span", row["text"], style=_style(status), title=detail))
    first = rows.row(0, named=True)
    heading = text_element(
        "p", f"Request {request_id} ({first['category']}), {len(spans)} tokens shown"
    )
    body = element(
        "div",
        "".join(spans),
        class_="specviz-tokens",
        style="font-family:monospace;white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.9;",
    )
    return Html(heading + body)


def token_legend() -> Html:
    """What the colours of :func:`colored_output` mean."""
    return Html(
        element("p", " ".join(text_element("span", label, style=_style(s)) for s, label in LEGEND))
    )


def output_text(requests: pl.DataFrame, request_id: str) -> Html:
    """The request's prompt turns and recorded output text, escaped, in preformatted blocks."""
    rows = requests.filter(pl.col("request_id") == request_id)
    if rows.height == 0:
        return Html(text_element("p", f"no request {request_id}"))
    row = rows.row(0, named=True)
    style = "white-space:pre-wrap;"
    blocks = [
        element("details", text_element("summary", f"Prompt, turn {i + 1}") +
                element("pre", esc(turn), style=style))
        for i, turn in enumerate(row.get("prompt_turns") or [])
    ]  # fmt: skip
    blocks.append(element("pre", esc(row["output_text"] or ""), style=style))
    return Html("".join(blocks))
