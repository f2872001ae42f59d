"""The per-request distributions where users read them: ``specviz summary --json`` and the
report's folded table, on the fixture studies (formulas: tests/test_metrics_distributions.py)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from engine_helpers import run_cli
from mix_study import mix_runs, write_mix_study
from report_fixtures import default_conditions, write_study

from specviz.metrics.distributions import (
    request_distributions,
    request_values,
    study_distributions,
)
from specviz.report.answer import study_answer
from specviz.report.data import load_runs
from specviz.report.distributions import TITLE, distribution_table, distributions_html

VALUES = ("acceptance_length", "acceptance_rate", "tokens_per_s", "latency_s")
STATS = ("mean", "token_weighted_mean", "p50", "p90", "p99", "min")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("dist") / "study", default_conditions())


def test_summary_json_has_every_distribution_field_per_method_task_and_stream(
    study: Path,
) -> None:
    done = run_cli("summary", str(study), "--json", "--n-boot", "200")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["distributions"]
    rows = found["requests"]
    keys = {(r["drafter"], r["category"], r["stream"]) for r in rows}
    assert keys == {
        (d, c, s)
        for d in ("none", "prompt-lookup")
        for c in ("coding", "writing")
        for s in ("single-task", "multitask")
    }
    assert all(f"{v}_{s}" in r for r in rows for v in VALUES for s in STATS)
    drafted = [r for r in rows if r["drafter"] == "prompt-lookup"]
    assert all(r["acceptance_length_min"] <= r["acceptance_length_p50"] for r in drafted)
    assert all(r["acceptance_length_mean"] > 1 for r in drafted)  # bonus token included
    baseline = [r for r in rows if r["drafter"] == "none"]
    assert all(r["acceptance_length_mean"] == 1.0 for r in baseline)  # plain decoding: 1.00
    assert all(r["acceptance_rate_mean"] is None for r in baseline)  # nothing drafted
    hist = found["accepted_histogram"]
    assert {(h["drafter"], h["category"]) for h in hist} == {
        ("prompt-lookup", "coding"),
        ("prompt-lookup", "writing"),
    }
    for category in ("coding", "writing"):
        shares = [h["share"] for h in hist if h["category"] == category]
        assert sum(shares) == pytest.approx(1.0)
    split = found["time_shares"]
    assert all(
        s["draft_share"] + s["verify_share"] + s["prefill_share"] == pytest.approx(1.0)
        for s in split
    )
    # the same numbers as the metrics give on the same runs
    data = load_runs(study, require_baseline=False)
    again = json.loads(json.dumps(study_distributions(data.events, data.requests)))
    for table in ("requests", "accepted_histogram", "time_shares"):
        for mine, theirs in zip(found[table], again[table], strict=True):
            assert mine == pytest.approx(theirs)  # sums of floats, in any order


def test_the_mix_study_answer_carries_the_distributions_of_its_chat_mix(tmp_path: Path) -> None:
    study = write_mix_study(tmp_path / "mix", mix_runs())
    data = load_runs(study)
    rows = pl.DataFrame(study_answer(data, n_boot=200)["distributions"]["requests"])
    mix = rows.filter((pl.col("stream") == "multitask") & (pl.col("drafter") == "prompt-lookup"))
    assert set(mix["category"]) == {"writing", "roleplay", "coding", "extraction", "summarization"}
    values = request_values(data.events, data.requests)
    stats = request_distributions(values).filter(pl.col("stream") == "multitask")
    assert mix.sort("policy", "k", "category")["acceptance_length_p90"].to_list() == (
        stats.filter(pl.col("drafter") == "prompt-lookup")
        .sort("policy", "k", "category")["acceptance_length_p90"]
        .to_list()
    )


def test_the_report_table_shows_one_row_per_method_task_and_stream(study: Path) -> None:
    data = load_runs(study)
    found = study_distributions(data.events, data.requests)
    table = distribution_table(found)
    assert table.height == len(found["requests"]) == 8
    row = table.filter(
        (pl.col("method") == "prompt-lookup constant k=4")
        & (pl.col("category") == "coding")
        & (pl.col("stream") == "multitask")
    ).row(0, named=True)
    stats = next(
        r
        for r in found["requests"]
        if (r["drafter"], r["category"], r["stream"]) == ("prompt-lookup", "coding", "multitask")
    )
    assert row["length"].startswith(f"{stats['acceptance_length_mean']:.3g} · ")
    assert row["histogram"].startswith("0:")  # spec steps that accepted nothing come first
    html = distributions_html(found).markup
    assert html.startswith('<details class="specviz-details"><summary>')  # folded
    assert TITLE.replace("'", "&#x27;") in html and row["histogram"] in html
