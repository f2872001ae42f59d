"""Writing a finished page: to a temporary file beside ``out``, renamed onto ``out`` at the end,
so a failure leaves no half-written report (and an existing one untouched)."""

from __future__ import annotations

import os
from pathlib import Path


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
