"""Greedy speculation on a hybrid attention/SSM model (tiny random Falcon-H1) is lossless.

Every drafter reproduces plain greedy decoding token for token, over rounds where all drafts are
accepted and rounds where all are rejected; after a rejection the Mamba state is restored and
the kept tokens replayed, and that replay costs exactly the kept tokens of rejected rounds.
"""

from __future__ import annotations

import pytest
import torch
from engine_helpers import MODELS, PROMPTS, decode, lossless_rounds, make_decoder
from tiny_hybrid import (
    build_tiny_hybrid_draft,
    cache_tensors,
    max_difference,
)

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig
from specviz.forward import forward, new_cache
from specviz.hybrid.draft_model import HybridDraftModelDrafter
from specviz.hybrid.rollback import CropRollback, ReplayRollback

TOKENS = 20


DRAFTERS = {
    "prompt-lookup": DrafterConfig("prompt-lookup", max_ngram=3),
    "layer-skip": DrafterConfig("layer-skip", exit_layer=2),
    "mamba-only": DrafterConfig("component-skip", components=("mamba", "mlp")),
    "attention-only": DrafterConfig("component-skip", components=("attention", "mlp")),
    "mamba-only-top": DrafterConfig("component-skip", components=("mamba",), layers=(2, 3)),
}


@pytest.mark.parametrize("which", list(DRAFTERS))
def test_greedy_speculation_on_hybrid_matches_plain_greedy(hybrid_dir, which):
    plain = make_decoder(hybrid_dir, max_new_tokens=TOKENS)
    spec = make_decoder(
        hybrid_dir, DRAFTERS[which], PolicyConfig("constant", 3), max_new_tokens=TOKENS
    )
    assert isinstance(spec.rollback, ReplayRollback)
    rounds = [r for r in lossless_rounds(plain, spec, PROMPTS[:2], which) if r.draft]
    assert any(r.n_accepted == len(r.draft) for r in rounds), "no fully accepted round"
    assert any(r.n_accepted == 0 for r in rounds), "no fully rejected round"
    # the replay cost: the kept tokens (last + accepted) of every round with a rejection
    rejected = [r for r in rounds if r.n_accepted < len(r.draft)]
    assert spec.rollback.replays == len(rejected)
    assert spec.rollback.replayed_tokens == sum(r.n_accepted + 1 for r in rejected)


def test_separate_draft_model_drafts_losslessly_for_a_hybrid_target(hybrid_dir, tiny_draft_dir):
    # the tiny Qwen2 draft shares the tokenizer; it knows nothing of the target, so its drafts
    # are mostly rejected, and every rejection goes through restore + replay
    drafter = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    spec = make_decoder(hybrid_dir, drafter, PolicyConfig("constant", 3), max_new_tokens=TOKENS)
    got, _ = decode(spec, PROMPTS[0])
    want, _ = decode(make_decoder(hybrid_dir, max_new_tokens=TOKENS), PROMPTS[0])
    assert got == want
    assert spec.rollback.replays > 0


def test_hybrid_draft_model_drafts_losslessly_and_keeps_an_exact_state(hybrid_dir, tmp_path):
    draft_dir = build_tiny_hybrid_draft(hybrid_dir, tmp_path / "draft")
    drafter = DrafterConfig("model", draft=ModelSpec(str(draft_dir)))
    spec = make_decoder(hybrid_dir, drafter, PolicyConfig("constant", 3), max_new_tokens=TOKENS)
    plain = make_decoder(hybrid_dir, max_new_tokens=TOKENS)
    built = spec.drafter
    assert isinstance(built, HybridDraftModelDrafter)
    prompt = PROMPTS[1]  # two turns
    got, rounds = decode(spec, prompt)
    assert got == decode(plain, prompt)[0]
    drafted = [r for r in rounds if r.draft]
    assert any(r.n_accepted == len(r.draft) for r in drafted)
    assert any(r.n_accepted < len(r.draft) for r in drafted)
    # refilled once, at turn 2: its prompt re-encodes turn 1's answer without the special
    # tokens the target emitted, so it does not extend the cache; within a turn it never is
    assert built.refills == 1
    # the draft's cache holds exactly its last context, as if fed in one plain forward
    reference = new_cache(built.model)
    with torch.inference_mode():
        forward(built.model, built.cached, reference, 0)
    assert max_difference(cache_tensors(built.cache), cache_tensors(reference)) < 1e-4


def test_confidence_policy_with_component_skip_is_lossless(hybrid_dir):
    drafter = DRAFTERS["attention-only"]
    spec = make_decoder(
        hybrid_dir, drafter, PolicyConfig("confidence", 4, 0.05), max_new_tokens=TOKENS
    )
    got, rounds = decode(spec, PROMPTS[1])
    want, _ = decode(make_decoder(hybrid_dir, max_new_tokens=TOKENS), PROMPTS[1])
    assert got == want
    assert sum(len(r.draft) for r in rounds) > 0


def test_plain_loop_on_hybrid_matches_transformers_generate(hybrid_dir):
    loaded = MODELS.get(ModelSpec(str(hybrid_dir)))
    decoder = make_decoder(hybrid_dir, max_new_tokens=TOKENS)
    ours, _ = decode(decoder, PROMPTS[0])
    ids = decoder.encode_turn(PROMPTS[0], [])
    out = loaded.model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=TOKENS, eos_token_id=2, pad_token_id=0
    )
    assert list(ours[0]) == out[0, len(ids) :].tolist()


def test_attention_only_models_keep_the_crop_path(tiny_model_dir):
    assert isinstance(make_decoder(tiny_model_dir).rollback, CropRollback)


def test_hybrid_draft_model_refills_its_cache_when_the_context_is_not_an_extension(
    hybrid_dir, tmp_path
):
    draft_dir = build_tiny_hybrid_draft(hybrid_dir, tmp_path / "draft")
    spec = make_decoder(hybrid_dir, DrafterConfig("model", draft=ModelSpec(str(draft_dir))))
    built = spec.drafter
    assert isinstance(built, HybridDraftModelDrafter)
    first = torch.tensor(spec.encode_turn(PROMPTS[0], []))
    second = torch.tensor(spec.encode_turn(PROMPTS[2], []))
    with torch.inference_mode():
        built.propose(first, 3, None)
        built.propose(torch.cat([first, torch.tensor([40, 41])]), 3, None)  # extends: no refill
        assert built.refills == 0
        built.propose(second, 3, None)  # another conversation: empty the cache and refill
        assert built.refills == 1
        reference = new_cache(built.model)
        forward(built.model, second, reference, 0)
    assert torch.equal(built.cached, second)
    assert max_difference(cache_tensors(built.cache), cache_tensors(reference)) < 1e-4
