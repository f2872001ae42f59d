"""Small HTML builders whose every piece of data text is escaped.

Text from runs (prompts, model outputs, token strings, category names) is untrusted: it may
hold ``<script>`` or ``<img onerror=...>``. Everything specviz writes into a report as HTML goes
through :func:`esc` (text and attribute values alike, quotes included); the altair charts carry
their data as script-safe JSON (:func:`specviz.report.vega.script_json`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable


def esc(value: object) -> str:
    """``value`` as HTML text, safe in element content and in quoted attribute values."""
    return html.escape(str(value), quote=True)


def element(tag: str, content: str = "", **attrs: object) -> str:
    """``<tag attrs>content</tag>``; attribute values are escaped, ``content`` is trusted HTML.

    Attribute names use ``_`` for ``-`` and a trailing ``_`` for Python keywords (``class_``).
    """
    rendered = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{esc(value)}"'
        for name, value in attrs.items()
        if value is not None
    )
    return f"<{tag}{rendered}>{content}</{tag}>"


def text_element(tag: str, text: object, **attrs: object) -> str:
    """An element whose content is the escaped ``text``."""
    return element(tag, esc(text), **attrs)


def join(parts: Iterable[str]) -> str:
    return "".join(parts)


class Html:
    """Trusted HTML to display in a notebook (its ``_repr_html_``)."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup
