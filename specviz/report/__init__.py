"""Parameterized notebooks rendered into one self-contained, offline HTML report.

:func:`build_report` (the ``specviz report`` command) checks the input, executes the analysis
notebooks with papermill in one kernel, and writes a single HTML file with every script
inlined; see ``docs/reports.md``. The other names are what the notebooks use.
"""

from typing import TYPE_CHECKING

from specviz.report.data import StudyData, load_runs
from specviz.report.errors import ReportError
from specviz.report.publish import publish, read_published
from specviz.report.tables import (
    decomposable,
    first_requests,
    stream_labels,
    trajectory_run_id,
    with_intervals,
)
from specviz.report.tokens import colored_output, output_text, token_decoder, token_legend
from specviz.report.vega import enable_charts

if TYPE_CHECKING:
    from specviz.report.builder import build_report

__all__ = [
    "ReportError",
    "StudyData",
    "build_report",
    "colored_output",
    "decomposable",
    "enable_charts",
    "first_requests",
    "load_runs",
    "output_text",
    "publish",
    "read_published",
    "stream_labels",
    "token_decoder",
    "token_legend",
    "trajectory_run_id",
    "with_intervals",
]


def __getattr__(name: str) -> object:
    # the builder imports papermill and nbconvert; the notebooks do not need them
    if name == "build_report":
        from specviz.report.builder import build_report

        return build_report
    raise AttributeError(name)
