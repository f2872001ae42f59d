"""Finishing a page: the partial-data banner, and writing the HTML to a temporary file beside
``out``, renamed onto ``out`` at the end, so a failure leaves no half-written report (and an
existing one untouched)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nbformat

from specviz.report.html import esc
from specviz.rundir import write_out_file


def partial_cell(unfinished: Sequence[str]) -> nbformat.NotebookNode:
    """The banner of a page built with ``allow_incomplete`` from unfinished runs."""
    shown = ", ".join(unfinished[:10]) + (" ..." if len(unfinished) > 10 else "")
    cell = nbformat.v4.new_markdown_cell(
        f"**Partial data:** {len(unfinished)} run(s) of this study are unfinished "
        f"({esc(shown)}). The numbers below cover the finished requests only."
    )
    cell["id"] = "partial"
    return cell


def is_specviz_report(head: bytes) -> bool:
    """The start of a file is a page specviz wrote (the generator tag of its template), so
    building a report again may replace it."""
    return b'<meta name="generator" content="specviz ' in head


def write_page(out: Path, html: str) -> Path:
    """Write ``html`` to ``out`` (checked by :func:`specviz.rundir.outdir.check_out_file` before any
    work): through a character device or pipe, else atomically, so a failure leaves no
    half-written page and an existing one untouched (:func:`specviz.rundir.outdir.write_out_file`).
    Returns ``out``."""
    write_out_file(out, html)
    return out
