"""The report's bad-input error."""

from __future__ import annotations

from specviz.errors import SpecvizError


class ReportError(SpecvizError):
    """A report cannot be built from this input; the message names the problem and the fix."""
