"""What each remedy recovers of the oracle gap, and the drafter-memory term, on hand-made
request tables (numbers worked by hand in the comments)."""

from __future__ import annotations

import polars as pl
import pytest

from specviz.metrics import degradation
from specviz.metrics.oracle import oracle_gap
from specviz.metrics.remedies import (
    NO_GAP,
    NO_ORACLE,
    NOT_RUN,
    Absence,
    absences,
    memory_term,
    remedies,
)
from specviz.metrics.study import remedies_of
from specviz.report.answer import remedies_dict
from specviz.report.summary import ABSENT, answer_text, remedy_lines
from specviz.report.tables import stream_labels

TASK = {"c1": "coding", "c2": "coding", "w1": "writing", "w2": "writing"}
# wall seconds for 10 tokens of each prompt, single-task, per static configuration: the oracle
# scores c1 0.4, c2 0.5, w1 1.2, w2 1.0 s/token (cross-fitted), so a stream of all four
# prompts has T_O = 4 + 5 + 12 + 10 = 31 s
SINGLE = {
    ("none", 0): {"c1": 10, "c2": 10, "w1": 10, "w2": 10},
    ("prompt-lookup", 3): {"c1": 6, "c2": 7, "w1": 12, "w2": 9},
    ("prompt-lookup", 5): {"c1": 4, "c2": 5, "w1": 14, "w2": 15},
}
# multitask streams (drafter, policy): seconds per prompt, stream order c1 w1 c2 w2, k = 3
STREAMS = {
    ("prompt-lookup", "heuristic"): {"c1": 6, "w1": 11, "c2": 7, "w2": 12},  # 36: gap 5
    ("prompt-lookup", "heuristic-per-task"): {"c1": 5, "w1": 10.5, "c2": 6, "w2": 12},  # 33.5
    ("prompt-lookup", "constant"): {"c1": 6, "w1": 12, "c2": 7, "w2": 9},  # 34: gap 3
    ("prompt-lookup", "cost-aware"): {"c1": 6, "w1": 11, "c2": 6.5, "w2": 9},  # 32.5
    ("suffix", "constant"): {"c1": 6, "w1": 13, "c2": 8, "w2": 10},  # 37: gap 6
    ("suffix-task", "constant"): {"c1": 6, "w1": 12, "c2": 7, "w2": 10},  # 35
}
PARTITIONS = {"suffix": "shared", "suffix-task": "task"}


def row(run_id, mixture, drafter, policy, k, prompt, wall, index):
    return {
        "run_id": run_id, "mixture": mixture, "target": "t", "temperature": 0.0,
        "drafter": drafter, "policy": policy, "k": k, "category": TASK[prompt],
        "prompt_id": prompt, "repeat": 0, "new_tokens": 10, "wall_s": float(wall),
        "modelled_s": float(wall), "request_id": f"00-{index:05d}-{prompt}",
        "request_index": index, "batch_size": 1,
    }  # fmt: skip


def table(streams=STREAMS, single=SINGLE) -> pl.DataFrame:
    rows = []
    for (drafter, k), walls in single.items():
        policy = "none" if drafter == "none" else "constant"
        for task in ("coding", "writing"):
            prompts = [p for p in walls if TASK[p] == task]
            for i, p in enumerate(prompts):
                rows.append(row(f"{drafter}-{k}-{task}", task, drafter, policy, k, p, walls[p], i))
    for (drafter, policy), walls in streams.items():
        for i, p in enumerate(walls):
            rows.append(
                row(f"mt-{drafter}-{policy}", "uniform", drafter, policy, 3, p, walls[p], i)
            )
    return pl.DataFrame(rows)


def test_each_remedy_recovers_its_share_of_the_reference_oracle_gap():
    got = remedies(oracle_gap(table()), PARTITIONS)
    shares = dict(zip(got["remedy"], got["recovered_share"], strict=True))
    assert shares == pytest.approx(
        {
            "task-aware policy": (36 - 33.5) / (36 - 31),  # 0.5
            "cost-aware k": (34 - 32.5) / (34 - 31),  # 0.5
            "per-task drafter memory": (37 - 35) / (37 - 31),  # 1/3
        }
    )
    memory = got.filter(pl.col("remedy") == "per-task drafter memory").row(0, named=True)
    assert memory["reference"] == "suffix/constant/k=3"
    assert memory["remedied"] == "suffix-task/constant/k=3"


def test_a_remedy_for_a_stream_already_at_the_oracle_has_no_share():
    streams = {k: v for k, v in STREAMS.items() if k[1] in ("constant", "cost-aware")}
    streams[("prompt-lookup", "constant")] = {"c1": 4, "w1": 12, "c2": 5, "w2": 10}  # = T_O
    got = remedies(oracle_gap(table(streams)), PARTITIONS)
    assert got.filter(pl.col("remedy") == "cost-aware k")["recovered_share"].to_list() == [None]


def memory_table() -> pl.DataFrame:
    """Suffix drafters run single-task (c1 6, c2 7, w1 12, w2 9: T_S = T_ref = 34) and in the
    uniform stream with shared memory (37) and per-task memory (35)."""
    single = {(d, 3): SINGLE[("prompt-lookup", 3)] for d in ("suffix", "suffix-task")}
    streams = {k: v for k, v in STREAMS.items() if k[0].startswith("suffix")}
    return table(streams, single)


