"""The component-skip drafter: its configuration, its layer surgery, and its place in a run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from engine_helpers import MODELS, make_decoder, run_cli

from specviz.config import ConfigError, DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.hybrid.components import ComponentSkipError, skip_plan, skipping
from specviz.rundir import scan_events, scan_requests
from specviz.runner import Request, run
from specviz.study import StudyError, load_study, parse_study
from specviz.workloads import builtin_prompts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "component-skip needs the components"),
        ({"components": ("mamba", "ssm")}, "'ssm' is not one of attention, mamba, mlp"),
        ({"components": ("mlp", "mamba", "attention")}, "which is the target itself"),
        ({"components": ("mamba",), "exit_layer": 2}, "not an exit layer"),
        ({"components": ("mamba",), "layers": ()}, "layers is empty"),
        ({"components": "mamba"}, "takes a list such as"),
    ],
)
def test_bad_component_skip_configs_are_refused_with_a_fix(options, message):
    with pytest.raises(ConfigError, match=message):
        DrafterConfig("component-skip", **options)


def test_components_belong_to_component_skip_only():
    with pytest.raises(ConfigError, match="only used with component-skip"):
        DrafterConfig("prompt-lookup", components=("mamba",))


def test_components_take_one_canonical_order_and_survive_run_json():
    drafter = DrafterConfig("component-skip", components=["mlp", "mamba", "mamba"])  # type: ignore[arg-type]
    assert drafter.components == ("mamba", "mlp")
    config = RunConfig(ModelSpec("x"), drafter)
    assert RunConfig.from_dict(config.to_dict()) == config


def test_skip_plan_skips_the_other_components_in_the_chosen_layers():
    assert skip_plan(4, ("mamba", "mlp"), None) == {i: ("attention",) for i in range(4)}
    assert skip_plan(4, ("attention",), (2, 3)) == {2: ("mamba", "mlp"), 3: ("mamba", "mlp")}


@pytest.mark.parametrize(
    ("components", "layers", "message"),
    [
        (("mamba",), (1, 4), r"layers \[4\] do not exist"),
        (("mamba",), (0, 1), "attention is skipped in layer 0 but runs in other layers"),
    ],
)
def test_plans_that_do_not_fit_the_model_are_refused(components, layers, message):
    with pytest.raises(ComponentSkipError, match=message):
        skip_plan(4, components, layers)


def test_component_skip_on_a_model_without_parallel_components_is_refused(tiny_model_dir):
    with pytest.raises(ComponentSkipError, match="Falcon-H1"):
        make_decoder(tiny_model_dir, DrafterConfig("component-skip", components=("mamba",)))


def test_skipping_puts_every_module_back_even_after_an_error(hybrid_dir):
    model = MODELS.get(ModelSpec(str(hybrid_dir))).model
    layers = model.model.layers
    before = [(layer.self_attn, layer.mamba, layer.feed_forward) for layer in layers]
    with pytest.raises(RuntimeError), skipping(model, {0: ("attention",), 2: ("mamba", "mlp")}):
        assert layers[0].self_attn is not before[0][0]
        assert layers[2].mamba is not before[2][1]
        assert layers[1].self_attn is before[1][0]
        raise RuntimeError("boom")
    assert [(layer.self_attn, layer.mamba, layer.feed_forward) for layer in layers] == before


def test_a_component_skip_run_records_events_under_its_drafter_label(hybrid_dir, tmp_path):
    config = RunConfig(
        ModelSpec(str(hybrid_dir)),
        DrafterConfig("component-skip", components=("mamba", "mlp")),
        PolicyConfig("constant", 3),
        max_new_tokens=12,
    )
    prompts = [Request(i, p, "builtin") for i, p in enumerate(builtin_prompts()[:2])]
    summary = run(config, prompts, tmp_path / "run", progress=False)
    events = scan_events(tmp_path / "run").collect()
    requests = scan_requests(tmp_path / "run").collect()
    assert events["drafter"].unique().to_list() == ["component-skip"]
    assert requests["drafter"].unique().to_list() == ["component-skip"]
    drafted = events.filter(pl.col("kind") == "draft")
    assert drafted.height == summary.drafted > 0
    assert drafted["accepted"].sum() == summary.accepted


def test_the_falcon_h1_study_file_parses_with_its_component_skip_drafter():
    study = load_study(Path(__file__).parent.parent / "studies" / "falcon-h1.toml")
    assert [m.name for m in study.models] == ["tiiuae/Falcon-H1-0.5B-Instruct"]
    by_name = {d.name: d.config for d in study.drafters}
    assert by_name["mamba-only"] == DrafterConfig(
        "component-skip", components=("mamba", "mlp"), name="mamba-only"
    )
    assert {d.config.kind for d in study.drafters} == {
        "prompt-lookup",
        "component-skip",
        "layer-skip",
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"components": ["mamba", "ssm"]}, r"drafters\[0\]: component 'ssm' is not one of"),
        ({"components": "mamba"}, r"drafters\[0\]\.components: expected list"),
        ({}, r"drafters\[0\]: component-skip needs the components"),
    ],
)
def test_bad_component_skip_tables_name_the_study_key(table, message):
    data = {"models": ["m"], "drafters": [{"kind": "component-skip", **table}]}
    with pytest.raises(StudyError, match=message):
        parse_study(data, "s.toml")


def test_cli_runs_component_skip_on_a_hybrid_target(hybrid_dir: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--target",
        str(hybrid_dir),
        "--drafter",
        "component-skip",
        "--components",
        "mamba,mlp",
        "--k",
        "3",
        "--limit",
        "2",
        "--max-new-tokens",
        "12",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "run.json").read_text())["config"]["drafter"]
    assert config["kind"] == "component-skip" and config["components"] == ["mamba", "mlp"]
    assert set(pl.read_parquet(out / "events.parquet")["drafter"]) == {"component-skip"}


def test_batched_runs_refuse_a_hybrid_target_before_writing_anything(hybrid_dir, tmp_path):
    from specviz.batch import BatchConfig, BatchConfigError

    config = RunConfig(ModelSpec(str(hybrid_dir)), DrafterConfig("prompt-lookup"), max_new_tokens=4)
    requests = [Request(i, p, "builtin") for i, p in enumerate(builtin_prompts()[:2])]
    out = tmp_path / "batched"
    with pytest.raises(BatchConfigError, match=r"recurrent .*batch size 1"):
        run(config, requests, out, batch=BatchConfig(size=2), models=MODELS, progress=False)
    assert not out.exists() or not any(out.iterdir())
