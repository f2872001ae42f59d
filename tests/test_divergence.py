"""Greedy divergence bookkeeping: per request, where speculation parted from plain greedy."""

from __future__ import annotations

import polars as pl
import pytest
from engine_helpers import MODELS, PROMPTS

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.metrics import greedy_divergence
from specviz.metrics.divergence import first_difference
from specviz.rundir import scan_events, scan_requests
from specviz.runner import run
from specviz.workloads.request import Request


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    """A float32 baseline and a prompt-lookup run of the tiny model over the same prompts."""
    root = tmp_path_factory.mktemp("div")
    target = ModelSpec(str(tiny_model_dir), dtype="float32")
    requests = [Request(i, p, "m") for i, p in enumerate(PROMPTS)]
    for name, drafter in (("base", DrafterConfig()), ("pl", DrafterConfig("prompt-lookup"))):
        config = RunConfig(target, drafter, PolicyConfig("constant", 3), max_new_tokens=24)
        run(config, requests, root / name, models=MODELS, progress=False)
    dirs = [root / "base", root / "pl"]
    return scan_events(dirs).collect(), scan_requests(dirs).collect()


def test_first_difference_names_the_first_differing_token():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2


def test_float32_greedy_speculation_records_no_divergence(two_runs):
    events, requests = two_runs
    table = greedy_divergence(events, requests)
    assert table.height == len(PROMPTS) and set(table["drafter"]) == {"prompt-lookup"}
    assert not table["diverged"].any()
    assert (table["new_tokens"] == table["baseline_tokens"]).all()


def test_a_prompt_the_baseline_decoded_in_two_streams_is_compared_once(two_runs):
    """One row per speculative request, however many baseline streams decoded its prompt."""
    events, requests = two_runs
    base = events.filter(pl.col("drafter") == "none")
    again = base.with_columns(pl.lit("base-again").alias("run_id"), pl.lit("m2").alias("mixture"))
    base_requests = requests.filter(pl.col("drafter") == "none")
    table = greedy_divergence(
        pl.concat([events, again]),
        pl.concat([requests, base_requests.with_columns(pl.lit("base-again").alias("run_id"))]),
    )
    assert table.height == len(PROMPTS) == table.select("run_id", "request_id").n_unique()
    assert not table["diverged"].any()


def test_a_changed_token_is_recorded_at_its_position(two_runs):
    events, requests = two_runs
    spec = events.filter(pl.col("drafter") == "prompt-lookup")
    request = spec["request_id"][0]
    emitted = (
        spec.with_row_index("_i")
        .filter((pl.col("request_id") == request) & pl.col("emitted"))
        .sort(["turn", "round", "position"])
    )
    row = emitted["_i"][5]  # the sixth emitted token of that request
    changed = (
        spec.with_row_index("_i")
        .with_columns(
            pl.when(pl.col("_i") == row)
            .then(pl.col("target_token") + 1)
            .otherwise(pl.col("target_token"))
            .alias("target_token")
        )
        .drop("_i")
    )
    mixed = pl.concat([events.filter(pl.col("drafter") == "none"), changed])
    table = greedy_divergence(mixed, requests)
    hit = table.filter(pl.col("request_id") == request)
    assert hit["diverged"].to_list() == [True] and hit["first_divergence"].to_list() == [5]
    assert table["diverged"].sum() == 1  # every other request stays equal


def test_sampled_requests_are_not_compared(two_runs):
    events, requests = two_runs
    sampled = requests.with_columns(pl.lit(0.7).alias("temperature"))
    assert greedy_divergence(events, sampled).height == 0


def test_bf16_divergences_are_exactly_the_requests_whose_output_changed(tiny_model_dir, tmp_path):
    target = ModelSpec(str(tiny_model_dir), dtype="bfloat16")
    requests = [Request(i, p, "m") for i, p in enumerate(PROMPTS)]
    for name, drafter in (("base", DrafterConfig()), ("pl", DrafterConfig("prompt-lookup"))):
        config = RunConfig(target, drafter, PolicyConfig("constant", 3), max_new_tokens=24)
        run(config, requests, tmp_path / name, models=MODELS, progress=False)
    dirs = [tmp_path / "base", tmp_path / "pl"]
    table = greedy_divergence(scan_events(dirs), scan_requests(dirs))
    texts = scan_requests(dirs).select("drafter", "prompt_id", "output_text").collect()
    base = dict(
        texts.filter(pl.col("drafter") == "none").select("prompt_id", "output_text").iter_rows()
    )
    for row in table.iter_rows(named=True):
        spec = texts.filter(
            (pl.col("drafter") == "prompt-lookup") & (pl.col("prompt_id") == row["prompt_id"])
        )["output_text"][0]
        assert row["diverged"] == (spec != base[row["prompt_id"]])
    assert table.height == len(PROMPTS)
