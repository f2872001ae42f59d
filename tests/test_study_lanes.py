"""A study with ``options.co_decode = N`` writes the runs a study decoded one at a time writes:
the same rounds for every run, with its co-decoded runs labelled and a subsample decoded alone."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from specviz.metrics.accounting import (
    fit_cost_models,
    modelled_seconds,
    round_table,
    verified_alone,
)
from specviz.rundir import find_run_dirs, scan_events, scan_requests
from specviz.study import Study, parse_study, plan_study, run_study

ROUND = ["request_id", "turn", "round", "position", "kind", "k", "n_drafted", "accepted"]
ROUND += ["draft_token", "target_token", "emitted", "category", "mixture"]
# a fixed curve: a cost model measured per run would differ between any two runs, alone or not
COST_AWARE = {
    "kind": "cost-aware",
    "cost_model": {"verify_s": [1.0, 1.05, 1.1, 1.3], "draft_s": {"suffix": [0.0]}},
}


def study_data(
    path: Path, model_dir: Path, co_decode: int, dtype: str = "float32"
) -> dict[str, object]:
    return {
        "name": "lanes",
        "models": [str(model_dir)],
        "policies": ["constant"],
        "k": [3],
        "max_new_tokens": 8,
        "drafters": [
            {"kind": "suffix", "policies": ["heuristic", COST_AWARE]},
            {"kind": "suffix", "name": "suffix-task", "partition": "task"},
            {"kind": "prompt-lookup"},
        ],
        "workload": {"source": str(path), "per_category": 2},
        "mixtures": {"uniform": ["interleaved"]},
        "options": {"device": "cpu", "dtype": dtype, "co_decode": co_decode},
    }


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "question.jsonl"
    rows = [
        {
            "question_id": f"{c}-{i}",
            "category": c,
            "turns": [f"{c} {i}: say hi, say hi"] + (["again"] if i == 0 else []),
        }
        for c in ("coding", "math")
        for i in range(2)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rounds_by_run(out: Path) -> dict[str, pl.DataFrame]:
    return {
        d.name: scan_events(d).select(ROUND).sort(ROUND[:5]).collect() for d in find_run_dirs(out)
    }


@pytest.fixture(scope="module")
def both(
    prompts: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Study, Path, Path]:
    """The study decoded one run at a time, and with 3 lanes."""
    alone = parse_study(study_data(prompts, tiny_model_dir, 1), "lanes.toml")
    laned = parse_study(study_data(prompts, tiny_model_dir, 3), "lanes.toml")
    out_alone, out_laned = tmp_path_factory.mktemp("alone"), tmp_path_factory.mktemp("laned")
    assert run_study(alone, out_alone, progress=False).complete
    assert run_study(laned, out_laned, progress=False).complete
    return laned, out_alone, out_laned


def test_co_decoded_runs_have_the_rounds_of_runs_decoded_alone(
    both: tuple[Study, Path, Path],
) -> None:
    _, out_alone, out_laned = both
    alone, laned = rounds_by_run(out_alone), rounds_by_run(out_laned)
    assert sorted(alone) == sorted(laned)
    for name, frame in alone.items():
        assert frame.equals(laned[name]), name


def test_a_bf16_study_co_decoded_on_lean_invariant_has_the_rounds_of_runs_decoded_alone(
    prompts: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """In bf16 ``dtype auto``'s engine is lean-invariant, and co-decoding verifies on it too
    (per-row lean caches): every run's rounds equal the run decoded alone."""
    outs = {}
    for lanes in (1, 3):
        out = tmp_path / f"lanes-{lanes}"
        study = parse_study(study_data(prompts, tiny_model_dir, lanes, "bfloat16"), "lanes.toml")
        assert run_study(study, out, progress=False).complete
        outs[lanes] = out
    alone, laned = rounds_by_run(outs[1]), rounds_by_run(outs[3])
    assert sorted(alone) == sorted(laned)
    for name, frame in alone.items():
        assert frame.equals(laned[name]), name
    engines = set()
    for d in find_run_dirs(outs[3]):
        meta = json.loads((d / "run.json").read_text())
        engines.add((meta["models"]["target"]["engine"], "co_decoded" in meta))
    assert engines == {("lean-invariant", False), ("lean-invariant", True)}


def test_the_first_mixture_decodes_alone_and_the_rest_is_labelled_co_decoded(
    both: tuple[Study, Path, Path],
) -> None:
    study, _, out = both
    plan = plan_study(study)
    first = plan.mixtures[0].name
    copies_of_laned = 0
    for unit in plan.units:
        meta = json.loads((out / unit.run_dir / "run.json").read_text())
        laned = "co_decoded" in meta
        # a copy is labelled as its sources are: a co-decoded source's seconds were shared
        sources = [json.loads((out / r.source / "run.json").read_text()) for r in unit.reuse]
        expected = any("co_decoded" in m for m in sources) if unit.reuse else None
        if expected is None:
            expected = unit.requests[0].mixture != first
        copies_of_laned += bool(unit.reuse) and expected
        assert laned == expected, unit.id
        rows = scan_events(out / unit.run_dir).select(pl.col("batch_rows").max()).collect().item()
        if not laned and not unit.reuse:  # a copy keeps its source's labels and seconds
            assert rows == 1
    shared = scan_events(out).filter(pl.col("batch_rows") > 1).select(pl.len()).collect().item()
    assert shared > 0  # rows of different runs really shared forwards
    assert copies_of_laned > 0  # the study copies requests of co-decoded runs


