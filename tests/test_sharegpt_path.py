"""Any ShareGPT-format file as traffic: ``--workload sharegpt:PATH``, ``path`` in a study's
``[mixtures.traffic]`` and ``traffic-shares --workload sharegpt:PATH``, read, sampled, labelled
and shared as the packaged file is. The files are made here, cut off inside a record as the
packaged one is."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from wheels import SHAREGPT

from specviz.cli import main
from specviz.study import StudyError, parse_study, plan_study
from specviz.study.manifest import build_manifest
from specviz.workloads import builtin_prompts, packaged
from specviz.workloads import labeller as labeller_module
from specviz.workloads.mixtures import compose
from specviz.workloads.traffic import load_shares

TEXTS = [
    ("Write a Python function that sorts a list", "def sort(xs): return sorted(xs)"),
    ("Solve 3x + 7 = 25 for x", "x = 6, since 3x = 18"),
    ("Write a short poem about the sea", "The sea is wide and grey"),
    ("What is the capital of France?", "Paris is the capital."),
    ("Explain what a hash map is", "A table of keys and values."),
    ("Summarize this: the cat sat on the mat", "A cat sat on a mat."),
    ("Translate 'good morning' to German", "Guten Morgen."),
]


def conversations(n: int) -> list[dict]:
    return [
        {
            "id": f"mine-{i}",
            "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}],
        }
        for i, (q, a) in enumerate(TEXTS[:n])
    ]


def cut_file(path: Path, n: int) -> Path:
    """``n`` records in ShareGPT's format, cut off inside the last one: n - 1 are whole."""
    text = json.dumps(conversations(n), indent=2)
    last = text.rindex('"value"')  # inside the last record's reply
    path.write_text(text[: last + 12], encoding="utf-8")
    return path


