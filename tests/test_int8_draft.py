"""``--draft-quant int8``: an int8 dynamically quantized copy of the target drafts for it."""

from __future__ import annotations

import copy

import pytest
from engine_helpers import MODELS, PROMPTS, lossless_rounds, make_decoder
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from specviz.cli import main
from specviz.config import ConfigError, DrafterConfig, ModelSpec, PolicyConfig, RunConfig
from specviz.study import parse_study, plan_study
from specviz.workloads import Prompt, builtin_prompts

INT8 = DrafterConfig("model", draft_quant="int8")


def int8_of(target) -> DrafterConfig:
    """The drafter RunConfig resolves ``--drafter model --draft-quant int8`` to (draft = target)."""
    return RunConfig(ModelSpec(str(target)), INT8).drafter


def test_the_int8_draft_is_a_quantized_copy_and_the_target_stays_float(tiny_model_dir):
    spec = ModelSpec(str(tiny_model_dir))
    draft = MODELS.get(spec, "int8")
    target = MODELS.get(spec)
    assert any(isinstance(m, DynamicLinear) for m in draft.model.modules())
    assert not any(isinstance(m, DynamicLinear) for m in target.model.modules())
    assert draft.tokenizer is target.tokenizer and "int8" in draft.dtype_reason
    assert MODELS.get(spec, "int8") is draft  # made once


@pytest.mark.parametrize("policy", [PolicyConfig("constant", 3), PolicyConfig("heuristic", 2)])
def test_greedy_speculation_with_the_int8_draft_matches_plain_greedy(tiny_model_dir, policy):
    plain = make_decoder(tiny_model_dir)
    spec = make_decoder(tiny_model_dir, int8_of(tiny_model_dir), policy)
    assert sum(r.n_accepted for r in lossless_rounds(plain, spec, PROMPTS, "int8 draft")) > 0


@pytest.mark.slow
def test_greedy_speculation_with_the_int8_draft_on_the_embedded_model_matches_plain_greedy():
    copy = Prompt(
        "copy", "extraction", ("Repeat exactly: The quick brown fox jumps over the dog.",)
    )
    prompts = [copy, next(p for p in builtin_prompts() if p.category == "coding")]
    plain = make_decoder("smollm2-135m", max_new_tokens=24)
    spec = make_decoder(
        "smollm2-135m", int8_of("smollm2-135m"), PolicyConfig("constant", 3), max_new_tokens=24
    )
    assert sum(r.n_accepted for r in lossless_rounds(plain, spec, prompts, "int8 draft")) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--draft-quant", "int4"], "draft quantization 'int4' is not one of int8"),
        (["--draft-quant", "int8", "--device", "cuda"], "runs on the CPU only"),
        (["--drafter", "prompt-lookup", "--draft-quant", "int8"], "only used with --drafter model"),
    ],
)
def test_bad_draft_quant_exits_2_with_one_line(tiny_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "r"
    argv = ["run", "--target", str(tiny_model_dir), "--out", str(out), "--quiet"]
    if "--drafter" not in args:
        argv += ["--drafter", "model"]
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_cuda_placed_model_is_refused_before_quantizing(tiny_model_dir):
    from specviz.model_source import ModelLoadError
    from specviz.models import quantized_copy

    loaded = MODELS.get(ModelSpec(str(tiny_model_dir)))
    # a copy: Module.to moves in place, and the cached model serves every later test
    on_meta = type(loaded)(
        loaded.spec, copy.deepcopy(loaded.model).to("meta"), loaded.tokenizer, "", None
    )
    with pytest.raises(ModelLoadError, match="CPU only"):
        quantized_copy(on_meta, "int8")


def test_study_files_take_an_int8_draft_of_each_target():
    drafters = [{"kind": "model", "name": "int8", "draft_quant": "int8"}]
    data = {
        "models": ["smollm2-135m"],
        "k": [3],
        "drafters": drafters,
        "workload": {"per_category": 1, "categories": ["coding"]},
    }
    plan = plan_study(parse_study(data, "s.toml"))
    drafted = [c.config.drafter for c in plan.conditions if not c.baseline]
    assert drafted and all(d.draft == ModelSpec("smollm2-135m") for d in drafted)
    assert all(d.draft_quant == "int8" for d in drafted)
    with pytest.raises(ConfigError, match="only used with --drafter model"):
        DrafterConfig("prompt-lookup", draft_quant="int8")


def test_run_identity_is_unchanged_without_draft_quant(tiny_model_dir):
    data = RunConfig(ModelSpec(str(tiny_model_dir)), DrafterConfig("prompt-lookup")).to_dict()
    assert "draft_quant" not in data["drafter"]
    resolved = RunConfig(ModelSpec(str(tiny_model_dir)), INT8)
    assert RunConfig.from_dict(resolved.to_dict()) == resolved


def test_the_int8_draft_study_file_plans_the_int8_draft_beside_prompt_lookup():
    from pathlib import Path

    from specviz.study import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "studies" / "int8-draft.toml")
    plan = plan_study(study)
    kinds = {c.config.drafter.label: c.config.drafter for c in plan.conditions if not c.baseline}
    assert set(kinds) == {"prompt-lookup", "int8"}
    assert kinds["int8"].draft_quant == "int8" and kinds["int8"].draft == study.models[0]
