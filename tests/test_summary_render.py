"""The answer's words are declared once and rendered twice (specviz.report.summary): the page's
HTML and the terminal's text stay byte for byte what they were before the renderer became one
module, and every kind of part escapes its text on the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specviz.report import first_screen, summary
from specviz.report.summary import Part

GOLDEN = Path(__file__).parent / "golden"

# rendered from tests/golden/summary_default_study.json by the two renderers this module
# replaced (report/summary.py's answer_html / answer_text and first_screen.answer_html)
RENDERINGS = {
    "screen.txt": lambda a: summary.screen_text(a),
    "all.txt": lambda a: summary.answer_text(a),
    "summary.html": lambda a: summary.summary_html({"answer": a}),
    "first.html": lambda a: str(first_screen.answer_html(a)),
}


@pytest.mark.parametrize("suffix", sorted(RENDERINGS))
def test_the_default_study_s_answer_renders_as_pinned(suffix: str) -> None:
    answer = json.loads((GOLDEN / "summary_default_study.json").read_text())
    pinned = (GOLDEN / f"summary_default_study.{suffix}").read_text()
    assert RENDERINGS[suffix](answer) + "\n" == pinned


HOSTILE = "<img src=x onerror=alert(1)> & co"
KINDS = {
    "heading": summary.heading(HOSTILE),
    "lead": summary.lead(HOSTILE),
    "lines": summary.lines([HOSTILE], class_="specviz-note"),
    "bullets": summary.bullets([HOSTILE]),
    "title": summary.title(HOSTILE, " (detail)"),
    "table": summary.table([HOSTILE], [[HOSTILE]]),
    "note": summary.note(HOSTILE),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_part_escapes_on_the_page_and_keeps_the_text_in_the_terminal(
    kind: str,
) -> None:
    part = KINDS[kind]
    assert "<img" not in part.html and "&lt;img src=x onerror=alert(1)&gt; &amp; co" in part.html
    assert any(HOSTILE in line for line in part.text)


def test_a_part_for_one_medium_is_left_out_of_the_other() -> None:
    parts = [summary.page_only(summary.note("page")), summary.terminal_only(summary.note("tty"))]
    assert summary.render_html(parts) == '<p class="specviz-note">page</p>'
    assert summary.render_text(parts) == "tty"
    assert Part("", ()) == summary.bullets([])  # nothing to say renders nowhere
