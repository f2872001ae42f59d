"""The lean forward (specviz.lean) computes what transformers computes, and every loop runs on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import MODELS, PROMPTS, decode

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, RunConfig, SamplingConfig
from specviz.drafter_factory import build_drafter
from specviz.drafters.layer_skip import only_layers
from specviz.engine import Decoder
from specviz.forward import TokenFeeder, forward, new_cache, rollback, rollback_layers
from specviz.lean import LeanCache, lean_of
from specviz.model_source import ModelLoadError
from specviz.models import LoadedModel, on_transformers
from specviz.policies import build_policy
from specviz.rundir import model_info


def load(path: Path, dtype: str = "float32", engine: str = "auto") -> LoadedModel:
    return MODELS.get(ModelSpec(str(path), device="cpu", dtype=dtype, engine=engine))


def decoder_on(
    loaded: LoadedModel, drafter: DrafterConfig = DrafterConfig(), k: int = 0
) -> Decoder:
    cache = new_cache(loaded.model)
    generator = torch.Generator()
    sampling = SamplingConfig()
    built = build_drafter(drafter, loaded, cache, sampling, generator, MODELS)
    policy = build_policy(PolicyConfig("constant", max(k, 1)), drafter=drafter.label)
    return Decoder(loaded, built, policy, sampling, 40, cache, generator)


def test_llama_family_models_run_on_the_lean_engine_unless_told_otherwise(tiny_model_dir):
    lean, plain = load(tiny_model_dir), load(tiny_model_dir, engine="transformers")
    assert (lean.engine, plain.engine) == ("lean", "transformers")
    assert isinstance(new_cache(lean.model), LeanCache)
    assert not isinstance(new_cache(plain.model), LeanCache)
    assert model_info(lean)["engine"] == "lean"
    # the engine tests (test_engine_lossless, test_kv_rollback, ...) load this very spec
    assert MODELS.get(ModelSpec(str(tiny_model_dir))).engine == "lean"


def test_lean_logits_match_transformers_in_float32(tiny_model_dir):
    """Prefill, a 6-row verify, a rollback, a one-row step and a long feed that outgrows the
    preallocated cache: the same logits as transformers' forward at every step."""
    lean, plain = load(tiny_model_dir), load(tiny_model_dir, engine="transformers")
    ids = torch.randint(4, 100, (330,), generator=torch.Generator().manual_seed(1))
    caches = new_cache(lean.model), new_cache(plain.model)

    def both(start: int, end: int, last_only: bool = False) -> None:
        a, b = (
            forward(m.model, ids[start:end], c, start, last_only)
            for m, c in zip((lean, plain), caches, strict=True)
        )
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    with torch.inference_mode():
        both(0, 250, last_only=True)
        both(250, 256)
        for cache in caches:
            rollback(cache, 3)
        both(253, 254)
        both(254, 330)  # past the first 256 preallocated positions
    assert caches[0].get_seq_length() == caches[1].get_seq_length() == 330


def test_lean_greedy_tokens_equal_transformers_greedy_tokens(tiny_model_dir):
    lean, plain = load(tiny_model_dir), load(tiny_model_dir, engine="transformers")
    for prompt in PROMPTS:
        assert decode(decoder_on(lean), prompt)[0] == decode(decoder_on(plain), prompt)[0]


def test_layer_skip_on_the_lean_engine_writes_and_crops_only_the_kept_layers(tiny_model_dir):
    lean, plain = load(tiny_model_dir), load(tiny_model_dir, engine="transformers")
    ids = torch.arange(4, 40)
    kept = [0, 2]
    with torch.inference_mode():
        caches = [new_cache(m.model) for m in (lean, plain)]
        for m, c in zip((lean, plain), caches, strict=True):
            forward(m.model, ids[:-1], c, 0, last_only=True)
        drafted = []
        for m, c in zip((lean, plain), caches, strict=True):
            feeder = TokenFeeder(m.model, c, len(ids) - 1)
            with only_layers(m.model, kept):
                drafted.append(torch.stack([feeder(int(ids[-1])), feeder(7), feeder(9)]))
        torch.testing.assert_close(drafted[0], drafted[1], atol=1e-5, rtol=1e-5)
        lengths = [layer.length for layer in caches[0].layers]
        assert lengths == [len(ids) + 2, len(ids) - 1, len(ids) + 2, len(ids) - 1]
        rollback_layers(caches[0], kept, 3)
        assert {layer.length for layer in caches[0].layers} == {len(ids) - 1}