def test_the_cost_curve_reads_only_rounds_verified_alone(both: tuple[Study, Path, Path]) -> None:
    _, _, out = both
    events = scan_events(out).collect()
    requests = scan_requests(out).collect()
    table = round_table(events, requests)
    alone = events.filter((pl.col("batch_rows") == 1) & (pl.col("kind") != "draft"))
    assert verified_alone(table).height == alone.height < table.height
    only_alone = fit_cost_models(events.filter(pl.col("batch_rows") == 1), requests)
    assert fit_cost_models(events, requests) == only_alone


def test_a_co_decoded_run_is_priced_as_the_same_run_decoded_alone(
    both: tuple[Study, Path, Path],
) -> None:
    """Every round is priced, co-decoded or not: a co-decoded request's modelled seconds are
    those of the same request decoded alone, under one cost model."""
    _, out_alone, out_laned = both
    model = fit_cost_models(scan_events(out_alone), scan_requests(out_alone))

    def priced(out: Path) -> pl.DataFrame:
        events, requests = scan_events(out).collect(), scan_requests(out).collect()
        keys = requests.select("run_id", "request_id", "mixture", "drafter", "policy", "prompt_id")
        return (
            modelled_seconds(events, requests, model)
            .join(keys, on=["run_id", "request_id"])
            .select("mixture", "drafter", "policy", "prompt_id", "modelled_s")
            .sort("mixture", "drafter", "policy", "prompt_id")
        )

    alone, laned = priced(out_alone), priced(out_laned)
    assert laned["modelled_s"].min() > 0
    assert alone.equals(laned)


@pytest.mark.slow
def test_two_workers_co_decoding_their_shares_write_the_same_rounds(
    prompts: Path, tiny_model_dir: Path, both: tuple[Study, Path, Path], tmp_path: Path
) -> None:
    data = study_data(prompts, tiny_model_dir, 2)
    data["options"] = {**data["options"], "workers": 2}  # type: ignore[dict-item]
    assert run_study(parse_study(data, "lanes.toml"), tmp_path, progress=False).complete
    _, out_alone, _ = both
    alone, laned = rounds_by_run(out_alone), rounds_by_run(tmp_path)
    assert sorted(alone) == sorted(laned)
    for name, frame in alone.items():
        assert frame.equals(laned[name]), name
    manifest = json.loads((tmp_path / "study.json").read_text())
    assert manifest["status"] == "complete"


def test_an_interrupted_co_decoded_study_resumes_to_the_same_rounds(
    prompts: Path,
    tiny_model_dir: Path,
    both: tuple[Study, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import specviz.codecode

    real = specviz.codecode._finish
    calls = {"n": 0}

    class Interrupted(RuntimeError):
        pass

    def interrupt(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 7:  # lanes hold several runs mid-stream
            raise Interrupted
        real(*args)  # type: ignore[arg-type]

    study = parse_study(study_data(prompts, tiny_model_dir, 3), "lanes.toml")
    monkeypatch.setattr(specviz.codecode, "_finish", interrupt)
    with pytest.raises(Interrupted):
        run_study(study, tmp_path, progress=False)
    monkeypatch.setattr(specviz.codecode, "_finish", real)
    assert json.loads((tmp_path / "study.json").read_text())["units"]["partial"] > 0
    assert run_study(study, tmp_path, resume=True, progress=False).complete
    _, out_alone, _ = both
    alone, resumed = rounds_by_run(out_alone), rounds_by_run(tmp_path)
    assert sorted(alone) == sorted(resumed)
    for name, frame in alone.items():
        assert frame.equals(resumed[name]), name


def test_lanes_are_shared_largest_first_onto_the_least_loaded_worker(
    prompts: Path, tiny_model_dir: Path
) -> None:
    from specviz.study.local import balanced_shares, lane_split

    study = parse_study(study_data(prompts, tiny_model_dir, 3), "lanes.toml")
    plan = plan_study(study)
    units, _ = lane_split(plan.units, plan.mixtures[0].name)

    def size(unit) -> int:
        return sum(len(r.prompt.turns) for r in unit.requests)

    assert len({size(u) for u in units}) > 1  # runs of different sizes to balance
    for workers in (1, 2, 3):
        shares = balanced_shares(units, workers)
        assert sorted(u.id for s in shares for u in s) == sorted(u.id for u in units)
        loads = [sum(size(u) for u in s) for s in shares]
        # within one run of each other, and a long run starts first in its share
        assert max(loads) - min(loads) <= max(size(u) for u in units)
        assert all(
            [size(u) for u in s] == sorted((size(u) for u in s), reverse=True) for s in shares
        )
