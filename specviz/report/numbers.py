"""Complete tables and downloadable data for the report, both offline.

:func:`frame_table` renders every row of a polars table as an HTML table with readable column
names (a polars ``print`` truncates rows and columns) through :func:`rows_table`, the one HTML
table builder (the summary's tables of formatted cells use it directly). :func:`csv_link` embeds
a table as a ``data:text/csv;base64,...`` link with a ``download`` name, so the report carries
its own data and still opens offline (a few kilobytes per hundred requests; the report stays
small).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import polars as pl

from specviz.report.html import Html, element, esc, text_element


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def rows_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The one HTML table builder: ``header`` and every row of formatted cells, escaped."""
    head = element("tr", "".join(text_element("th", h) for h in header))
    body = "".join(element("tr", "".join(text_element("td", c) for c in row)) for row in rows)
    return element("table", element("thead", head) + element("tbody", body), class_="specviz-table")


def frame_table(frame: pl.DataFrame, columns: Mapping[str, str]) -> Html:
    """Every row of ``frame``'s ``columns`` (name -> header), escaped, as an HTML table."""
    names = [c for c in columns if c in frame.columns]
    rows = [[_cell(v) for v in row] for row in frame.select(names).iter_rows()]
    return Html(rows_table([columns[c] for c in names], rows))


def scalar_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without its list and struct columns (CSV holds scalars only)."""
    return frame.select(
        [c for c, t in frame.schema.items() if not isinstance(t, pl.List | pl.Struct | pl.Array)]
    )


def csv_link(frame: pl.DataFrame, filename: str, label: str) -> str:
    """An ``<a download>`` link whose href embeds ``frame`` (scalar columns) as CSV."""
    data = base64.b64encode(scalar_columns(frame).write_csv().encode()).decode("ascii")
    return (
        f'<a class="specviz-download" download="{esc(filename)}" '
        f'href="data:text/csv;base64,{data}">{esc(label)}</a>'
    )


def downloads(tables: Mapping[str, tuple[pl.DataFrame, str]]) -> Html:
    """One paragraph of download links: ``{filename: (frame, label)}``."""
    links = [
        csv_link(frame, name, f"{label} ({frame.height} rows, CSV)")
        for name, (frame, label) in tables.items()
    ]
    return Html(element("p", " · ".join(links), class_="specviz-downloads"))
