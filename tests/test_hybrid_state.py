"""After speculation the hybrid cache (attention KV, Mamba conv and SSM state) equals the cache
plain decoding of the same tokens builds, and drafting never changes the target's state.

Each claim is shown to fail when the restore is taken away, so the comparison can catch it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import PROMPTS, make_decoder
from tiny_hybrid import (
    build_tiny_bamba,
    cache_tensors,
    max_difference,
)

from specviz.config import DrafterConfig, PolicyConfig, SamplingConfig
from specviz.drafters.base import Proposal
from specviz.engine import Decoder, Round, TurnEnd
from specviz.forward import crop_attention, forward, new_cache
from specviz.hybrid.preserve import StatePreservingDrafter
from specviz.hybrid.rollback import MixerReplayRollback, ReplayRollback
from specviz.hybrid.state import RecurrentSnapshot

DRAFTERS = {
    "prompt-lookup": DrafterConfig("prompt-lookup"),
    "layer-skip": DrafterConfig("layer-skip", layers=(0, 1)),
    "component-skip": DrafterConfig("component-skip", components=("mamba", "mlp")),
}


def speculate_then_compare(decoder: Decoder) -> tuple[int, float]:
    """Decode a two-turn prompt; return (rejected drafts, largest difference between the
    target's cache at the end and a fresh cache of the same tokens fed in one plain forward)."""
    prompt = PROMPTS[1]
    answers: list[str] = []
    ids = decoder.encode_turn(prompt, answers)
    rejected = 0
    emitted: list[int] = []
    cached: list[int] = []
    for record in decoder.decode(prompt, 0):
        if isinstance(record, Round):
            rejected += len(record.draft) - record.n_accepted
            if record.finish:
                # the cache holds the context before this round plus the accepted drafts (the
                # turn may end inside them, on an end-of-sequence token)
                cached = ids + emitted + list(record.draft[: record.n_accepted])
            emitted += record.target[: record.n_emitted]
        elif isinstance(record, TurnEnd) and len(answers) + 1 < len(prompt.turns):
            answers.append(record.text)
            ids, emitted = decoder.encode_turn(prompt, answers), []
    context = torch.tensor(cached)
    assert decoder.cache.get_seq_length() == len(context)
    reference = new_cache(decoder.target.model)
    with torch.inference_mode():
        forward(decoder.target.model, context, reference, 0)
    return rejected, max_difference(cache_tensors(decoder.cache), cache_tensors(reference))


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampling"])
@pytest.mark.parametrize("which", list(DRAFTERS))
def test_hybrid_cache_after_speculation_equals_cache_of_plain_forward(
    hybrid_dir, which, temperature
):
    decoder = make_decoder(
        hybrid_dir,
        DRAFTERS[which],
        PolicyConfig("constant", 4),
        SamplingConfig(temperature),
        max_new_tokens=24,
    )
    rejected, difference = speculate_then_compare(decoder)
    assert rejected > 0  # rollbacks really happened
    assert difference < 1e-4


def test_full_model_replay_is_exact_too(hybrid_dir):
    # the rollback any hybrid cache gets (Falcon-H1 gets the cheaper mixer-only replay)
    decoder = make_decoder(
        hybrid_dir, DRAFTERS["prompt-lookup"], PolicyConfig("constant", 4), max_new_tokens=24
    )
    assert isinstance(decoder.rollback, MixerReplayRollback)
    decoder.rollback = ReplayRollback()
    rejected, difference = speculate_then_compare(decoder)
    assert rejected > 0
    assert decoder.rollback.replays > 0
    assert difference < 1e-4


def test_interleaved_hybrid_gets_full_replay_and_stays_exact(tmp_path):
    # Bamba: attention layers and Mamba layers alternate; no mixer shortcut applies
    decoder = make_decoder(
        build_tiny_bamba(tmp_path / "bamba"),
        DRAFTERS["prompt-lookup"],
        PolicyConfig("constant", 4),
        max_new_tokens=24,
    )
    assert type(decoder.rollback) is ReplayRollback
    rejected, difference = speculate_then_compare(decoder)
    assert rejected > 0
    assert decoder.rollback.replays > 0
    assert difference < 1e-4


class Scribbler:
    """A drafter that feeds its proposal through the target's cache and crops only the KV."""

    name = "scribbler"

    def __init__(self, decoder: Decoder) -> None:
        self.model = decoder.target.model
        self.cache = decoder.cache

    def start(self, context: torch.Tensor) -> None:
        return None

    def propose(self, context: torch.Tensor, k: int, stop: object) -> Proposal:
        tokens = context[-k:].clone()
        forward(self.model, tokens, self.cache, len(context) - 1)
        for layer in self.cache.layers:
            crop_attention(layer, k)
        return Proposal(tokens)

    def feedback(self, n_accepted: int) -> None:
        return None


def test_state_preserving_wrapper_undoes_what_a_drafter_did_to_the_ssm_state(hybrid_dir):
    decoder, context = prefilled(hybrid_dir, "prompt-lookup")
    before = {k: v.clone() for k, v in cache_tensors(decoder.cache).items()}
    with torch.inference_mode():
        Scribbler(decoder).propose(context, 3, None)
    assert max_difference(cache_tensors(decoder.cache), before) > 1e-3  # it does scribble
    decoder, context = prefilled(hybrid_dir, "prompt-lookup")
    wrapped = StatePreservingDrafter(Scribbler(decoder), decoder.cache)
    with torch.inference_mode():
        assert len(wrapped.propose(context, 3, None)) == 3
    assert max_difference(cache_tensors(decoder.cache), before) == 0.0


def test_state_comparison_fails_when_verification_only_crops(hybrid_dir, monkeypatch):
    # what a transformer-only engine does: crop the KV of rejected drafts, leave the SSM state
    def crop_only(self, cache, model, fed, start, n_keep):
        for layer in cache.layers:
            crop_attention(layer, len(fed) - n_keep)

    monkeypatch.setattr(MixerReplayRollback, "keep", crop_only)
    decoder = make_decoder(
        hybrid_dir, DRAFTERS["prompt-lookup"], PolicyConfig("constant", 4), max_new_tokens=24
    )
    rejected, difference = speculate_then_compare(decoder)
    assert rejected > 0
    assert difference > 1e-2


def prefilled(hybrid_dir: Path, which: str) -> tuple[Decoder, torch.Tensor]:
    decoder = make_decoder(hybrid_dir, DRAFTERS[which], PolicyConfig("constant", 4))
    context = torch.tensor(decoder.encode_turn(PROMPTS[0], []))
    with torch.inference_mode():
        forward(decoder.target.model, context[:-1], decoder.cache, 0)
    return decoder, context


@pytest.mark.parametrize("which", ["layer-skip", "component-skip"])
def test_self_drafting_leaves_the_target_cache_untouched(hybrid_dir, which):
    decoder, context = prefilled(hybrid_dir, which)
    before = {k: v.clone() for k, v in cache_tensors(decoder.cache).items()}
    assert decoder.drafter is not None
    with torch.inference_mode():
        proposal = decoder.drafter.propose(context, 4, None)
    assert len(proposal) == 4
    assert max_difference(cache_tensors(decoder.cache), before) == 0.0


@pytest.mark.parametrize("which", ["layer-skip", "component-skip"])
def test_drafting_changes_the_ssm_state_unless_restored(hybrid_dir, which, monkeypatch):
    monkeypatch.setattr(RecurrentSnapshot, "restore", lambda self, cache: None)
    decoder, context = prefilled(hybrid_dir, which)
    before = {k: v.clone() for k, v in cache_tensors(decoder.cache).items()}
    assert decoder.drafter is not None
    with torch.inference_mode():
        decoder.drafter.propose(context, 4, None)
    after = cache_tensors(decoder.cache)
    assert all(torch.equal(after[k], before[k]) for k in before if "keys" in k or "values" in k)
    assert any(not torch.equal(after[k], before[k]) for k in before if k.endswith(".ssm"))


def test_snapshot_restores_in_place(hybrid_dir):
    decoder, _ = prefilled(hybrid_dir, "component-skip")
    cache = decoder.cache
    ssm = cache.layers[0].recurrent_states[0]
    with torch.inference_mode():
        saved = RecurrentSnapshot.capture(cache)
        expected = ssm.clone()
        ssm.add_(1.0)
        saved.restore(cache)
    assert cache.layers[0].recurrent_states[0] is ssm  # same tensor (static address kept)
    assert torch.equal(ssm, expected)
    assert saved.ssm and saved.conv  # it captured recurrent and convolution states
