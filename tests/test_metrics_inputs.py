"""Bad input gets a clear error naming what is wrong."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import (
    degradation,
    per_position,
    request_summary,
    speedup,
    summary,
    theory_vs_measured,
)
from specviz.metrics.synthetic import RoundSpec, events_from_rounds, prefill, requests_from_rows
from specviz.rundir import SCHEMA_VERSION, SchemaError


def events() -> pl.DataFrame:
    return events_from_rounds([prefill(), RoundSpec(2, 1)])


def test_missing_event_columns_are_named():
    with pytest.raises(SchemaError, match=r"missing columns: prefill, verified"):
        summary(events().drop("prefill", "verified"))


def test_older_schema_without_prefill_is_refused_with_the_fix():
    with pytest.raises(SchemaError, match=rf"schema version {SCHEMA_VERSION}.*scan_events"):
        per_position(events().drop("prefill"))


def test_wrong_column_type_is_named():
    bad = events().with_columns(pl.col("accepted").cast(pl.String))
    with pytest.raises(SchemaError, match="accepted is String, expected Boolean"):
        summary(bad)


def test_integer_width_is_not_a_schema_error():
    widened = events().with_columns(pl.col("k").cast(pl.Int64), pl.col("position").cast(pl.Int64))
    assert summary(widened)["drafted"][0] == 2


def test_grouping_by_an_unknown_column_is_named():
    with pytest.raises(SchemaError, match="missing columns: task"):
        summary(events(), "task")


def test_request_functions_check_their_columns():
    req = requests_from_rows([dict(prompt_id="p", new_tokens=3, wall_s=1.0)])
    with pytest.raises(SchemaError, match="wall_s"):
        request_summary(req.drop("wall_s"))
    with pytest.raises(SchemaError, match="temperature"):
        speedup(req.drop("temperature"))
    with pytest.raises(SchemaError, match="mixture"):
        degradation(req.drop("mixture"))


def test_theory_checks_event_columns():
    with pytest.raises(SchemaError, match="n_drafted"):
        theory_vs_measured(events().drop("n_drafted"), "drafter")


def test_non_frames_are_refused():
    with pytest.raises(TypeError, match="polars DataFrame or LazyFrame"):
        summary({"kind": ["draft"]})  # type: ignore[arg-type]
