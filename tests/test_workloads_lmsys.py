"""The LMSYS data: MT-Bench and ShareGPT from their wheels, the labeller, the traffic shares.

Test files are small files in ShareGPT's own format, built here; the 125 MB file is only read
(its first records) where the wheel is installed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from wheels import MT_BENCH, SHAREGPT

from specviz.chat import conversation
from specviz.cli import main
from specviz.workloads import Prompt, WorkloadError, builtin_prompts, packaged
from specviz.workloads import labeller as labeller_module
from specviz.workloads.labeller import OTHER, CueCentroidLabeller
from specviz.workloads.loaders import mt_bench_prompts
from specviz.workloads.sharegpt import (
    ShareGPTSampling,
    read_conversations,
    sample_prompts,
)
from specviz.workloads.traffic import (
    CHECK_RECORDS,
    label_counts,
    load_shares,
    wilson,
)


def words(text: str) -> int:
    """A token counter for tests: whitespace-separated words."""
    return len(text.split())


def record(rid: str, *messages: tuple[str, str]) -> dict:
    return {"id": rid, "conversations": [{"from": r, "value": v} for r, v in messages]}


HUMAN_Q = 'please explain how "quoted" json strings are escaped in a record'
REPLY = "they are escaped with a backslash before every quote character inside"
RECORDS = [
    record(f"c{i}", ("human", f"{HUMAN_Q} number {i}"), ("gpt", f"{REPLY} number {i}"))
    for i in range(6)
]


def write_array(path: Path, records: list[dict]) -> str:
    text = json.dumps(records, indent=2)
    path.write_text(text, encoding="utf-8")
    return text


# -- the truncated-file reader ----------------------------------------------------------------


def cut_points(text: str) -> dict[str, tuple[int, int]]:
    """Named places to cut the array's text: (offset, whole records before it)."""
    reply3 = text.index(f"{REPLY} number 3")
    close = "\n    ]\n  }"  # how json.dumps(indent=2) ends a record
    ends = [i + len(close) for i in range(len(text)) if text.startswith(close, i)]
    return {
        "inside a string": (reply3 + 10, 3),
        "after a record's brace": (ends[1], 2),
        "after the comma between records": (ends[1] + 1, 2),
        "inside the next record's key": (text.index('"conv', ends[4]) + 4, 5),
        "before the closing bracket": (len(text) - 1, 6),
    }


@pytest.mark.parametrize(
    "where",
    [
        "inside a string",
        "after a record's brace",
        "after the comma between records",
        "inside the next record's key",
        "before the closing bracket",
    ],
)
def test_truncated_file_keeps_every_whole_record_and_says_it_ends_early(
    tmp_path: Path, where: str
) -> None:
    text = json.dumps(RECORDS, indent=2)
    at, whole = cut_points(text)[where]
    path = tmp_path / "cut.json"
    path.write_text(text[:at], encoding="utf-8")
    data = read_conversations(path)
    assert [c.id for c in data.conversations] == [f"c{i}" for i in range(whole)]
    assert data.ends_early
    assert "ends early" in data.describe() and f"{whole} whole conversations" in data.describe()


def test_file_cut_inside_its_first_record_is_refused(tmp_path: Path) -> None:
    text = json.dumps(RECORDS, indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: text.index(REPLY)], encoding="utf-8")
    with pytest.raises(WorkloadError, match="no whole conversation"):
        read_conversations(path)


def test_complete_array_reads_every_record_and_does_not_end_early(tmp_path: Path) -> None:
    path = tmp_path / "whole.json"
    write_array(path, RECORDS)
    data = read_conversations(path)
    assert len(data.conversations) == len(RECORDS) and not data.ends_early


def test_records_spanning_many_chunks_are_decoded_whole(tmp_path: Path, monkeypatch) -> None:
    from specviz.workloads import sharegpt

    monkeypatch.setattr(sharegpt, "_CHUNK", 7)  # every record spans many reads
    path = tmp_path / "chunks.json"
    text = write_array(path, RECORDS)
    path.write_text(text[: len(text) - 30], encoding="utf-8")
    data = read_conversations(path)
    assert len(data.conversations) == len(RECORDS) - 1 and data.ends_early


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("hello world", "not a JSON array"),
        ('{"a": 1}', "not a JSON array"),
    ],
)
def test_empty_or_non_json_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(WorkloadError, match=message):
        read_conversations(path)


