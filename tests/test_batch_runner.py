"""Batched run directories: same format as batch size 1, batch columns filled, single-task and
mixed batches decode the same prompts, time shares add up to the run."""

from __future__ import annotations

import json

import polars as pl
import pytest
from engine_helpers import run_cli

from specviz import metrics
from specviz.batch import BatchConfig, BatchConfigError, compose
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.rundir import RunDirError, scan_events, scan_requests
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts


def workload(per_category: int = 2, categories: int = 3) -> list[Request]:
    chosen: dict[str, list] = {}
    for p in builtin_prompts():
        if len(chosen) < categories or p.category in chosen:
            chosen.setdefault(p.category, [])
            if len(chosen[p.category]) < per_category:
                chosen[p.category].append(p)
    # the stream interleaves tasks, like a multitask mixture
    stream = [group[i] for i in range(per_category) for group in chosen.values()]
    return [Request(i, p, "mix") for i, p in enumerate(stream)]


def config(target) -> RunConfig:
    return RunConfig(
        ModelSpec(str(target)),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("heuristic", 2),
        max_new_tokens=20,
    )


def test_composition_keeps_every_request_once_and_groups_tasks():
    reqs = workload(per_category=3, categories=3)
    prompts = [r.prompt for r in reqs]
    single = compose(reqs, prompts, 2, "single-task")
    mixed = compose(reqs, prompts, 2, "mixed")
    for batches in (single, mixed, compose(reqs, prompts, 2, "stream")):
        assert sorted(r.index for b in batches for r in b) == [r.index for r in reqs]
        assert all(1 <= len(b) <= 2 for b in batches)
    assert all(len({r.prompt.category for r in b}) == 1 for b in single)
    assert all(len({r.prompt.category for r in b}) == len(b) for b in mixed)


def test_bad_batch_settings_are_refused_with_the_fix():
    with pytest.raises(BatchConfigError, match="batch size must be >= 1"):
        BatchConfig(0)
    with pytest.raises(BatchConfigError, match="single-task, mixed"):
        BatchConfig(2, composition="by-task")


def test_batched_run_writes_the_run_format_with_batch_columns(tiny_model_dir, tmp_path):
    reqs = workload()
    cfg = config(tiny_model_dir)
    summary = run(cfg, reqs, tmp_path / "b", batch=BatchConfig(3, "mixed"), progress=False)
    events = scan_events(tmp_path / "b").collect()
    requests = scan_requests(tmp_path / "b").collect()
    assert requests.height == len(reqs) and summary.requests_done == len(reqs)
    # events agree with the request counters, as for batch size 1
    per_request = events.group_by("request_id").agg(
        pl.col("emitted").sum().alias("emitted"),
        (pl.col("kind") == "draft").sum().alias("drafted_events"),
        pl.col("accepted").sum().alias("accepted_events"),
    )
    joined = requests.join(per_request, on="request_id")
    assert (joined["emitted"] == joined["new_tokens"]).all()
    assert (joined["drafted_events"] == joined["drafted"]).all()
    assert (joined["accepted_events"] == joined["accepted"]).all()
    # batch columns: configured size, composition, batch ids, rows, shared verify steps
    assert set(requests["batch_size"]) == {3} and set(events["batch_composition"]) == {"mixed"}
    assert sorted(set(requests["batch_id"])) == [0, 1]
    assert set(requests["row"]) == {0, 1, 2}
    verify = events.filter(~pl.col("prefill") & (pl.col("kind") != "draft"))
    rows_per_step = verify.group_by("batch_step").agg(
        pl.len().alias("n"), pl.col("batch_rows").first(), pl.col("row").n_unique().alias("slots")
    )
    assert (rows_per_step["n"] == rows_per_step["batch_rows"]).all()
    assert (rows_per_step["slots"] == rows_per_step["n"]).all()
    assert rows_per_step["n"].max() == 3
    assert events.filter(pl.col("prefill"))["batch_rows"].max() == 1
    # every request's time shares add up to the run's wall time
    assert requests["wall_s"].sum() == pytest.approx(summary.wall_s, rel=1e-6)
    assert (requests["latency_s"] >= requests["wall_s"] - 1e-9).all()
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert meta["batch"] == {
        "size": 3,
        "composition": "mixed",
        "continuous": False,
        "k_mode": "batch",
    }
    # the metrics read it like any run
    table = metrics.summary(events, ["category"])
    assert table["acceptance_rate"].drop_nulls().len() == 3


