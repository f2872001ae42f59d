"""Study files: parsing, validation messages, conditions, units and shards (nothing decodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from specviz.study import StudyError, load_study, parse_shard, parse_study, plan_study
from specviz.study.units import shard_units

ROOT = Path(__file__).resolve().parents[1]


def _study(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "models": ["smollm2-135m"],
        "policies": ["constant", "heuristic"],
        "k": [4],
        "drafters": [{"kind": "prompt-lookup"}],
        "workload": {"per_category": 1, "categories": ["coding", "math", "writing"]},
        "mixtures": {"uniform": ["blocked", "interleaved"]},
    }
    data.update(overrides)
    return data


def test_study_expands_into_baseline_and_every_combination() -> None:
    plan = plan_study(parse_study(_study(), "s.toml"))
    # 3 single-task + 2 uniform mixtures; per mixture: baseline + 1 drafter x 2 policies
    assert len(plan.mixtures) == 5
    assert len(plan.conditions) == 5 * 3
    baselines = [c for c in plan.conditions if c.baseline]
    assert {c.mixture.name for c in baselines} == {m.name for m in plan.mixtures}
    assert all(c.config.drafter.kind == "none" for c in baselines)


def test_baseline_and_drafters_share_identical_prompts_per_mixture() -> None:
    plan = plan_study(parse_study(_study(repeats=2), "s.toml"))
    streams: dict[tuple[str, int], set[tuple[str, ...]]] = {}
    for unit in plan.units:
        key = (unit.requests[0].mixture, unit.repeat)
        streams.setdefault(key, set()).add(tuple(r.prompt.id for r in unit.requests))
    assert all(len(ids) == 1 for ids in streams.values())
    assert len(plan.units) == 2 * len(plan.conditions)
    assert len({u.run_dir for u in plan.units}) == len(plan.units)


def test_shards_partition_the_units() -> None:
    units = plan_study(parse_study(_study(), "s.toml")).units
    for n in (1, 2, 3, 4):
        parts = [shard_units(units, (i, n)) for i in range(1, n + 1)]
        ids = [u.id for part in parts for u in part]
        assert sorted(ids) == sorted(u.id for u in units)
        assert len(set(ids)) == len(ids)


def test_parse_shard_reads_i_of_n_and_refuses_nonsense() -> None:
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(StudyError, match="write i/n"):
            parse_shard(bad)


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"modles": ["x"]}, "modles", "unknown key"),
        ({"models": []}, "models", "at least one target"),
        ({"k": [0]}, "k", ">= 1"),
        ({"k": "five"}, "k", "list of integers"),
        ({"policies": ["greedy"]}, "policies[0]", "is not one of"),
        ({"drafters": [{"kind": "layer-skip"}]}, "drafters[0]", "exactly one of"),
        ({"drafters": [{"kind": "prompt-lookup", "ngram": 2}]}, "drafters[0].ngram", "unknown key"),
        (
            {"drafters": [{"kind": "prompt-lookup"}, {"kind": "prompt-lookup"}]},
            "drafters",
            "distinct name",
        ),
        (
            {"drafters": [{"kind": "prompt-lookup", "name": "model"}]},
            "drafters[0]",
            "another drafter kind",
        ),
        ({"sampling": {"temperature": -1.0}}, "sampling", "temperature must be >= 0"),
        ({"mixtures": {"uniform": ["shuffled"]}}, "mixtures.uniform", "not one of"),
        ({"mixtures": {"custom": {"m": "coding=-1"}}}, "mixtures.custom.m", ">= 0"),
        ({"workload": {"per_category": 0}}, "workload.per_category", ">= 1"),
        ({"options": {"workers": "2"}}, "options.workers", "expected int"),
        ({"max_new_tokens": True}, "max_new_tokens", "expected int"),
    ],
)
def test_bad_study_file_names_file_and_key(
    overrides: dict[str, object], key: str, message: str
) -> None:
    with pytest.raises(StudyError, match=message) as err:
        parse_study(_study(**overrides), "bad.toml")
    assert str(err.value).startswith(f"bad.toml: {key}:")


def test_drafter_names_label_the_runs_they_configure() -> None:
    drafters = [
        {"kind": "layer-skip", "exit_layer": 4, "name": "exit-4"},
        {"kind": "layer-skip", "exit_layer": 8, "name": "exit-8"},
        {"kind": "prompt-lookup"},
    ]
    plan = plan_study(parse_study(_study(drafters=drafters), "s.toml"))
    labels = {c.config.drafter.label for c in plan.conditions if not c.baseline}
    assert labels == {"exit-4", "exit-8", "prompt-lookup"}
    assert {c.config.drafter.label for c in plan.conditions if c.baseline} == {"none"}


def test_unknown_mixture_category_lists_known_ones() -> None:
    study = parse_study(_study(mixtures={"custom": {"m": "poetry=1"}}), "s.toml")
    with pytest.raises(
        StudyError, match=r"unknown category 'poetry'; known: coding, math, writing"
    ):
        plan_study(study)


def test_invalid_combinations_are_skipped_and_reported() -> None:
    study = parse_study(
        _study(policies=["constant", {"kind": "confidence", "threshold": 0.5}]), "s.toml"
    )
    plan = plan_study(study)
    assert [s.description for s in plan.skipped] == ["prompt-lookup/confidence/k4"]
    assert not any(c.config.policy.kind == "confidence" for c in plan.conditions)


def test_toml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("models = [\n")
    with pytest.raises(StudyError, match=r"broken.toml: not valid TOML"):
        load_study(path)
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "missing.toml")


def test_shipped_study_files_parse() -> None:
    # the default study plans on the LMSYS data (tests/test_study_traffic.py)
    default = load_study(ROOT / "studies" / "default.toml")
    assert {d.config.kind for d in default.drafters} == {"suffix"}
    assert default.workload.per_category == 10  # all 80 MT-Bench questions
    assert default.mixtures.traffic is not None and default.mixtures.traffic.size >= 100
    qwen = load_study(ROOT / "studies" / "qwen2.5.toml")
    assert qwen.uses_cuda
    assert qwen.models[0].name == "Qwen/Qwen2.5-7B-Instruct"
    assert qwen.workload.source == "hf:HuggingFaceH4/mt_bench_prompts"


def test_suffix_drafter_and_task_aware_policies_parse_from_a_study_file() -> None:
    study = parse_study(
        _study(
            drafters=[{"kind": "suffix", "partition": "task", "memory_tokens": 512}],
            policies=[
                "heuristic-per-task",
                {
                    "kind": "cost-aware",
                    "cost_model": {
                        "verify_s": [1.0, 1.5, 1.7, 1.2, 1.3],
                        "draft_s": {"suffix": [0]},
                    },
                },
            ],
        ),
        "s.toml",
    )
    drafter = study.drafters[0].config
    assert (drafter.partition, drafter.memory_tokens, drafter.tree_depth) == ("task", 512, 24)
    plan = plan_study(study)
    models = [c.config.policy.cost_model for c in plan.conditions if not c.baseline]
    costs = {m.verify_s if m else None for m in models}
    assert costs == {None, (1.0, 1.5, 1.7, 1.2, 1.3)}


@pytest.mark.parametrize(
    ("drafter", "message"),
    [
        ({"kind": "suffix", "memory_tokens": -1}, "drafters[0]: suffix memory_tokens must be >= 0"),
        ({"kind": "suffix", "partition": "user"}, "partition 'user' is not one of shared, task"),
        ({"kind": "prompt-lookup", "partition": "task"}, "only used with --drafter suffix"),
    ],
)
def test_bad_suffix_options_in_a_study_name_the_key(drafter, message) -> None:
    with pytest.raises(StudyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_study(_study(drafters=[drafter]), "s.toml")


def test_batched_conditions_of_batch_size_one_methods_are_skipped_and_reported() -> None:
    plan = plan_study(
        parse_study(
            _study(
                drafters=[{"kind": "suffix"}],
                policies=["constant"],
                batching={"sizes": [1, 2], "compositions": ["mixed"]},
            ),
            "s.toml",
        )
    )
    suffix = [c for c in plan.conditions if c.config.drafter.kind == "suffix"]
    assert suffix and all(c.batch is None for c in suffix)
    assert any("batch size 1 only" in s.reason for s in plan.skipped)


def test_the_remedies_study_runs_every_remedy_pair_and_its_oracle() -> None:
    import polars as pl

    from specviz.metrics.remedies import REMEDIES, remedy_pairs

    plan = plan_study(load_study(Path(__file__).parents[1] / "studies" / "remedies.toml"))
    rows = [
        {
            "target": c.config.target.name, "temperature": c.config.sampling.temperature,
            "mixture": c.mixture.name, "drafter": c.config.drafter.label,
            "policy": c.config.policy_label, "k": c.config.k_label,
        }
        for c in plan.conditions
        if len(c.mixture.weights) > 1
    ]  # fmt: skip
    partitions = {
        c.config.drafter.label: c.config.drafter.partition or "shared"
        for c in plan.conditions
        if c.config.drafter.kind == "suffix"
    }
    pairs = remedy_pairs(pl.DataFrame(rows), partitions)
    assert {name for name, _, _ in pairs} == set(REMEDIES)
    single = {
        (c.mixture.name, c.config.drafter.label, c.config.policy_label) for c in plan.conditions
    }
    assert {(t, "none", "none") for t in ("coding", "extraction", "writing")} <= single
    assert len(plan.units) == 52 and not plan.skipped
