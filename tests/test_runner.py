"""The run directory: events agree with request counters, resume is exact, bad input is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from engine_helpers import drop_requests_from, run_cli

from specviz.batch.config import BatchConfig
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.cost import curve_model
from specviz.rundir import RunDirError, run_identity, scan_events, scan_requests
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def requests(n: int) -> list[Request]:
    return [Request(i, p, "builtin") for i, p in enumerate(builtin_prompts()[:n])]


EVENT_KEY = ["request_index", "round", "position", "kind"]


def in_event_order(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` checked to be in the recorder's order: by request, round and position, a
    round's drafts before its target row (a rejected draft and the correction share a
    position), and each row named once by ``EVENT_KEY``."""
    assert events.select(pl.struct(EVENT_KEY).is_unique().all()).item()
    order = events.sort("request_index", "round", "position", pl.col("kind") != "draft")
    assert events.equals(order), "events.parquet is not in round and position order"
    return events


def test_events_agree_with_request_counters(tiny_model_dir, tmp_path):
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("heuristic", 2),
        max_new_tokens=24,
    )
    summary = run(config, requests(4), tmp_path / "run", progress=False)
    events = scan_events(tmp_path / "run").collect()
    reqs = scan_requests(tmp_path / "run").collect()
    per_request = events.group_by("request_id").agg(
        pl.col("emitted").sum().alias("emitted"),
        pl.col("round").n_unique().alias("rounds"),
        (pl.col("kind") == "draft").sum().alias("drafted"),
        pl.col("accepted").sum().alias("accepted"),
    )
    joined = reqs.join(per_request, on="request_id")
    assert joined["emitted"].to_list() == joined["new_tokens"].to_list()
    assert (joined["rounds"] == joined["rounds_right"]).all()
    assert (joined["drafted"] == joined["drafted_right"]).all()
    assert (joined["accepted"] == joined["accepted_right"]).all()
    assert reqs["new_tokens"].sum() == summary.new_tokens
    # one correction-or-bonus row per round; the prefill round of each turn drafts nothing
    assert events.filter(pl.col("kind") != "draft").height == reqs["rounds"].sum()
    assert events.filter(pl.col("prefill"))["n_drafted"].max() == 0
    # k is recorded for every round of the heuristic policy
    assert events.filter(~pl.col("prefill"))["k"].min() >= 1
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["complete"] and meta["config"]["policy"]["kind"] == "heuristic"
    assert {"versions", "hardware", "models", "git_commit", "seed"} <= meta.keys()


