"""Greedy speculation is lossless: every drafter and policy reproduces plain greedy decoding."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import MODELS, PROMPTS, decode, lossless_rounds, make_decoder

from specviz.config import STOPPING_POLICIES, DrafterConfig, ModelSpec, PolicyConfig
from specviz.cost import CostModel

POLICIES = [
    PolicyConfig("constant", 3),
    PolicyConfig("heuristic", 2),
    PolicyConfig("heuristic-per-request", 4),
    PolicyConfig("confidence", 5, threshold=0.05),
    PolicyConfig("svip", 5, threshold=2.05),  # tiny models' sqrt(entropy) lies in 1.9..2.1
    PolicyConfig("heuristic-per-task", 2),
    PolicyConfig(
        "cost-aware",
        4,
        cost_model=CostModel(
            (1.0, 1.2, 1.4, 1.6, 1.8),
            {d: (0.0,) for d in ("prompt-lookup", "layer-skip", "model", "suffix")},
        ),
    ),
]


def drafters(draft_dir) -> list[DrafterConfig]:
    return [
        DrafterConfig("prompt-lookup", max_ngram=3),
        DrafterConfig("layer-skip", exit_layer=2),
        DrafterConfig("layer-skip", layers=(0, 2, 3)),
        DrafterConfig("model", draft=ModelSpec(str(draft_dir))),
        DrafterConfig("suffix", partition="task"),
    ]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.kind)
@pytest.mark.parametrize(
    "which", range(5), ids=["prompt-lookup", "exit-2", "skip-1", "model", "suffix"]
)
def test_greedy_speculation_matches_plain_greedy(tiny_model_dir, tiny_draft_dir, which, policy):
    drafter = drafters(tiny_draft_dir)[which]
    if policy.kind in STOPPING_POLICIES and drafter.kind in ("prompt-lookup", "suffix"):
        pytest.skip(f"{drafter.kind} has no probabilities for a stop rule")
    plain = make_decoder(tiny_model_dir)
    spec = make_decoder(tiny_model_dir, drafter, policy)
    rounds = lossless_rounds(plain, spec, PROMPTS, drafter.kind)
    assert sum(len(r.draft) for r in rounds) > 0  # the drafter really drafted
    # and some drafts were accepted: rounds of several tokens happened
    assert sum(r.n_accepted for r in rounds) > 0


def test_plain_loop_matches_transformers_generate(tiny_model_dir):
    loaded = MODELS.get(ModelSpec(str(tiny_model_dir)))
    decoder = make_decoder(tiny_model_dir, max_new_tokens=40)
    prompt = PROMPTS[0]
    ours, _ = decode(decoder, prompt)
    ids = decoder.encode_turn(prompt, [])
    out = loaded.model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=40, eos_token_id=2, pad_token_id=0
    )
    assert list(ours[0]) == out[0, len(ids) :].tolist()


def test_draft_model_with_smaller_vocabulary_drafts_and_is_lossless(tiny_model_dir, tiny_draft_dir):
    target = MODELS.get(ModelSpec(str(tiny_model_dir)))
    draft = MODELS.get(ModelSpec(str(tiny_draft_dir)))
    # the pair differs in embedding rows but shares one tokenizer, like Qwen2.5-0.5B / 7B
    assert target.model.get_input_embeddings().weight.shape[0] == 128
    assert draft.model.get_input_embeddings().weight.shape[0] == 112
    spec = make_decoder(
        tiny_model_dir, DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    )
    got, rounds = decode(spec, PROMPTS[1])
    want, _ = decode(make_decoder(tiny_model_dir), PROMPTS[1])
    assert got == want
    assert sum(r.n_accepted for r in rounds) / sum(len(r.draft) for r in rounds) > 0.25


def test_rounds_with_all_and_no_drafts_accepted_both_occur(tiny_model_dir, tiny_draft_dir):
    spec = make_decoder(
        tiny_model_dir, DrafterConfig("layer-skip", exit_layer=1), PolicyConfig("constant", 3)
    )
    rounds = [r for p in PROMPTS for r in decode(spec, p)[1] if r.draft]
    assert any(r.n_accepted == len(r.draft) for r in rounds)
    assert any(r.n_accepted == 0 for r in rounds)


def test_every_round_emits_accepted_drafts_plus_one_target_token(tiny_model_dir, tiny_draft_dir):
    spec = make_decoder(
        tiny_model_dir, DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    )
    turns, rounds = decode(spec, PROMPTS[2])
    assert sum(r.n_emitted for r in rounds) == sum(len(t) for t in turns)
    for r in rounds:
        assert r.n_emitted <= r.n_accepted + 1
        assert r.target[: r.n_accepted] == r.draft[: r.n_accepted]
