"""Loading prompts from the built-in suite, FastChat JSONL, CSV, Parquet and datasets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from specviz.workloads import (
    ColumnMapping,
    HFSource,
    WorkloadError,
    builtin_path,
    builtin_prompts,
    load_prompts,
)
from specviz.workloads.categorize import categorize_prompts
from specviz.workloads.loaders import ARENA, MT_BENCH_HF

SUITE_CATEGORIES = {
    "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities",
    "summarization", "rag", "translation",
}  # fmt: skip


def test_builtin_suite_has_every_category_with_six_prompts_and_some_multi_turn() -> None:
    prompts = builtin_prompts()
    counts = Counter(p.category for p in prompts)
    assert set(counts) == SUITE_CATEGORIES
    assert min(counts.values()) >= 6
    multi = Counter(p.category for p in prompts if len(p.turns) > 1)
    assert sum(multi.values()) >= 11
    assert len({p.id for p in prompts}) == len(prompts)


def test_builtin_rag_prompts_carry_their_passages() -> None:
    rag = [p for p in builtin_prompts() if p.category == "rag"]
    assert all("[1]" in p.turns[0] and "[2]" in p.turns[0] for p in rag)


def test_builtin_suite_is_fastchat_question_jsonl() -> None:
    for line in builtin_path().read_text().splitlines():
        row = json.loads(line)
        assert set(row) <= {"question_id", "category", "turns", "reference"}
        assert isinstance(row["question_id"], int)
        assert isinstance(row["turns"], list)


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_fastchat_jsonl_loads_turns_and_reference(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "question.jsonl",
        [
            {"question_id": 81, "category": "Writing", "turns": ["Write a haiku.", "Shorter."]},
            {"question_id": 111, "category": "math", "turns": ["2+2?"], "reference": ["4"]},
        ],
    )
    prompts = load_prompts(path)
    assert [p.id for p in prompts] == ["81", "111"]
    assert prompts[0].category == "writing"
    assert prompts[0].turns == ("Write a haiku.", "Shorter.")
    assert prompts[1].reference == ("4",)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"question_id": 3, "category": "math"}), "no column 'turns'"),
        (json.dumps({"question_id": 3, "category": "math", "turns": []}), "no turns"),
        (json.dumps({"question_id": 3, "category": "math", "turns": [5]}), "holds a int item"),
        (
            json.dumps({"question_id": 1, "category": "math", "turns": ["again"]}),
            "duplicate prompt id",
        ),
    ],
)
def test_malformed_jsonl_row_names_file_and_line(
    tmp_path: Path, bad_line: str, message: str
) -> None:
    good = json.dumps({"question_id": 1, "category": "math", "turns": ["1+1?"]})
    path = tmp_path / "q.jsonl"
    path.write_text(good + "\n\n" + bad_line + "\n")
    with pytest.raises(WorkloadError, match=message) as err:
        load_prompts(path)
    assert f"{path} line 3" in str(err.value)


def test_csv_with_mapping_reads_several_turn_columns(tmp_path: Path) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text(
        "id,task,first,second\n"
        'a1,coding,"Write a loop.",Now in Rust.\n'
        "a2,writing,Write a limerick.,\n"
    )
    mapping = ColumnMapping(id="id", category="task", turns=("first", "second"), reference=())
    prompts = load_prompts(path, mapping)
    assert prompts[0].turns == ("Write a loop.", "Now in Rust.")
    assert prompts[1].turns == ("Write a limerick.",)
    assert [p.category for p in prompts] == ["coding", "writing"]


def test_malformed_csv_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text("id,task,text\nb1,math,What is 3*3?\nb2,,What is 4*4?\n")
    mapping = ColumnMapping(id="id", category="task", turns=("text",), reference=())
    with pytest.raises(WorkloadError, match=rf"{path} line 3: empty or non-text category"):
        load_prompts(path, mapping)


def test_parquet_with_list_column_and_no_category(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {"msgs": [["Hello there", "And again"], ["Translate 'cat' into French."]]}
    ).write_parquet(path)
    mapping = ColumnMapping(id=None, category=None, turns=("msgs",), reference=())
    prompts = load_prompts(path, mapping)
    assert [p.id for p in prompts] == ["1", "2"]
    assert prompts[0].turns == ("Hello there", "And again")
    assert {p.category for p in prompts} == {"uncategorized"}
    categorized = categorize_prompts(load_prompts(path, mapping))
    assert categorized[1].category == "translation"


def test_malformed_parquet_row_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pl.DataFrame(
        {"question_id": [1, 2], "category": ["math", "math"], "turns": ["ok", "  "]}
    ).write_parquet(path)
    with pytest.raises(WorkloadError, match=rf"{path} row 2: no turns"):
        load_prompts(path)


def test_mt_bench_hub_layout_loads_through_datasets(tmp_path: Path) -> None:
    """The HuggingFaceH4/mt_bench_prompts layout, read by datasets.load_dataset like the hub."""
    path = tmp_path / "mt_bench.parquet"
    pl.DataFrame(
        {
            "prompt": [["Compose a travel blog post.", "Rewrite it."], ["Solve 3x+1=7."]],
            "prompt_id": [81, 111],
            "category": ["writing", "math"],
            "reference": [[], ["x = 2"]],
        }
    ).write_parquet(path)
    prompts = load_prompts(HFSource("parquet", data_files=(str(path),)), MT_BENCH_HF)
    assert [(p.id, p.category, len(p.turns)) for p in prompts] == [
        ("81", "writing", 2),
        ("111", "math", 1),
    ]
    assert prompts[1].reference == ("x = 2",)


def test_arena_conversations_take_the_first_user_turn(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "arena.jsonl",
        [
            {
                "question_id": "q1",
                "conversation_a": [
                    {"role": "user", "content": "Write a python function to reverse a list"},
                    {"role": "assistant", "content": "def rev(x): return x[::-1]"},
                    {"role": "user", "content": "thanks"},
                ],
            }
        ],
    )
    prompts = categorize_prompts(load_prompts(HFSource("json", data_files=(str(path),)), ARENA))
    assert prompts[0].turns == ("Write a python function to reverse a list",)
    assert prompts[0].category == "coding"


def test_saved_dataset_directory_loads(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_dict(
        {"question_id": [7], "category": ["stem"], "turns": [["Why is the sea salty?"]]}
    ).save_to_disk(str(tmp_path / "saved"))
    prompts = load_prompts(tmp_path / "saved")
    assert prompts[0].turns == ("Why is the sea salty?",)


def test_unreachable_hub_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WorkloadError, match="hub is unreachable or the dataset is not cached"):
        load_prompts("hf:specviz-test/not-a-cached-dataset")


def test_missing_file_and_unknown_type_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="does not exist"):
        load_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(WorkloadError, match="unknown file type"):
        load_prompts(tmp_path / "x.txt")
