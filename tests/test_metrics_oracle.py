"""The oracle (each task's best static configuration, cross-fitted over prompt halves) and the
multitask gap to it, on hand-made request tables."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics.oracle import (
    NoOracleError,
    best_single_configuration,
    oracle_choices,
    oracle_gap,
    oracle_prompt_spt,
    oracle_routes,
    recovered_share,
)

# wall seconds for 10 tokens of each prompt, single-task, per static configuration
SINGLE = {
    ("none", 0): {"c1": 10, "c2": 10, "w1": 10, "w2": 10},
    ("prompt-lookup", 3): {"c1": 6, "c2": 7, "w1": 12, "w2": 9},
    ("prompt-lookup", 5): {"c1": 4, "c2": 5, "w1": 14, "w2": 15},
}
TASK = {"c1": "coding", "c2": "coding", "w1": "writing", "w2": "writing"}


def row(run_id, mixture, drafter, policy, k, prompt, wall, index):
    return {
        "run_id": run_id, "mixture": mixture, "target": "t", "temperature": 0.0,
        "drafter": drafter, "policy": policy, "k": k, "category": TASK[prompt],
        "prompt_id": prompt, "repeat": 0, "new_tokens": 10, "wall_s": float(wall),
        "request_id": f"00-{index:05d}-{prompt}", "request_index": index, "batch_size": 1,
    }  # fmt: skip


def table(multitask: dict[str, dict[str, float]]) -> pl.DataFrame:
    rows = []
    for (drafter, k), walls in SINGLE.items():
        policy = "none" if drafter == "none" else "constant"
        for task in ("coding", "writing"):
            run_id = f"{drafter}-{k}-{task}"
            prompts = [p for p in walls if TASK[p] == task]
            for i, p in enumerate(prompts):
                rows.append(row(run_id, task, drafter, policy, k, p, walls[p], i))
    for policy, walls in multitask.items():
        for i, p in enumerate(walls):
            rows.append(row(f"mt-{policy}", "uniform", "prompt-lookup", policy, 3, p, walls[p], i))
    return pl.DataFrame(rows)


STREAMS = {
    "heuristic": {"c1": 6, "w1": 11, "c2": 7, "w2": 12},  # T_M = 36
    "heuristic-per-task": {"c1": 5, "w1": 10.5, "c2": 6, "w2": 12},  # T_M = 33.5
}


def test_each_half_chooses_the_fastest_static_configuration_of_its_task():
    choices = oracle_choices(table(STREAMS)).sort("category", "half")
    got = [(r["category"], r["half"], r["drafter"], r["k"]) for r in choices.iter_rows(named=True)]
    assert got == [
        ("coding", 0, "prompt-lookup", 5),
        ("coding", 1, "prompt-lookup", 5),
        ("writing", 0, "none", 0),
        ("writing", 1, "prompt-lookup", 3),
    ]


def test_each_prompt_is_scored_by_the_choice_made_on_the_other_half():
    scored = oracle_prompt_spt(table(STREAMS)).sort("prompt_id")
    assert scored["oracle_spt"].to_list() == pytest.approx([0.4, 0.5, 1.2, 1.0])
    # in-sample choice would give w1 1.0 and w2 0.9: the luckiest configuration per prompt
    assert scored["held_out"].all()


def test_multitask_gap_to_the_oracle_and_the_share_a_remedy_recovers():
    gaps = oracle_gap(table(STREAMS)).sort("policy")
    assert gaps["multitask_s"].to_list() == pytest.approx([36.0, 33.5])
    assert gaps["oracle_s"].to_list() == pytest.approx([31.0, 31.0])
    assert gaps["gap_s"].to_list() == pytest.approx([5.0, 2.5])
    assert gaps["gap_share"][0] == pytest.approx(5 / 36)
    share = recovered_share(
        gaps, pl.col("policy") == "heuristic", pl.col("policy") == "heuristic-per-task"
    )
    assert share["recovered_share"].to_list() == pytest.approx([0.5])


def test_a_single_prompt_task_is_scored_in_sample_and_flagged():
    one = table({"heuristic": {"c1": 6, "w1": 11}}).filter(pl.col("prompt_id") != "w2")
    scored = oracle_prompt_spt(one).sort("prompt_id")
    assert scored.filter(pl.col("category") == "writing")["held_out"].to_list() == [False]
    assert scored.filter(pl.col("prompt_id") == "w1")["oracle_spt"].to_list() == [1.0]
    assert oracle_gap(one)["held_out"].to_list() == [False]


def test_a_task_without_static_single_task_runs_has_no_oracle():
    only_coding = table(STREAMS).filter(
        ~((pl.col("category") == "writing") & (pl.col("mixture") != "uniform"))
    )
    with pytest.raises(NoOracleError, match="task 'writing'"):
        oracle_gap(only_coding)


def test_the_best_single_configuration_is_chosen_on_the_other_half_of_the_stream(monkeypatch):
    # halves: c1, w1 -> 0; c2, w2 -> 1. With prompt lookup at k=5 taking 4 + 12 s on half 0:
    # half 0 costs none 20, k=3 18, k=5 16; half 1 costs none 20, k=3 16, k=5 20
    monkeypatch.setitem(SINGLE, ("prompt-lookup", 5), {"c1": 4, "c2": 5, "w1": 12, "w2": 15})
    out = best_single_configuration(table({"heuristic": STREAMS["heuristic"]}))
    r = out.row(0, named=True)
    # half 0 takes half 1's choice (k=3: 18 s on half 0), half 1 takes half 0's (k=5: 20 s);
    # in sample, k=3 everywhere would have scored 34 s
    assert r["single"] == "prompt-lookup k=3 / prompt-lookup k=5"
    assert r["single_s"] == pytest.approx(38.0)
    assert r["single_baseline"] is False


def test_oracle_routes_name_each_tasks_choice_and_whether_it_speculates():
    routes = {r["category"]: r for r in oracle_routes(table(STREAMS)).iter_rows(named=True)}
    assert routes["coding"]["route"] == "prompt-lookup k=5" and routes["coding"]["speculate"]
