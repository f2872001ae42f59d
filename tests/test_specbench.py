"""Export to Spec-Bench's answer format; its speed.py computation, re-implemented from the file
alone, gives specviz's mean accepted length and per-request speeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from specviz.metrics import request_summary, summary
from specviz.metrics.synthetic import (
    Labels,
    RoundSpec,
    events_from_rounds,
    prefill,
    requests_from_rows,
)
from specviz.rundir import (
    RUN_FILE,
    SCHEMA_VERSION,
    RunDirError,
    RunWriter,
    scan_events,
    scan_requests,
    write_json,
)
from specviz.specbench import export_specbench


def write_run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    write_json(
        run_dir / RUN_FILE, {"schema_version": SCHEMA_VERSION, "run_id": "r", "complete": True}
    )
    writer = RunWriter(run_dir)
    one_turn = [
        prefill(0.2),
        RoundSpec(4, 4, verify_s=0.1),
        RoundSpec(4, 1, verify_s=0.1),
        RoundSpec(4, 0, verify_s=0.1, emitted=1),
    ]
    two_turns = [
        prefill(0.2, turn=0),
        RoundSpec(3, 2, verify_s=0.1, turn=0),
        prefill(0.3, turn=1),
        RoundSpec(3, 3, verify_s=0.1, turn=1),
        RoundSpec(3, 1, verify_s=0.1, turn=1, emitted=1),
    ]
    specs = [
        (
            "q1",
            "coding",
            one_turn,
            dict(
                output_turns=["def f(): pass"],
                turn_new_tokens=[1 + 5 + 2 + 1],
                turn_wall_s=[0.7],
                turn_rounds=[4],
                n_turns=1,
            ),
        ),
        (
            "q2",
            "writing",
            two_turns,
            dict(
                output_turns=["Hello.", "Again."],
                turn_new_tokens=[1 + 3, 1 + 4 + 1],
                turn_wall_s=[0.4, 0.6],
                turn_rounds=[2, 3],
                n_turns=2,
            ),
        ),
    ]
    for index, (prompt, category, rounds, extra) in enumerate(specs):
        labels = Labels(
            run_id="r",
            request_id=f"r-{index}",
            request_index=index,
            prompt_id=prompt,
            category=category,
            mixture="mix",
        )
        events = events_from_rounds(rounds, labels)
        request = requests_from_rows(
            [
                dict(
                    run_id="r",
                    request_id=f"r-{index}",
                    request_index=index,
                    prompt_id=prompt,
                    category=category,
                    mixture="mix",
                    new_tokens=sum(extra["turn_new_tokens"]),
                    wall_s=sum(extra["turn_wall_s"]),
                    rounds=len(rounds),
                    target="org/tiny-model",
                    **extra,
                )
            ]
        )
        writer.append(events, request)
    writer.consolidate()


def specbench_speed(path: Path) -> tuple[float, float]:
    """What Spec-Bench's evaluation/speed.py computes for the method file (mean accepted tokens,
    tokens per second), from the file alone."""
    speeds, accept_lengths_list = [], []
    for line in path.read_text().splitlines():
        datapoint = json.loads(line)
        tokens = sum(datapoint["choices"][0]["new_tokens"])
        times = sum(datapoint["choices"][0]["wall_time"])
        accept_lengths_list.extend(datapoint["choices"][0]["accept_lengths"])
        speeds.append(tokens / times)
    return float(np.mean(accept_lengths_list)), float(np.array(speeds).mean())


def test_specbench_mean_accepted_tokens_equals_specviz_mean_accepted_length(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    out = tmp_path / "answers" / "model.jsonl"
    assert export_specbench(run, out) == 2
    mean_accepted, tokens_per_second = specbench_speed(out)
    ours = summary(scan_events(run))
    assert mean_accepted == pytest.approx(ours["mean_accepted_length"][0])
    # by hand: verify rounds emit 5, 2, 1 and 3, 4, 1 -> 16 / 6
    assert mean_accepted == pytest.approx(16 / 6)
    assert tokens_per_second == pytest.approx(
        request_summary(scan_requests(run))["request_tokens_per_s"][0]
    )


def test_answer_records_have_spec_bench_fields_per_turn(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    out = tmp_path / "model.jsonl"
    export_specbench(run, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in records] == ["q1", "q2"]
    assert [r["category"] for r in records] == ["coding", "writing"]
    assert records[0]["model_id"] == "tiny-model-specviz-model-constant-k5-temp-0.0"
    choice = records[1]["choices"][0]
    assert choice["turns"] == ["Hello.", "Again."]
    assert choice["new_tokens"] == [4, 6]
    assert choice["wall_time"] == pytest.approx([0.4, 0.6])
    assert choice["decoding_steps"] == [2, 3]
    assert choice["accept_lengths"] == [3, 4, 1]
    assert sum(choice["decoding_steps"]) == len(choice["accept_lengths"]) + len(choice["turns"])
    assert sum(choice["new_tokens"]) == sum(choice["accept_lengths"]) + len(choice["turns"])


def test_export_refuses_a_study_directory(tmp_path):
    write_run(tmp_path / "study" / "run")
    with pytest.raises(RunDirError, match="one run at a time"):
        export_specbench(tmp_path / "study", tmp_path / "x.jsonl")


def test_export_keeps_plain_decoding_at_one_token_per_step(tmp_path):
    run = tmp_path / "base"
    run.mkdir()
    write_json(run / RUN_FILE, {"schema_version": SCHEMA_VERSION, "run_id": "b", "complete": True})
    labels = Labels(run_id="b", request_id="b-0", drafter="none", policy="constant")
    events = events_from_rounds([prefill(0.1)] + [RoundSpec(verify_s=0.05)] * 3, labels)
    request = requests_from_rows(
        [
            dict(
                run_id="b",
                request_id="b-0",
                prompt_id="p0",
                drafter="none",
                k=0,
                new_tokens=4,
                wall_s=0.3,
                rounds=4,
                output_text="x",
            )
        ]
    )
    RunWriter(run).append(events, request)
    export_specbench(run, tmp_path / "base.jsonl")
    record = json.loads((tmp_path / "base.jsonl").read_text())
    assert record["model_id"].endswith("vanilla-temp-0.0")
    assert record["choices"][0]["accept_lengths"] == [1, 1, 1]
    assert record["choices"][0]["decoding_steps"] == [4]
    assert pl.Series(record["choices"][0]["new_tokens"]).sum() == 4
