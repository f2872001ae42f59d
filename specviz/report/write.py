"""Finishing a page: the partial-data banner, and writing the HTML to a temporary file beside
``out``, renamed onto ``out`` at the end, so a failure leaves no half-written report (and an
existing one untouched)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nbformat

from specviz.report.html import esc


def partial_cell(unfinished: Sequence[str]) -> nbformat.NotebookNode:
    """The banner of a page built with ``allow_incomplete`` from unfinished runs."""
    shown = ", ".join(unfinished[:10]) + (" ..." if len(unfinished) > 10 else "")
    cell = nbformat.v4.new_markdown_cell(
        f"**Partial data:** {len(unfinished)} run(s) of this study are unfinished "
        f"({esc(shown)}). The numbers below cover the finished requests only."
    )
    cell["id"] = "partial"
    return cell


def write_page(out: Path, html: str) -> Path:
    """Write ``html`` to ``out`` atomically (its folder is created); returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        partial.write_text(html, encoding="utf-8")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
