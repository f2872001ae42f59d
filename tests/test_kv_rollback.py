"""After rejected drafts are rolled back, the target's KV cache equals plain decoding's."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import PROMPTS, make_decoder

from specviz.config import DrafterConfig, ModelSpec, PolicyConfig
from specviz.engine import Round
from specviz.forward import forward, new_cache


@pytest.mark.parametrize("which", ["layer-skip", "model", "prompt-lookup"])
def test_cache_after_speculation_equals_cache_of_plain_forward(
    tiny_model_dir, tiny_draft_dir, which
):
    drafter = {
        "layer-skip": DrafterConfig("layer-skip", layers=(0, 1)),
        "model": DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir))),
        "prompt-lookup": DrafterConfig("prompt-lookup"),
    }[which]
    decoder = make_decoder(tiny_model_dir, drafter, PolicyConfig("constant", 4), max_new_tokens=30)
    prompt = PROMPTS[0]
    ids = decoder.encode_turn(prompt, [])
    rejected = 0
    emitted: list[int] = []
    for record in decoder.decode(prompt, 0):
        if isinstance(record, Round):
            rejected += len(record.draft) - record.n_accepted
            emitted += record.target[: record.n_emitted]
            if record.finish:
                break  # the cache now holds the prompt and every emitted token but the last
    assert rejected > 0  # rollbacks really happened
    cache = decoder.cache
    context = torch.tensor(ids + emitted[:-1])
    assert cache.get_seq_length() == len(context)
    reference = new_cache(decoder.target.model)
    with torch.inference_mode():
        forward(decoder.target.model, context, reference, 0)
    for got, want in zip(cache.layers, reference.layers, strict=True):
        assert got.keys.shape == want.keys.shape
        torch.testing.assert_close(got.keys, want.keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.values, want.values, atol=1e-4, rtol=1e-4)
