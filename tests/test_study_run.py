"""Studies that really decode, with the tiny random models: shards, resume, executors, policy k."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest
from engine_helpers import write_short_questions

import specviz.runner
from specviz.config import PolicyConfig
from specviz.policies import build_policy
from specviz.rundir import find_run_dirs, scan_events, scan_requests
from specviz.study import Study, StudyError, parse_study, plan_study, run_study

CATEGORIES = ("coding", "math", "writing")


@pytest.fixture(scope="module")
def study(
    tiny_model_dir: Path, tiny_draft_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Study:
    """3 categories x 2 short prompts; 3 single-task + 2 uniform mixtures; baseline + model
    drafter under a constant and a persistent heuristic policy: 15 units."""
    path = write_short_questions(tmp_path_factory.mktemp("prompts") / "question.jsonl", CATEGORIES)
    data = {
        "name": "tiny",
        "models": [str(tiny_model_dir)],
        "policies": ["constant", "heuristic"],
        "k": [3],
        "max_new_tokens": 8,
        "drafters": [{"kind": "model", "draft": str(tiny_draft_dir)}],
        "workload": {"source": str(path), "per_category": 2},
        "mixtures": {"uniform": ["blocked", "interleaved"]},
        "options": {"device": "cpu"},
    }
    return parse_study(data, "tiny.toml")


@pytest.fixture(scope="module")
def unsharded(study: Study, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unsharded")
    outcome = run_study(study, out, progress=False)
    assert outcome.complete and outcome.units_run == outcome.units_total == 15
    return out


def requests_by_run(out: Path, *, outputs: bool = True) -> dict[str, list[tuple[object, ...]]]:
    """Per run directory (relative to the study dir): its requests in order."""
    columns = ["request_id", "request_index", "prompt_id", "category", "mixture", "repeat"]
    if outputs:
        columns += ["output_text", "new_tokens"]
    result = {}
    for run_dir in find_run_dirs(out):
        frame = scan_requests(run_dir).select(columns).sort("request_index").collect()
        result[str(run_dir.relative_to(out))] = frame.rows()
    return result


def test_study_writes_one_complete_run_per_condition_and_a_manifest(
    study: Study, unsharded: Path
) -> None:
    plan = plan_study(study)
    manifest = json.loads((unsharded / "study.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["units"] == {"done": 15, "partial": 0, "pending": 0}
    assert [c["id"] for c in manifest["conditions"]] == [c.id for c in plan.conditions]
    runs = requests_by_run(unsharded)
    assert sorted(runs) == sorted(f"runs/{c.id}" for c in plan.conditions)
    # the baseline and the speculative conditions of a mixture decode identical prompts
    for mixture in manifest["mixtures"]:
        streams = {
            tuple(r[2] for r in rows)
            for name, rows in runs.items()
            if f"--{mixture['name']}--" in name
        }
        assert streams == {tuple(mixture["prompt_ids"])}


@pytest.mark.slow
def test_shards_one_and_two_of_two_equal_an_unsharded_run(
    study: Study, unsharded: Path, tmp_path: Path
) -> None:
    first = run_study(study, tmp_path, shard=(1, 2), progress=False)
    assert not first.complete and first.units_run == 8
    second = run_study(study, tmp_path, shard=(2, 2), progress=False)
    assert second.complete and second.units_run == 7
    assert requests_by_run(tmp_path) == requests_by_run(unsharded)


@pytest.mark.slow
def test_interrupted_study_resumes_and_completes_every_condition_once(
    study: Study, unsharded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = specviz.runner._decode_one
    calls = {"n": 0}

    class Interrupted(RuntimeError):
        pass

    def interrupt_midway(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        # 9 single-task units of 2 requests, then uniform-blocked units of 6: request 23 is
        # the 5th request of the 10th unit
        if calls["n"] == 23:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(specviz.runner, "_decode_one", interrupt_midway)
    with pytest.raises(Interrupted):
        run_study(study, tmp_path, progress=False)
    manifest = json.loads((tmp_path / "study.json").read_text())
    assert manifest["status"] == "incomplete"
    assert manifest["units"] == {"done": 9, "partial": 1, "pending": 5}
    monkeypatch.setattr(specviz.runner, "_decode_one", real)

    with pytest.raises(StudyError, match="pass --resume"):
        run_study(study, tmp_path, progress=False)
    outcome = run_study(study, tmp_path, resume=True, progress=False)
    assert outcome.complete
    assert outcome.units_already_done == manifest["units"]["done"]
    assert requests_by_run(tmp_path) == requests_by_run(unsharded)
    events = scan_events(tmp_path).collect()
    assert (
        events.select("run_id", "request_id", "round", "position", "kind").is_duplicated().sum()
        == 0
    )
    again = run_study(study, tmp_path, resume=True, progress=False)
    assert again.units_run == 0 and again.units_already_done == 15


def test_another_study_in_the_same_directory_is_refused(study: Study, unsharded: Path) -> None:
    other = parse_study({**study.raw, "max_new_tokens": 9}, "other.toml")
    with pytest.raises(StudyError, match="belongs to another study"):
        run_study(other, unsharded, resume=True, progress=False)


def test_persistent_heuristic_records_k_every_round_and_carries_it_across_task_switches(
    unsharded: Path,
) -> None:
    run_dir = next(
        d for d in find_run_dirs(unsharded) if "uniform-interleaved--model--heuristic" in d.name
    )
    rounds = (
        scan_events(run_dir)
        .group_by("request_index", "turn", "round", maintain_order=True)
        .agg(
            pl.col("prefill").first(),
            pl.col("category").first(),
            pl.col("k").first(),
            pl.col("k").n_unique().alias("k_values"),
            pl.col("n_drafted").first(),
            pl.col("accepted").sum(),
            pl.col("emitted").sum().alias("n_emitted"),
        )
        .sort("request_index", "round")
        # tokens of the turn generated before this round: the engine caps k by the budget left
        .with_columns(
            (pl.col("n_emitted").cum_sum() - pl.col("n_emitted"))
            .over("request_index", "turn")
            .alias("generated_before")
        )
        .filter(~pl.col("prefill"))
        .collect()
    )
    assert rounds["k"].null_count() == 0
    assert rounds["k_values"].max() == 1  # one k per round, on every row of it
    # Replay the policy over the recorded rounds, as one persistent policy across all requests
    # (never reset between requests): the k of every round, the first round of each request
    # included, is the k the rounds before it left behind. The engine may cap a draft by the
    # token budget left in the turn, so both sides are compared under that cap.
    policy = build_policy(PolicyConfig(kind="heuristic", k=3))
    for row in rounds.iter_rows(named=True):
        room = 8 - row["generated_before"] - 1
        assert min(row["k"], room) == min(policy.next_k(), room), row
        policy.update(row["k"], row["n_drafted"], row["accepted"])
    firsts = rounds.group_by("request_index", maintain_order=True).agg(
        pl.col("category").first(), pl.col("k").first()
    )
    switches = firsts.filter(pl.col("category") != pl.col("category").shift(1)).slice(1)
    assert len(switches) >= 2
    assert (switches["k"] != 3).any()  # a task starts with the k another task left behind


@pytest.mark.slow
def test_two_worker_processes_write_the_same_requests(
    study: Study, unsharded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import specviz.study.run as study_run

    written: list[float] = []
    real_write = study_run.write_manifest

    def record(*args: object) -> object:
        written.append(time.time())
        return real_write(*args)

    monkeypatch.setattr(study_run, "write_manifest", record)
    parallel = parse_study({**study.raw, "options": {"device": "cpu", "workers": 2}}, "tiny.toml")
    assert run_study(parallel, tmp_path, progress=False).complete
    assert requests_by_run(tmp_path, outputs=False) == requests_by_run(unsharded, outputs=False)
    # the manifest is rewritten as each unit finishes, not once at the end
    finished = sorted((d / "run.json").stat().st_mtime for d in find_run_dirs(tmp_path))
    assert len(written) == 2 + 15
    assert written[1] < finished[-1]


@pytest.mark.slow
def test_ray_executor_writes_the_same_requests_as_a_local_run(
    study: Study, unsharded: Path, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_study(study, tmp_path, executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert outcome.complete
    assert requests_by_run(tmp_path, outputs=False) == requests_by_run(unsharded, outputs=False)
