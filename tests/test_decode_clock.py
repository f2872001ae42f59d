"""The degradation decomposition is on the decode clock: a request's prefill forwards, which no
drafter, k or policy changes, are in no term (specviz.metrics.accounting.decode_clock)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from report_fixtures import default_conditions, write_study

from specviz.metrics.accounting import decode_clock
from specviz.metrics.degradation import TERMS, degradation, label_streams
from specviz.metrics.study import price
from specviz.report.answer import answer_of
from specviz.report.data import load_runs

PREFILL_COLUMNS = ("modelled_s", "modelled_prefill_s", "wall_s", "prefill_s")
FIGURES = ("multitask_s", "reference_s", "total", *TERMS)


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    study = write_study(tmp_path_factory.mktemp("decode") / "study", default_conditions())
    data = load_runs(study)
    return price(data.events, data.requests, "test")[0]


def _figures(requests: pl.DataFrame, seconds: str) -> np.ndarray:
    table = degradation(label_streams(requests).collect(), n_boot=200, seconds=seconds)
    return table.sort("drafter", "mixture").select(FIGURES).to_numpy()


def test_the_decode_clock_is_each_clock_without_its_prefill_seconds(priced: pl.DataFrame):
    decoding = decode_clock(priced)
    modelled = priced["modelled_s"] - priced["modelled_prefill_s"]
    assert decoding["modelled_s"].to_list() == modelled.to_list()
    assert decoding["wall_s"].to_list() == (priced["wall_s"] - priced["prefill_s"]).to_list()
    assert (priced["modelled_prefill_s"] > 0).all() and (priced["prefill_s"] > 0).all()
    # a frame that was never priced (batched runs: wall clock only) keeps its columns
    assert decode_clock(priced.drop("modelled_s")).columns == priced.drop("modelled_s").columns


@pytest.mark.parametrize("clock", ["modelled_s", "wall_s"])
def test_a_stream_whose_prompts_prefill_a_second_slower_has_the_same_decomposition(
    priced: pl.DataFrame, clock: str
):
    multitask = pl.col("mixture") == "uniform-interleaved"
    slower = priced.with_columns(
        pl.when(multitask).then(pl.col(c) + 1.0).otherwise(pl.col(c)).alias(c)
        for c in PREFILL_COLUMNS
    )
    on_decode = _figures(decode_clock(priced), clock)
    assert np.allclose(_figures(decode_clock(slower), clock), on_decode, rtol=0, atol=1e-9)
    # end to end, the same second of prefill per request would be charged to the stream
    assert not np.allclose(_figures(slower, clock), _figures(priced, clock), rtol=0, atol=1e-3)


def test_the_study_answer_decomposes_modelled_decode_seconds(tmp_path: Path):
    study = write_study(tmp_path / "study", default_conditions())
    answer = answer_of(load_runs(study), n_boot=200)
    assert answer.priced is not None and answer.streams
    rows = sorted(answer.streams, key=lambda s: (s.modelled["drafter"], s.modelled["mixture"]))
    published = np.array([[s.modelled[p] for p in FIGURES] for s in rows], dtype=float)
    assert np.allclose(published, _figures(decode_clock(answer.priced), "modelled_s"), atol=1e-12)
    assert not np.allclose(published, _figures(answer.priced, "modelled_s"), atol=1e-6)
