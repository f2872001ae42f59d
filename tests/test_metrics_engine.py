"""Metrics computed from a real run's events agree with the engine's own counters."""

from __future__ import annotations

import json

import polars as pl
import pytest
from engine_helpers import MODELS, PROMPTS

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.metrics import (
    best_k,
    degradation,
    request_summary,
    speedup,
    summary,
    theory_vs_measured,
)
from specviz.rundir import scan_events, scan_requests
from specviz.runner import Request, run
from specviz.specbench import export_specbench

pytestmark = pytest.mark.slow  # three tiny-model runs


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model_dir, tiny_draft_dir):
    root = tmp_path_factory.mktemp("study")
    requests = [Request(i, p, mixture="mix") for i, p in enumerate(PROMPTS)]
    target = ModelSpec(str(tiny_model_dir))
    configs = {
        "base": RunConfig(target, max_new_tokens=24),
        "lookup": RunConfig(
            target, DrafterConfig("prompt-lookup"), PolicyConfig("constant", 3), max_new_tokens=24
        ),
        "draft": RunConfig(
            target,
            DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir))),
            PolicyConfig("heuristic", 2),
            max_new_tokens=24,
        ),
    }
    summaries = {
        name: run(config, requests, root / name, models=MODELS, progress=False)
        for name, config in configs.items()
    }
    for prompt in PROMPTS:  # single-task streams of the prompt-lookup configuration
        single = [Request(0, prompt, mixture=prompt.category)]
        run(
            configs["lookup"],
            single,
            root / f"lookup-{prompt.category}",
            models=MODELS,
            progress=False,
        )
    return root, summaries


@pytest.mark.parametrize("name", ["base", "lookup", "draft"])
def test_event_metrics_match_the_engine_counters(study, name):
    root, summaries = study
    counters = summaries[name]
    s = summary(scan_events(root / name)).row(0, named=True)
    req = scan_requests(root / name).collect()
    assert s["requests"] == counters.requests_done == 3
    assert s["requests"] == req.height
    assert s["tokens"] == counters.new_tokens == req["new_tokens"].sum()
    assert s["rounds"] == req["rounds"].sum()
    assert s["verify_rounds"] == req["rounds"].sum() - req["n_turns"].sum()
    assert (s["drafted"], s["accepted"]) == (counters.drafted, counters.accepted)
    by_requests = request_summary(req).row(0, named=True)
    assert s["mean_accepted_length"] == pytest.approx(by_requests["mean_accepted_length"])
    assert s["draft_s"] == pytest.approx(req["draft_s"].sum())
    assert s["verify_s"] == pytest.approx(req["verify_s"].sum())
    assert s["prefill_s"] == pytest.approx(req["prefill_s"].sum())
    if name == "base":
        assert s["mean_accepted_length"] == pytest.approx(1.0)
    else:
        assert s["drafted"] > 0


def test_study_level_speedup_theory_and_specbench_run_on_real_runs(study, tmp_path):
    root, _ = study
    out = speedup(scan_requests(root), by=["drafter", "policy", "k"], n_boot=100)
    assert out["drafter"].to_list() == ["model", "prompt-lookup"]
    assert out["requests"].to_list() == [3, 3 + 3]  # prompt lookup also ran single-task
    assert (out["speedup_total"] > 0).all()
    tvm = theory_vs_measured(scan_events(root), "drafter")
    assert tvm["drafter"].to_list() == ["model", "prompt-lookup"]
    assert tvm["measured_speedup"].is_not_null().all()
    best = best_k(scan_events(root), "drafter", ks=range(1, 6))
    assert best["drafter"].to_list() == ["prompt-lookup"]  # the only constant-policy drafter
    assert best["ks_run"].to_list() == [[3]]
    assert best["best_k_measured"].to_list() == [3]
    assert 1 <= best["best_k_predicted"][0] <= 5

    answers = tmp_path / "draft.jsonl"
    assert export_specbench(root / "draft", answers) == 3
    lengths = [
        n
        for line in answers.read_text().splitlines()
        for n in json.loads(line)["choices"][0]["accept_lengths"]
    ]
    events = scan_events(root / "draft")
    assert sum(lengths) / len(lengths) == pytest.approx(summary(events)["mean_accepted_length"][0])
    assert pl.Series(lengths).min() >= 1


def test_degradation_on_real_runs_adds_up(study):
    root, _ = study
    out = degradation(scan_requests(root), n_boot=100)
    # only prompt-lookup was run single-task; the baseline and the draft model have no row
    assert out["drafter"].to_list() == ["prompt-lookup"]
    r = out.row(0, named=True)
    assert r["requests"] == 3
    assert r["best_k"] == "coding=3, extraction=3, writing=3"
    assert r["k_mismatch"] == 0.0
    parts = r["composition"] + r["k_mismatch"] + r["carry_over"] + r["residual"]
    assert parts == pytest.approx(r["total"])
    # the same prompts, greedy: each single-task counterpart produced the same tokens
    assert r["tokens"] == scan_requests(root / "lookup").collect()["new_tokens"].sum()