def test_record_that_is_not_a_conversation_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    write_array(path, [RECORDS[0], {"id": "x", "turns": ["hi"]}])
    with pytest.raises(WorkloadError, match="record 2: not a ShareGPT conversation"):
        read_conversations(path)


def test_records_without_human_turns_give_nothing_to_sample(tmp_path: Path) -> None:
    path = tmp_path / "nohuman.json"
    write_array(path, [record("a", ("gpt", "hello there friend"), ("gpt", "more text here now"))])
    data = read_conversations(path)
    with pytest.raises(WorkloadError, match="no human turn with a reply: 1"):
        sample_prompts(data, ShareGPTSampling(), words)


# -- sampling ---------------------------------------------------------------------------------


def many(n: int) -> list[dict]:
    return [
        record(
            f"r{i}",
            ("human", f"question {i} about the topic at hand"),
            ("gpt", f"answer {i} with enough words here"),
        )
        for i in range(n)
    ]


def test_same_seed_same_prompts_other_seed_other_order(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_array(path, many(40))
    data = read_conversations(path)
    first = [p.id for p in sample_prompts(data, ShareGPTSampling(size=10, seed=0), words).prompts]
    again = [p.id for p in sample_prompts(data, ShareGPTSampling(size=10, seed=0), words).prompts]
    other = [p.id for p in sample_prompts(data, ShareGPTSampling(size=10, seed=1), words).prompts]
    assert first == again and first != other
    # the prefix property: a smaller sample is the start of a larger one
    five = [p.id for p in sample_prompts(data, ShareGPTSampling(size=5, seed=0), words).prompts]
    assert five == first[:5]


def test_length_filters_drop_short_long_and_overlong_pairs(tmp_path: Path) -> None:
    ok = record("ok", ("human", "w " * 10), ("gpt", "w " * 10))
    short_prompt = record("sp", ("human", "w w w"), ("gpt", "w " * 10))
    short_out = record("so", ("human", "w " * 10), ("gpt", "w w"))
    long_prompt = record("lp", ("human", "w " * 1025), ("gpt", "w " * 10))
    overlong = record("ol", ("human", "w " * 1000), ("gpt", "w " * 1049))
    edge = record("edge", ("human", "w " * 1024), ("gpt", "w " * 1024))  # exactly 2048: kept
    one = record("one", ("human", "alone in here"))
    path = tmp_path / "len.json"
    write_array(path, [ok, short_prompt, short_out, long_prompt, overlong, edge, one])
    sample = sample_prompts(read_conversations(path), ShareGPTSampling(), words)
    assert sorted(p.id for p in sample.prompts) == ["edge", "ok"]
    assert sample.dropped == {
        "fewer than 2 messages": 1,
        "prompt or output < 4 tokens": 2,
        "prompt > 1024 tokens": 1,
        "prompt + output > 2048 tokens": 1,
    }
    kept = {s.prompt.id: s for s in sample.items}
    assert (kept["edge"].prompt_tokens, kept["edge"].output_tokens) == (1024, 1024)
    assert kept["ok"].prompt.reference == ("w " * 10,)  # the recorded reply, never shown


def test_first_turn_mode_takes_first_human_turn_even_after_a_leading_reply(tmp_path: Path) -> None:
    conv = record(
        "x", ("gpt", "a leading reply from a split"), ("human", "first real question here"),
        ("gpt", "first real answer given here"), ("human", "second question asked now"),
        ("gpt", "second answer given back now"),
    )  # fmt: skip
    path = tmp_path / "c.json"
    write_array(path, [conv])
    data = read_conversations(path)
    (first,) = sample_prompts(data, ShareGPTSampling(), words).prompts
    assert first.turns == ("first real question here",) and first.context == ()
    (last,) = sample_prompts(data, ShareGPTSampling(mode="context"), words).items
    assert last.prompt.turns == ("second question asked now",)
    assert last.prompt.context == (("first real question here", "first real answer given here"),)
    assert last.prompt_tokens == 4 + 5 + 4 and last.output_tokens == 5  # context counts


def test_context_is_sent_before_the_turn_with_its_recorded_replies() -> None:
    prompt = Prompt("p", "coding", ("fix it",), context=(("write f", "def f(): pass"),))
    assert conversation(prompt.turns, [], prompt.context) == [
        {"role": "user", "content": "write f"},
        {"role": "assistant", "content": "def f(): pass"},
        {"role": "user", "content": "fix it"},
    ]


def test_second_turn_is_asked_after_the_models_own_first_answer() -> None:
    turns = ("Compose a blog post.", "Rewrite it in one line.")
    messages = conversation(turns, ["MY OWN ANSWER"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "MY OWN ANSWER" and messages[2]["content"] == turns[1]


def test_context_changes_the_workload_fingerprint_only_when_present() -> None:
    from specviz.rundir import workload_fingerprint
    from specviz.workloads.request import Request

    plain = Prompt("p", "coding", ("fix it",))
    with_ctx = Prompt("p", "coding", ("fix it",), context=(("a", "b"),))
    assert workload_fingerprint([Request(0, plain)]) != workload_fingerprint([Request(0, with_ctx)])


# -- the wheels -------------------------------------------------------------------------------


def test_missing_wheel_is_one_line_exit_2_naming_the_install_command(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    gone = packaged.PackagedData("mt-bench", "no-such-dist-specviz", "1.0", "x/question.jsonl")
    monkeypatch.setitem(packaged.DATASETS, "mt-bench", gone)
    code = main(
        [
            "run",
            "--target",
            "smollm2-135m",
            "--workload",
            "mt-bench",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install --no-deps no-such-dist-specviz==1.0" in err


@MT_BENCH
def test_mt_bench_has_80_questions_8_categories_2_turns() -> None:
    prompts = mt_bench_prompts()
    assert len(prompts) == 80
    assert Counter(p.category for p in prompts) == {c: 10 for c in packaged_categories()}
    assert all(len(p.turns) == 2 for p in prompts)


def packaged_categories() -> tuple[str, ...]:
    from specviz.workloads.labeller import MT_BENCH_CATEGORIES

    return MT_BENCH_CATEGORIES


# -- the labeller and the shares --------------------------------------------------------------


def test_labeller_says_other_rather_than_forcing_a_category() -> None:
    labeller = CueCentroidLabeller.train(builtin_prompts())
    assert labeller.label("Bonjour, quelle heure est-il à Lyon ce soir ?") == OTHER
    assert labeller.label("Translate 'good night' into German.") == OTHER  # not MT-Bench's
    assert labeller.label("Please continue") == OTHER  # a later turn, no task of its own
    assert labeller.label("Add a column for it") == OTHER  # too few known words to place
    assert labeller.label("지금 무엇을 해야 하나요? 알려 주세요") == OTHER  # another language
    assert labeller.label("Write a Python function that reverses a list.") == "coding"
    assert labeller.label("Solve 3x + 7 = 25 for x.") == "math"


def test_labeller_reads_code_below_the_instruction_and_not_dates_as_math() -> None:
    labeller = CueCentroidLabeller.train(builtin_prompts())
    pasted = "Why does this fail?\n\nconst a = f(1);\nif (a) {\n  g(a);\n}"
    assert labeller.label(pasted) == "coding"
    assert labeller.label("Call Kim (02-3284-0396 / 010-9949-3700) on 2023/01/05.") != "math"
    # text a browser extension appended says nothing about the task
    assert labeller.label("Write a poem about rain.Please write in English language.") == "writing"


# docs/workloads.md reports 0.761 (51 of 67) leave-one-out on the built-in suite
@MT_BENCH
def test_labeller_held_out_accuracy_on_builtin_suite_is_the_reported_figure() -> None:
    from specviz.workloads.labeller import held_out_builtin

    confusion = held_out_builtin()
    assert confusion.total == 67 and round(confusion.accuracy, 4) == 0.7612
    assert "| true \\ predicted |" in confusion.markdown()


# docs/workloads.md reports 0.5875 (47 of 80) leave-one-out on MT-Bench
@MT_BENCH
def test_labeller_accuracy_on_mt_bench_is_the_reported_figure() -> None:
    from specviz.workloads.labeller import held_out_mt_bench

    result = held_out_mt_bench()
    assert result.total == 80 and round(result.accuracy, 4) == 0.5875


def test_leave_one_out_never_labels_a_prompt_with_a_labeller_fitted_on_it() -> None:
    from specviz.workloads.labeller import leave_one_out

    # two prompts, one per category: each must be labelled by a model that never saw it, so the
    # writing prompt cannot be placed by the centroid and reads other (no cue matches either)
    held = [
        Prompt("w", "writing", ("Narrate vivid seaside holiday memories",)),
        Prompt("m", "math", ("Compute cube roots quickly",)),
    ]
    assert leave_one_out(held).accuracy == 0.0


@MT_BENCH
@SHAREGPT
def test_hand_labelled_sharegpt_audit_is_the_documented_sample_and_figure() -> None:
    from specviz.workloads.labeller import (
        audit_sample,
        default_labeller,
        hand_labelled_confusion,
        load_hand_labels,
    )
    from specviz.workloads.sharegpt import first_turns

    labels = load_hand_labels()
    turns = first_turns(read_conversations(packaged.data_path(packaged.SHAREGPT)))
    drawn = audit_sample(turns, labels.seed, len(labels.audit))
    assert [i for i, _ in drawn] == list(labels.audit)  # drawn as the file says
    assert not set(labels.audit) & set(labels.tuning)
    result = hand_labelled_confusion(default_labeller(), drawn, labels.audit)
    assert result.total == 100 and result.accuracy == 0.58  # docs/workloads.md


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    low, high = wilson(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.07 < high < 0.072


@MT_BENCH
@SHAREGPT
def test_checked_in_shares_reproduce_on_the_first_records() -> None:
    shares = load_shares()
    data = read_conversations(packaged.data_path(packaged.SHAREGPT), limit=CHECK_RECORDS)
    from specviz.workloads.labeller import default_labeller

    assert dict(label_counts(data, default_labeller())) == dict(shares.check_counts)
    assert shares.conversations == 17_671


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("<html>not json</html>", "not a JSON array"),
        (
            json.dumps([record("a", ("gpt", "only replies here"), ("gpt", "and more of them"))]),
            "no human turn",
        ),
    ],
)
def test_bad_sharegpt_file_is_one_line_exit_2(
    tmp_path: Path, monkeypatch, capsys, content: str, message: str
) -> None:
    path = tmp_path / "ShareGPT.json"
    path.write_text(content)
    monkeypatch.setattr(packaged, "data_path", lambda name: path)
    code = main(
        ["run", "--target", "smollm2-135m", "--workload", "sharegpt", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("specviz run: error:")
    assert not (tmp_path / "r").exists()  # nothing written


def test_traffic_shares_command_writes_shares_that_load_back(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    path = tmp_path / "ShareGPT.json"
    write_array(path, many(30))
    monkeypatch.setattr(packaged, "data_path", lambda name: path)
    monkeypatch.setattr(packaged, "installed_version", lambda data: "0.1.0")
    # the default labeller fitted on the built-in suite alone: no MT-Bench wheel needed here
    monkeypatch.setattr(labeller_module, "training_prompts", builtin_prompts)
    monkeypatch.setattr(labeller_module, "_DEFAULT", None)
    out = tmp_path / "shares.json"
    assert main(["traffic-shares", "--out", str(out)]) == 0
    shares = load_shares(out)
    assert shares.conversations == 30 and shares.labelled == 30
    assert sum(s.count for s in shares.shares) == 30


@MT_BENCH
@SHAREGPT
def test_report_accuracy_is_held_out_on_all_three_labelled_sets() -> None:
    from specviz.workloads.labeller import labeller_accuracy

    results = dict(labeller_accuracy())
    assert [c.total for c in results.values()] == [80, 67, 100]
    # MT-Bench is in the default labeller's training set: the report's figure is leave-one-out
    assert round(results["MT-Bench (80), leave-one-out"].accuracy, 4) == 0.5875


def test_report_accuracy_without_the_mt_bench_wheel_holds_out_the_suite(monkeypatch) -> None:
    from specviz.workloads.labeller import labeller_accuracy

    def missing(name: str) -> Path:
        raise WorkloadError(f"the {name} data set needs its wheel")

    monkeypatch.setattr(labeller_module, "data_path", missing)
    [(name, result)] = labeller_accuracy()
    assert "no MT-Bench" in name and result.total == 67