def test_killed_run_resumes_with_every_request_recorded_once(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = [
        "run",
        "--target",
        str(tiny_model_dir),
        "--drafter",
        "prompt-lookup",
        "--limit",
        "12",
        "--max-new-tokens",
        "40",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "specviz", *args],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "parts").glob("requests-*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "parts").glob("requests-*.parquet")))
    assert 2 <= done_before < 12  # killed mid-run
    result = run_cli(*args, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"({done_before} already done)" in result.stdout
    reqs = pl.read_parquet(out / "requests.parquet")
    assert sorted(reqs["request_index"].to_list()) == list(range(12))
    events = pl.read_parquet(out / "events.parquet")
    assert events.select(
        pl.struct("request_id", "round", "position", "kind").is_unique().all()
    ).item()
    assert set(events["request_id"]) == set(reqs["request_id"])
    assert not list((out / "parts").glob("*.parquet"))


@pytest.mark.parametrize(
    ("k", "kept"),
    [(1, 2), (5, 3)],  # k=5, 3 kept: the resumed file orders some tied rows the other way
    ids=["k1-kept-2", "k5-kept-3"],
)
def test_resumed_run_equals_uninterrupted_run(tiny_model_dir, tmp_path, k, kept):
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("heuristic", k),
        max_new_tokens=20,
    )
    run(config, requests(5), tmp_path / "whole", progress=False)
    partial = tmp_path / "partial"
    run(config, requests(5), partial, progress=False)
    drop_requests_from(partial, kept)  # as if the run had been killed there, then resume
    run(config, requests(5), partial, resume=True, progress=False)
    whole_ev = in_event_order(pl.read_parquet(tmp_path / "whole" / "events.parquet"))
    part_ev = in_event_order(pl.read_parquet(partial / "events.parquet"))
    cols = ["request_id", "round", "position", "k", "draft_token", "target_token", "accepted"]
    assert whole_ev.select(cols).equals(
        part_ev.select(cols)
    )  # the heuristic's k carried over exactly


@pytest.mark.parametrize(
    ("drafter", "policy"),
    [
        (DrafterConfig("layer-skip", layers=(0, 2)), PolicyConfig()),
        (DrafterConfig("component-skip", components=("mamba",), layers=(2,)), PolicyConfig()),
        (DrafterConfig("suffix"), PolicyConfig()),
        (
            DrafterConfig("prompt-lookup"),
            PolicyConfig(
                "cost-aware", 2, cost_model=curve_model([1.0, 1.1, 1.2], None, "prompt-lookup")
            ),
        ),
    ],
    ids=["layers", "components", "suffix", "cost-model"],
)
def test_a_run_identity_is_exactly_what_run_json_reads_back(drafter, policy):
    config = RunConfig(ModelSpec("m"), drafter, policy)
    for batch in (None, BatchConfig(2)):
        identity = run_identity(config, requests(2), batch)
        assert json.loads(json.dumps(identity)) == identity


@pytest.mark.parametrize(
    ("model", "drafter"),
    [
        ("tiny_model_dir", DrafterConfig("layer-skip", layers=(0, 2))),
        ("hybrid_dir", DrafterConfig("component-skip", components=("mamba", "mlp"), layers=(2, 3))),
    ],
    ids=["layer-skip-with-layers", "component-skip-with-components"],
)
def test_resuming_a_run_with_listed_layers_or_components_is_not_refused(
    model, drafter, request, tmp_path
):
    # run.json stores the layers and components as JSON lists; the config holds tuples
    config = RunConfig(
        ModelSpec(str(request.getfixturevalue(model))),
        drafter,
        PolicyConfig("constant", 2),
        max_new_tokens=6,
    )
    out = tmp_path / "run"
    run(config, requests(2), out, progress=False)
    # drop the last request as if the run had been killed, then resume
    reqs = pl.read_parquet(out / "requests.parquet")
    reqs.filter(pl.col("request_index") == 0).write_parquet(out / "requests.parquet")
    summary = run(config, requests(2), out, resume=True, progress=False)
    assert (summary.requests_skipped, summary.requests_done) == (1, 1)
    resumed = pl.read_parquet(out / "requests.parquet")
    assert sorted(resumed["request_index"].to_list()) == [0, 1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0"], "k must be >= 1"),
        (["--drafter", "bogus"], "drafter 'bogus' is not one of"),
        (["--drafter", "model"], "needs a draft model"),
        (["--drafter", "layer-skip", "--layers", "1,2"], "must list layer 0"),
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--workload", "/nonexistent/q.jsonl"], "/nonexistent/q.jsonl"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tiny_model_dir, tmp_path, args, message):
    result = run_cli("run", "--target", str(tiny_model_dir), "--out", str(tmp_path / "r"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_model_says_it_is_not_cached(tmp_path):
    result = run_cli("run", "--target", "nobody/no-such-model", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "not in the Hugging Face cache" in result.stderr and "local directory" in result.stderr
    missing = run_cli(
        "run", "--target", str(tmp_path / "missing.gguf"), "--out", str(tmp_path / "r")
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in result.stderr + missing.stderr


def test_incompatible_tokenizers_are_refused_naming_the_difference(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    import shutil

    shutil.copytree(tiny_model_dir, other)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(other)
    result = run_cli(
        "run",
        "--target",
        str(tiny_model_dir),
        "--drafter",
        "model",
        "--draft",
        str(other),
        "--out",
        str(tmp_path / "r"),
        "--limit",
        "1",
    )
    assert result.returncode == 2
    assert "vocabularies differ" in result.stderr and "1 only in the draft" in result.stderr


def test_empty_and_too_long_prompts_are_refused(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"question_id": 1, "category": "writing", "turns": [" "]}) + "\n")
    result = run_cli(
        "run",
        "--target",
        str(tiny_model_dir),
        "--workload",
        str(empty),
        "--out",
        str(tmp_path / "r1"),
    )
    assert result.returncode == 2 and "empty" in result.stderr
    long = tmp_path / "long.jsonl"
    long.write_text(
        json.dumps({"question_id": 2, "category": "writing", "turns": ["x" * 600]}) + "\n"
    )
    result = run_cli(
        "run",
        "--target",
        str(tiny_model_dir),
        "--workload",
        str(long),
        "--out",
        str(tmp_path / "r2"),
    )
    assert (
        result.returncode == 2 and "longer than the model's context window of 512" in result.stderr
    )
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_a_run_directory_of_another_configuration_is_left_untouched(tiny_model_dir, tmp_path):
    out = tmp_path / "r"
    config = RunConfig(ModelSpec(str(tiny_model_dir)), max_new_tokens=8)
    run(config, requests(1), out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(RunDirError, match="different config"):
        run(
            RunConfig(ModelSpec(str(tiny_model_dir)), max_new_tokens=9),
            requests(1),
            out,
            progress=False,
        )
    result = run_cli(
        "run",
        "--target",
        str(tiny_model_dir),
        "--max-new-tokens",
        "9",
        "--limit",
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 2 and "different config" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_two_variants_of_one_drafter_kind_stay_apart_in_metrics(tiny_model_dir, tmp_path):
    from specviz.metrics import summary

    variants = {
        "exit-1": DrafterConfig("layer-skip", exit_layer=1, name="exit-1"),
        "layer-0-only": DrafterConfig("layer-skip", layers=(0,), name="layer-0-only"),
    }
    for name, drafter in variants.items():
        config = RunConfig(
            ModelSpec(str(tiny_model_dir)), drafter, PolicyConfig("constant", 3), max_new_tokens=16
        )
        run(config, requests(2), tmp_path / name, progress=False)
    events = pl.concat([scan_events(tmp_path / n).collect() for n in variants])
    reqs = pl.concat([scan_requests(tmp_path / n).collect() for n in variants])
    assert sorted(reqs["drafter"].unique()) == ["exit-1", "layer-0-only"]
    assert reqs["drafter_kind"].unique().to_list() == ["layer-skip"]
    by_label = summary(events, by="drafter")
    assert by_label.height == 2
    for name in variants:
        own = summary(scan_events(tmp_path / name).collect())
        row = by_label.filter(pl.col("drafter") == name)
        assert row["accepted"].item() == own["accepted"].item()
        assert row["drafted"].item() == own["drafted"].item()


def test_drafter_name_from_the_cli_labels_events_and_requests(tiny_model_dir, tmp_path):
    out = tmp_path / "r"
    result = run_cli(
        "run", "--target", str(tiny_model_dir), "--drafter", "prompt-lookup",
        "--drafter-name", "pld-n2", "--max-ngram", "2", "--max-new-tokens", "8",
        "--limit", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert scan_events(out).select("drafter").unique().collect()["drafter"].to_list() == ["pld-n2"]
    reqs = scan_requests(out).collect()
    assert reqs["drafter"].to_list() == ["pld-n2"] and reqs["drafter_kind"].to_list() == [
        "prompt-lookup"
    ]


@pytest.mark.parametrize("batch", [None, BatchConfig(2)])
def test_time_to_first_token_and_latency_mean_the_same_at_batch_size_one_and_batched(
    tiny_model_dir, tmp_path, batch
):
    """ttft_s is the span of the request's first prefill (its event row's verify_s) and
    latency_s runs from that prefill's start to the end of the last turn, on both paths; at
    batch size 1 the request's wall time is its latency."""
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("constant", 2),
        max_new_tokens=12,
    )
    run(config, requests(3), tmp_path / "run", batch=batch, progress=False)
    first_prefill = (
        scan_events(tmp_path / "run")
        .filter(pl.col("prefill") & (pl.col("turn") == 0))
        .group_by("request_id")
        .agg(pl.col("verify_s").first().alias("first_prefill_s"))
        .collect()
    )
    reqs = scan_requests(tmp_path / "run").collect().join(first_prefill, on="request_id")
    assert (reqs["ttft_s"] == reqs["first_prefill_s"]).all()
    assert (reqs["ttft_s"] < reqs["latency_s"]).all()
    if batch is None:
        assert ((reqs["latency_s"] - reqs["wall_s"]).abs() < 1e-9).all()
    else:
        assert (reqs["latency_s"] >= reqs["wall_s"] - 1e-9).all()