def test_single_task_and_mixed_batches_decode_the_same_outputs_as_batch_size_one(
    tiny_model_dir, tmp_path
):
    reqs = workload()
    cfg = config(tiny_model_dir)
    run(cfg, reqs, tmp_path / "one", progress=False)
    one = scan_requests(tmp_path / "one").collect().sort("request_index")
    assert set(one["batch_size"]) == {1} and one["batch_id"].null_count() == one.height
    for composition in ("single-task", "mixed"):
        out = tmp_path / composition
        run(cfg, reqs, out, batch=BatchConfig(2, composition, continuous=True), progress=False)
        got = scan_requests(out).collect().sort("request_index")
        assert got["output_text"].to_list() == one["output_text"].to_list()
        steps = scan_events(out).filter(~pl.col("prefill")).collect()
        tasks = steps["batch_tasks"]
        if composition == "single-task":  # only at a task boundary do two tasks share a step
            assert (tasks == 1).mean() > 0.5
        else:
            assert tasks.max() == 2 and (tasks == 2).mean() > 0.5


def test_batched_run_refuses_another_batch_setting_in_the_same_directory(tiny_model_dir, tmp_path):
    reqs = workload(per_category=1)
    cfg = config(tiny_model_dir)
    run(cfg, reqs, tmp_path / "b", batch=BatchConfig(2), progress=False)
    with pytest.raises(RunDirError, match="different batch"):
        run(cfg, reqs, tmp_path / "b", batch=BatchConfig(3), resume=True, progress=False)
    again = run(cfg, reqs, tmp_path / "b", batch=BatchConfig(2), resume=True, progress=False)
    assert again.requests_done == 0 and again.requests_skipped == len(reqs)


def test_a_drafter_without_a_batched_version_is_refused_before_anything_is_written(
    tiny_model_dir, tmp_path
):
    from specviz.batch.drafters import BatchDrafterError
    from specviz.config import COMPONENTS

    drafter = DrafterConfig("component-skip", components=(COMPONENTS[0],))
    cfg = RunConfig(ModelSpec(str(tiny_model_dir)), drafter, max_new_tokens=4)
    with pytest.raises(BatchDrafterError, match="'component-skip' has no batched version"):
        run(cfg, workload(1), tmp_path / "b", batch=BatchConfig(2), progress=False)
    assert not (tmp_path / "b").exists()


def test_cli_runs_a_mixed_batch_with_the_same_outputs_as_batch_size_one(tiny_model_dir, tmp_path):

    import polars as pl

    common = [
        "--target",
        str(tiny_model_dir),
        "--drafter",
        "prompt-lookup",
        "--limit",
        "4",
        "--max-new-tokens",
        "12",
        "--quiet",
    ]
    one = run_cli("run", *common, "--out", str(tmp_path / "b1"))
    four = run_cli(
        "run", *common, "--batch-size", "4", "--batch-composition", "mixed",
        "--out", str(tmp_path / "b4"),
    )  # fmt: skip
    assert one.returncode == 0 and four.returncode == 0, one.stderr + four.stderr
    texts = [
        pl.read_parquet(tmp_path / d / "requests.parquet")
        .sort("prompt_id")
        .select("prompt_id", "output_text")
        for d in ("b1", "b4")
    ]
    assert texts[0].equals(texts[1])
    assert set(pl.read_parquet(tmp_path / "b4" / "events.parquet")["batch_size"]) == {4}
    bad = run_cli("run", *common, "--continuous", "--out", str(tmp_path / "b5"))
    assert bad.returncode == 2 and "need --batch-size > 1" in bad.stderr


def test_batched_run_without_event_recording_records_no_event(
    tiny_model_dir, tmp_path, monkeypatch
):
    from specviz.batch.runner import BatchEventRecorder

    def refuse(*args: object) -> None:
        raise AssertionError("an event was recorded with record_events=False")

    monkeypatch.setattr(BatchEventRecorder, "add_step", refuse)
    reqs = workload(per_category=1)
    run(
        config(tiny_model_dir),
        reqs,
        tmp_path / "b",
        batch=BatchConfig(2),
        progress=False,
        record_events=False,
    )
    assert scan_events(tmp_path / "b").collect().height == 0
    assert scan_requests(tmp_path / "b").collect().height == len(reqs)