def test_greedy_layer_skip_speculation_on_lean_matches_plain_greedy(tiny_model_dir):
    lean = load(tiny_model_dir)
    spec = decoder_on(lean, DrafterConfig("layer-skip", layers=(0, 1, 3)), k=4)
    for prompt in PROMPTS:
        got, rounds = decode(spec, prompt)
        assert got == decode(decoder_on(lean), prompt)[0]
        assert any(r.n_accepted for r in rounds)


def test_other_architectures_run_on_transformers_and_lean_refuses_them(hybrid_dir):
    loaded = MODELS.get(ModelSpec(str(hybrid_dir), device="cpu"))
    assert loaded.engine == "transformers"
    assert "architecture" in loaded.engine_reason
    with pytest.raises(ModelLoadError, match="--engine lean cannot run"):
        MODELS.get(ModelSpec(str(hybrid_dir), device="cpu", engine="lean"))


def test_a_deep_copy_of_a_lean_model_runs_on_transformers(tiny_model_dir):
    """--draft-quant copies the transformers model; the copy must not run the original's
    weights through the original's lean engine."""
    import copy

    lean = load(tiny_model_dir)
    assert lean_of(copy.deepcopy(lean.model)) is None


def test_q4_needs_a_gguf_file(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="GGUF"):
        load(tiny_model_dir, dtype="q4")


def test_batched_decoding_runs_on_transformers_and_refuses_q4(tiny_model_dir):
    config = RunConfig(ModelSpec(str(tiny_model_dir)))
    assert on_transformers(config).target.engine == "transformers"
    with pytest.raises(ModelLoadError, match="batched decoding"):
        on_transformers(RunConfig(ModelSpec("smollm2-135m", dtype="q4")))


def test_the_default_engine_leaves_run_identities_unchanged(tiny_model_dir):
    assert "engine" not in RunConfig(ModelSpec("m")).to_dict()["target"]
    assert RunConfig(ModelSpec("m", engine="lean")).to_dict()["target"]["engine"] == "lean"


# -- exact greedy speculation in bf16 (lean-invariant) ----------------------------------------


def test_lean_invariant_rows_equal_one_row_forwards_bit_for_bit_in_bf16(tiny_model_dir):
    loaded = load(tiny_model_dir, dtype="bfloat16", engine="lean-invariant")
    assert loaded.engine == "lean-invariant"
    ids = torch.randint(4, 100, (60,), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        many, one = new_cache(loaded.model), new_cache(loaded.model)
        for cache in (many, one):
            forward(loaded.model, ids[:50], cache, 0, last_only=True)
        rows = forward(loaded.model, ids[50:60], many, 50)  # 10 rows: more than one padded pass
        singles = torch.cat([forward(loaded.model, ids[i : i + 1], one, i) for i in range(50, 60)])
    assert rows.dtype == torch.bfloat16
    assert torch.equal(rows, singles)
    for a, b in zip(many.layers, one.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


@pytest.mark.parametrize("k", [2, 5])
def test_bf16_greedy_speculation_on_lean_invariant_matches_plain_bf16_greedy(tiny_model_dir, k):
    loaded = load(tiny_model_dir, dtype="bfloat16", engine="lean-invariant")
    spec = decoder_on(loaded, DrafterConfig("prompt-lookup", max_ngram=3), k=k)
    accepted = 0
    for prompt in PROMPTS:
        got, rounds = decode(spec, prompt)
        assert got == decode(decoder_on(loaded), prompt)[0]
        accepted += sum(r.n_accepted for r in rounds)
    assert accepted > 0


def test_a_study_names_the_engine_in_its_model_table():
    from specviz.study.spec import parse_study

    study = parse_study(
        {
            "name": "s",
            "models": [{"name": "smollm2-135m", "engine": "lean-invariant"}],
            "workload": {"source": "builtin", "per_category": 1},
        }
    )
    assert study.models[0].engine == "lean-invariant"
