"""Batch raggedness: padding of batched verify steps counted from events; the mixed against
single-task gap adds up exactly."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.batch import BatchConfig, BatchEventRecorder
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.engine import Round
from specviz.metrics import degradation, speedup
from specviz.metrics.batching import batch_composition_gap, batch_raggedness
from specviz.metrics.synthetic import requests_from_rows
from specviz.rundir import EVENT_SCHEMA, scan_events, scan_requests
from specviz.runner import Request, run
from specviz.workloads import builtin_prompts


def verify_round(index: int, drafted: int, accepted: int) -> Round:
    draft = tuple(range(10, 10 + drafted))
    target = (*draft[:accepted], 99)
    p = tuple(0.5 for _ in range(min(accepted + 1, drafted)))
    return Round(
        turn=0,
        index=index,
        prefill=False,
        k=3,
        draft=draft,
        q_tokens=None,
        target=target,
        p=p,
        p_next=0.9,
        n_accepted=accepted,
        n_emitted=accepted + 1,
        finish=None,
    )


def test_padding_share_counts_the_slots_shorter_feeds_leave_empty():
    # step 0: rows feed 4 (3 drafts) and 1 (no draft) tokens: 8 slots, 3 padding, 1.2 s
    # step 1: rows feed 3 and 3: no padding, 0.6 s
    frames = []
    for request, rounds in (("a", [(3, 3), (2, 0)]), ("b", [(0, 0), (2, 1)])):
        recorder = BatchEventRecorder()
        for step, (drafted, accepted) in enumerate(rounds):
            seconds = (1.2, 0.6)[step] / 2
            recorder.add_step(verify_round(step, drafted, accepted), 0.0, seconds, step, 2, 2)
        labels = {c: None for c in EVENT_SCHEMA} | {"run_id": "r", "request_id": request}
        frames.append(recorder.frame(labels))
    events = pl.concat(frames)
    out = batch_raggedness(events).row(0, named=True)
    assert out["steps"] == 2 and out["mean_rows"] == 2
    assert out["padding_share"] == pytest.approx(3 / 14)
    assert out["ragged_s"] == pytest.approx(1.2 * 3 / 8)
    # emitted: step 0: 4 + 1, step 1: 1 + 2 of 14 slots
    assert out["useful_share"] == pytest.approx(8 / 14)
    assert out["accept_spread"] == pytest.approx((3 + 1) / 2)


def test_mixed_against_single_task_gap_adds_up_on_real_runs(tiny_model_dir, tmp_path):
    prompts = [p for p in builtin_prompts() if p.category in ("coding", "writing")][:6]
    requests = [Request(i, p, "mix") for i, p in enumerate(prompts)]
    config = RunConfig(
        ModelSpec(str(tiny_model_dir)),
        DrafterConfig("prompt-lookup"),
        PolicyConfig("constant", 3),
        max_new_tokens=16,
    )
    run(config, requests, tmp_path / "one", progress=False)
    for composition in ("single-task", "mixed"):
        batch = BatchConfig(2, composition)
        run(config, requests, tmp_path / composition, batch=batch, progress=False)
    events, reqs = scan_events(tmp_path), scan_requests(tmp_path)
    ragged = batch_raggedness(events, ["batch_size", "batch_composition"])
    unbatched = ragged.filter(pl.col("batch_size") == 1).row(0, named=True)
    assert unbatched["padding_share"] == 0 and unbatched["mean_rows"] == 1
    assert unbatched["ragged_s"] == 0
    batched = ragged.filter(pl.col("batch_size") == 2)
    assert (batched["mean_rows"] > 1).all() and (batched["padding_share"] > 0).all()
    gap = batch_composition_gap(reqs, events)
    assert gap.height == 1  # one configuration at batch size 2, the baseline run has no pair
    row = gap.row(0, named=True)
    assert row["total_s"] == pytest.approx(row["mixed_s"] - row["single_task_s"])
    assert row["raggedness_s"] + row["other_s"] == pytest.approx(row["total_s"])
    # greedy: the same tokens, so the acceptance of the same prompts is the same
    assert row["mixed_acceptance"] == pytest.approx(row["single_task_acceptance"])


def test_a_batched_run_is_paired_with_the_baseline_batched_alike():
    rows = [
        {"run_id": "ar1", "drafter": "none", "batch_size": 1, "wall_s": 10.0},
        {"run_id": "ar2", "drafter": "none", "batch_size": 2, "wall_s": 5.0},
        {"run_id": "pl2", "drafter": "prompt-lookup", "batch_size": 2, "wall_s": 2.5},
    ]
    requests = requests_from_rows([r | {"prompt_id": "p", "new_tokens": 20} for r in rows])
    out = speedup(requests, ["drafter", "batch_size"])
    assert out.filter(pl.col("drafter") == "prompt-lookup")["speedup_total"].item() == 2.0


def test_degradation_leaves_batched_runs_to_the_batch_metrics():
    rows = [  # a single-task and a multitask stream at batch size 1, and a batched multitask run
        {"run_id": "s", "mixture": "coding", "category": "coding", "prompt_id": "c"},
        {"run_id": "s2", "mixture": "writing", "category": "writing", "prompt_id": "w"},
        {"run_id": "m", "mixture": "mix", "category": "coding", "prompt_id": "c"},
        {"run_id": "m", "mixture": "mix", "category": "writing", "prompt_id": "w"},
        {"run_id": "b", "mixture": "mix", "category": "coding", "prompt_id": "c", "batch_size": 4},
        {"run_id": "b", "mixture": "mix", "category": "writing", "prompt_id": "w", "batch_size": 4},
    ]
    requests = requests_from_rows(
        [{"batch_size": 1, "new_tokens": 10, "wall_s": 1.0} | r for r in rows]
    )
    table = degradation(requests, n_boot=10)
    assert table.height == 1 and table["multitask_s"].item() == 2.0  # run m only
