"""Complete tables and embedded CSV downloads: every row, readable headers, escaped, offline."""

from __future__ import annotations

import base64
import io
import re

import polars as pl

from specviz.report.numbers import csv_link, frame_table

FRAME = pl.DataFrame(
    {
        "category": [f"<b>c{i}</b>" for i in range(300)],
        "tokens_per_s": [i / 7 for i in range(300)],
        "turns": [["a", "b"]] * 300,
    }
)


def test_frame_table_shows_every_row_with_readable_escaped_headers():
    html = frame_table(FRAME, {"category": "task", "tokens_per_s": "tokens/s"}).markup
    assert html.count("<tr>") == 301  # header + every one of 300 rows (a polars print shows 10)
    assert "<th>task</th><th>tokens/s</th>" in html
    assert "<b>" not in html and "&lt;b&gt;c299&lt;/b&gt;" in html


def test_csv_link_embeds_the_scalar_columns_for_download():
    link = csv_link(FRAME, "x.csv", "data")
    assert 'download="x.csv"' in link
    payload = re.search(r'href="data:text/csv;base64,([^"]+)"', link).group(1)
    back = pl.read_csv(io.BytesIO(base64.b64decode(payload)))
    assert back.columns == ["category", "tokens_per_s"]  # list columns cannot be CSV
    assert back.height == 300 and back["category"][299] == "<b>c299</b>"