def test_the_drafter_memory_term_splits_the_interleaving_part_of_the_shared_stream():
    modelled = degradation(memory_table(), n_boot=20, seconds="modelled_s")
    term = memory_term(modelled, PARTITIONS).row(0, named=True)
    assert (term["shared"], term["per_task"], term["policy"], term["k"]) == (
        "suffix", "suffix-task", "constant", 3,
    )  # fmt: skip
    assert term["interleaving_s"] == pytest.approx(37 - 34)
    assert term["drafter_memory_s"] == pytest.approx(37 - 35)
    assert term["other_interleaving_s"] == pytest.approx(35 - 34)
    assert term["drafter_memory_pct"] == pytest.approx(100 * 2 / 34)
    assert term["interleaving_pct"] == pytest.approx(
        term["drafter_memory_pct"] + term["other_interleaving_pct"]
    )


def test_remedy_answer_and_summary_show_the_shares_and_say_what_is_not_in_this_study():
    requests = memory_table()
    answer = remedy_answer(requests, both_clocks(requests), PARTITIONS)
    assert answer["oracle"] == ""
    assert [r["remedy"] for r in answer["recovered"]] == ["per-task drafter memory"]
    # the oracle here is the suffix drafters' own static runs: T_O = 34, so (37-35)/(37-34)
    assert answer["recovered"][0]["recovered_share"] == pytest.approx(2 / 3)
    assert answer["absent"] == {"task-aware policy": ABSENT, "cost-aware k": ABSENT}
    losses = {r["drafter"]: r["gap_share"] for r in answer["loss"]}
    assert losses == pytest.approx({"suffix": 3 / 37, "suffix-task": 1 / 35})
    lines = remedy_lines(answer)
    assert "task-aware policy: not in this study." in lines
    assert any("per-task drafter memory" in line and "67%" in line for line in lines)
    assert any("drafter memory +5.9%" in line for line in lines)


def both_clocks(requests: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {c: degradation(requests, n_boot=20, seconds=f"{c}_s") for c in ("modelled", "wall")}


def test_each_remedy_figure_has_its_wall_clock_twin():
    # the per-task-memory stream's w2 took 11 s of wall clock, 10 s modelled: 36 s vs 35 s
    slower = (pl.col("run_id") == "mt-suffix-task-constant") & (pl.col("prompt_id") == "w2")
    requests = memory_table().with_columns(
        pl.when(slower).then(11.0).otherwise(pl.col("wall_s")).alias("wall_s")
    )
    answer = remedy_answer(requests, both_clocks(requests), PARTITIONS)
    recovered = answer["recovered"][0]
    assert recovered["recovered_share"] == pytest.approx((37 - 35) / (37 - 34))
    assert recovered["recovered_share_wall"] == pytest.approx((37 - 36) / (37 - 34))
    memory = answer["memory"][0]
    assert memory["drafter_memory_pct_wall"] == pytest.approx(100 * (37 - 36) / 34)
    losses = {r["drafter"]: r["gap_share_wall"] for r in answer["loss"]}
    assert losses == pytest.approx({"suffix": 3 / 37, "suffix-task": 2 / 36})
    lines = remedy_lines(answer)
    assert any("recovers 67% of the oracle gap (wall clock 33%)" in line for line in lines)
    assert any("wall clock: drafter memory +2.9%" in line for line in lines)


def test_remedies_without_an_oracle_say_why():
    requests = table({k: v for k, v in STREAMS.items() if k[0] == "prompt-lookup"}, {})
    answer = remedy_answer(requests, {"modelled": None, "wall": None}, PARTITIONS)
    assert answer["recovered"] == [] and answer["oracle"].startswith("no oracle")
    assert answer["absent"]["task-aware policy"].startswith("no oracle")
    assert answer["absent"]["per-task drafter memory"] == ABSENT
    assert "no oracle" in answer_text_of(answer)


def test_a_remedy_without_a_recovered_share_is_typed_by_why():
    requests = memory_table()  # a per-task drafter memory pair; no policy or cost-aware pair
    memory = "per-task drafter memory"
    assert absences(requests, PARTITIONS, {memory}, has_oracle=True) == [
        Absence("task-aware policy", NOT_RUN),
        Absence("cost-aware k", NOT_RUN),
    ]
    assert Absence(memory, NO_ORACLE) in absences(requests, PARTITIONS, set(), has_oracle=False)
    assert Absence(memory, NO_GAP) in absences(requests, PARTITIONS, set(), has_oracle=True)


def remedy_answer(requests: pl.DataFrame, tables: dict, partitions: dict[str, str]) -> dict:
    """The answer's published ``remedies`` entry for these requests and degradation tables."""
    return remedies_dict(remedies_of(requests, requests, tables, partitions, stream_labels))


def answer_text_of(remedy: dict) -> str:
    base = {"headline": {"text": "h"}, "streams": [], "speedups": [], "runs_table": []}
    return answer_text(base | {"remedies": remedy})


def test_memory_partitions_come_from_each_runs_config(tmp_path):
    import json

    from specviz.config import DrafterConfig, ModelSpec, RunConfig
    from specviz.rundir import SCHEMA_VERSION, memory_partitions

    drafters = {
        "a": DrafterConfig("suffix"),
        "b": DrafterConfig("suffix", partition="task", name="suffix-task"),
        "c": DrafterConfig("prompt-lookup"),
    }
    for name, drafter in drafters.items():
        (tmp_path / name).mkdir()
        meta = {
            "schema_version": SCHEMA_VERSION,
            "config": RunConfig(ModelSpec("t"), drafter).to_dict(),
        }
        (tmp_path / name / "run.json").write_text(json.dumps(meta))
    got = memory_partitions([tmp_path / n for n in drafters])
    assert got == {"suffix": "shared", "suffix-task": "task"}
