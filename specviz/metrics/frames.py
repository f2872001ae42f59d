"""Input checks shared by the metric functions: frame kinds, required columns, grouping columns.

Metric functions accept a ``pl.DataFrame`` or a ``pl.LazyFrame`` (for instance
:func:`specviz.rundir.scan_events` over a whole study) and check only the columns they read,
against the dtypes of :mod:`specviz.rundir.schema`. Integer widths and float widths are not enforced
(a hand-built table with ``Int64`` counts is fine); a column of another kind (a string where a
number is expected, a missing ``prefill`` flag from an older schema version) raises
:class:`specviz.rundir.schema.SchemaError` naming every offending column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

from specviz.rundir import EVENT_SCHEMA, REQUEST_SCHEMA, check_columns

Frame = pl.DataFrame | pl.LazyFrame

#: Columns present in both the event and the request table that results can be grouped by.
GROUP_COLUMNS = ("category", "mixture", "drafter", "policy", "k", "target", "run_id", "repeat")


def _same_kind(actual: pl.DataType, expected: pl.DataType) -> bool:
    if actual == expected:
        return True
    if expected.is_integer():
        return actual.is_integer()
    if expected.is_float():
        return actual.is_float()
    if isinstance(expected, pl.String):
        return isinstance(actual, pl.String | pl.Categorical | pl.Enum)
    return False


def _check(frame: Frame, needed: Iterable[str], expected: pl.Schema, what: str) -> pl.LazyFrame:
    if not isinstance(frame, pl.DataFrame | pl.LazyFrame):
        raise TypeError(
            f"expected a polars DataFrame or LazyFrame of {what}, got {type(frame).__name__}"
        )
    lazy = frame.lazy()
    check_columns(
        lazy.collect_schema(),
        expected,
        what,
        columns=needed,
        same_type=_same_kind,
        remedy=f"Read run directories with specviz.rundir.scan_{what}, "
        "or re-create them with this specviz version.",
    )
    return lazy


def events_frame(frame: Frame, needed: Iterable[str]) -> pl.LazyFrame:
    """``frame`` as a LazyFrame, after checking that it has the event columns ``needed``."""
    return _check(frame, needed, EVENT_SCHEMA, "events")


def requests_frame(frame: Frame, needed: Iterable[str]) -> pl.LazyFrame:
    """``frame`` as a LazyFrame, after checking that it has the request columns ``needed``."""
    return _check(frame, needed, REQUEST_SCHEMA, "requests")


def group_list(by: str | Sequence[str]) -> list[str]:
    """Grouping columns as a list (a single name is accepted)."""
    return [by] if isinstance(by, str) else list(by)


def collect(lazy: pl.LazyFrame) -> pl.DataFrame:
    """Collect with polars' streaming engine: event tables of many runs are processed in
    batches (about half the peak memory of the in-memory engine on 10 million rows, and faster)."""
    return lazy.collect(engine="streaming")