@pytest.fixture
def labeller_on_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default labeller fitted on the built-in suite alone: no MT-Bench wheel needed; the
    packaged ShareGPT file is never read (a call to it fails the test)."""
    monkeypatch.setattr(labeller_module, "training_prompts", builtin_prompts)
    monkeypatch.setattr(labeller_module, "_DEFAULT", None)

    def no_packaged(name: str) -> Path:
        raise AssertionError(f"the packaged {name} file was read")

    monkeypatch.setattr(packaged, "data_path", no_packaged)


def test_run_reads_every_whole_record_of_a_sharegpt_file_cut_mid_record(
    tmp_path: Path, tiny_model_dir: Path, labeller_on_the_suite: None, capsys
) -> None:
    path = cut_file(tmp_path / "my_logs.json", 7)
    out = tmp_path / "run"
    code = main(
        ["run", "--target", str(tiny_model_dir), "--workload", f"sharegpt:{path}",
         "--max-new-tokens", "3", "--out", str(out), "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "my_logs.json: 6 whole conversations read; the file ends early" in err
    requests = pl.read_parquet(out / "requests.parquet")
    # no --limit: every whole record is sampled (all pass the length filters), none of the cut one
    assert sorted(requests["prompt_id"]) == [f"mine-{i}" for i in range(6)]
    # in vLLM's sampled order (random.Random(0) shuffle), as the packaged file
    import random

    order = [f"mine-{i}" for i in range(6)]
    random.Random(0).shuffle(order)
    assert requests.sort("request_index")["prompt_id"].to_list() == order
    assert set(requests["mixture"]) == {"my_logs"}
    labels = set(requests["category"])
    assert labels and "uncategorized" not in labels  # labelled as the packaged file is
    assert requests["prompt_turns"].to_list()[0][0] in dict(TEXTS)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.json", "missing.json does not exist: pass a ShareGPT-format"),
        (lambda d: d, "is a directory: pass a ShareGPT-format .json file"),
        (
            lambda d: (d / "obj.json").write_text('{"conversations": []}') and d / "obj.json",
            "not a JSON array of conversations",
        ),
        (
            lambda d: (
                (d / "rows.json").write_text('[{"question_id": 1, "turns": ["hi"]}]')
                and d / "rows.json"
            ),
            "record 1: not a ShareGPT conversation",
        ),
    ],
    ids=["missing", "directory", "json-object", "not-conversations"],
)
def test_bad_sharegpt_path_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, labeller_on_the_suite: None, capsys, make, message: str
) -> None:
    where = tmp_path / "in"
    where.mkdir()
    path = make(where)
    out = tmp_path / "run"
    # the file is checked before the target's tokenizer is loaded: no model needed to refuse
    code = main(["run", "--target", "nowhere/model", "--workload", f"sharegpt:{path}",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("specviz run: error:") and message in err[0]
    assert not out.exists()


def test_sharegpt_with_an_empty_path_is_refused(capsys) -> None:
    code = main(["run", "--target", "x", "--workload", "sharegpt:", "--out", "r"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "names no file" in err


def test_a_sharegpt_array_given_as_json_lines_is_refused_with_the_sharegpt_hint(
    tmp_path: Path, capsys
) -> None:
    path = cut_file(tmp_path / "logs.json", 3)
    code = main(["run", "--target", "x", "--workload", str(path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not JSON Lines" in err and "--workload sharegpt:PATH" in err


def test_traffic_shares_of_a_users_file_name_it_by_digest(
    tmp_path: Path, labeller_on_the_suite: None, capsys
) -> None:
    path = cut_file(tmp_path / "mine.json", 7)
    out = tmp_path / "shares.json"
    assert main(["traffic-shares", "--workload", f"sharegpt:{path}", "--out", str(out)]) == 0
    shares = load_shares(out)
    assert shares.conversations == 6 and shares.labelled == 6  # every whole record, labelled
    assert shares.source == "mine.json" and shares.version.startswith("sha256:")
    assert sum(s.count for s in shares.shares) == 6
    code = main(["traffic-shares", "--workload", "mt-bench", "--out", str(out)])
    assert code == 2 and "not a ShareGPT source" in capsys.readouterr().err


def _study(path: str, **traffic: object) -> dict[str, object]:
    return {
        "models": ["smollm2-135m"],
        "policies": ["constant"],
        "k": [4],
        "drafters": [{"kind": "prompt-lookup"}],
        "workload": {"per_category": 1, "categories": ["coding", "math"]},
        "mixtures": {"uniform": [], "traffic": {"size": 4, "path": path, **traffic}},
    }


def test_study_traffic_path_reads_the_users_file_as_the_packaged_one(
    tmp_path: Path, labeller_on_the_suite: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "specviz.workloads.traffic.tokenizer_counter", lambda model, trc: lambda t: len(t.split())
    )
    path = cut_file(tmp_path / "logs.json", 7)
    study = parse_study(_study(str(path), name="mine"), "s.toml")
    assert study.mixtures.traffic is not None and study.mixtures.traffic.path == str(path)
    plan = plan_study(study)
    mixtures = {m.name: m for m in plan.mixtures}
    stream = [p.id for p in compose(mixtures["mine"], plan.prompts_of(mixtures["mine"]))]
    assert len(stream) == 4 and set(stream) <= {f"mine-{i}" for i in range(6)}
    singles = [m for name, m in mixtures.items() if name.startswith("mine-")]
    assert {p.id for m in singles for p in compose(m, plan.prompts_of(m))} == set(stream)
    traffic = build_manifest(study, plan, tmp_path / "out")["traffic"]
    assert traffic["data_set"].startswith(f"ShareGPT-format file {path} (sha256:")
    assert "6 whole conversations read" in traffic["read"] and "ends early" in traffic["read"]


def test_study_traffic_path_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"mixtures\.traffic\.path: empty"):
        parse_study(_study(" "), "s.toml")
    with pytest.raises(StudyError, match=r"mixtures\.traffic\.path: expected str"):
        parse_study(_study(3), "s.toml")  # type: ignore[arg-type]
    missing = parse_study(_study(str(tmp_path / "none.json")), "s.toml")
    with pytest.raises(StudyError, match=r"mixtures\.traffic: .*none\.json does not exist"):
        plan_study(missing)


@SHAREGPT
def test_the_packaged_file_by_path_samples_and_labels_as_the_packaged_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from specviz.workloads.packaged import ShareGPTSource
    from specviz.workloads.sharegpt import ShareGPTSampling
    from specviz.workloads.traffic import sharegpt_workload

    monkeypatch.setattr(labeller_module, "training_prompts", builtin_prompts)
    monkeypatch.setattr(labeller_module, "_DEFAULT", None)
    path = packaged.data_path(packaged.SHAREGPT)
    sampling = ShareGPTSampling(size=5, seed=3)
    words = lambda text: len(text.split())  # noqa: E731
    data, packaged_sample = sharegpt_workload(sampling, words)
    by_path, path_sample = sharegpt_workload(sampling, words, source=ShareGPTSource(path))
    assert len(by_path.conversations) == len(data.conversations) == 17_671
    assert path_sample.items == packaged_sample.items  # same prompts, order, lengths and labels
