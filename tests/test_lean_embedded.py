"""The lean engine on the embedded SmolLM2-135M-Instruct: bf16 rows, exact bf16 speculation, and
the GGUF's own 4-bit weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import MODELS, decode
from test_lean_forward import decoder_on

from specviz.config import DrafterConfig, ModelSpec
from specviz.forward import forward, new_cache
from specviz.lean.q4 import Int4, Int4Pair, gguf_tensors, layer_weights, read_q8_0
from specviz.model_source import embedded_gguf
from specviz.models import LoadedModel
from specviz.workloads import builtin_prompts

pytestmark = pytest.mark.slow


def smollm2(dtype: str, engine: str = "auto") -> LoadedModel:
    return MODELS.get(ModelSpec("smollm2-135m", device="cpu", dtype=dtype, engine=engine))


def rows_and_singles(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of 6 tokens fed in one forward, and fed one by one, after a 200-token context."""
    ids = torch.randint(4, 40000, (206,), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        many, one = new_cache(loaded.model), new_cache(loaded.model)
        for cache in (many, one):
            forward(loaded.model, ids[:200], cache, 0, last_only=True)
        rows = forward(loaded.model, ids[200:], many, 200)
        singles = torch.cat(
            [forward(loaded.model, ids[i : i + 1], one, i) for i in range(200, 206)]
        )
    return rows, singles


def test_in_bf16_a_six_row_forward_is_not_six_one_row_forwards():
    """The problem lean-invariant solves: the same tokens, other bits, another argmax."""
    rows, singles = rows_and_singles(smollm2("bfloat16", "lean"))
    assert not torch.equal(rows, singles)


@pytest.mark.parametrize("dtype", ["bfloat16", "q4"])
def test_lean_invariant_rows_are_one_row_forwards_bit_for_bit(dtype):
    rows, singles = rows_and_singles(smollm2(dtype, "lean-invariant"))
    assert torch.equal(rows, singles)


def test_bf16_greedy_speculation_on_lean_invariant_matches_plain_greedy_on_real_prompts():
    loaded = smollm2("bfloat16", "lean-invariant")
    prompts = [
        next(p for p in builtin_prompts() if p.category == c and len(p.turns) == 1)
        for c in ("extraction", "coding", "summarization")
    ]
    spec = decoder_on(loaded, DrafterConfig("prompt-lookup"), k=5)
    accepted = 0
    for prompt in prompts:
        got, rounds = decode(spec, prompt)
        assert got == decode(decoder_on(loaded), prompt)[0], prompt.id
        accepted += sum(r.n_accepted for r in rounds)
    assert accepted > 0  # several-row verifies really kept drafted tokens


def test_q4_blocks_decode_to_the_weights_transformers_dequantizes():
    """Reading the GGUF's Q4_1 blocks (codes, d, m; q/k rows unpermuted) gives exactly the
    float32 weights transformers loads; the kernel multiplies by the documented mapping
    (scale = d, zero = m + 8 d, both rounded to bf16)."""
    dense = smollm2("float32", "transformers").model
    tensors = gguf_tensors(embedded_gguf("smollm2-135m"))
    names = {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    for i in (0, 29):
        for key, weight in layer_weights(tensors, i, 9, 3).items():
            want = dense.get_submodule(f"model.layers.{i}.{names[key]}").weight.detach()
            assert torch.equal(torch.from_numpy(weight.dequantized()), want), (i, key)
    weight = layer_weights(tensors, 0, 9, 3)["ffn_down"]
    kernel = Int4.of([weight], None, torch.bfloat16)
    d = torch.from_numpy(weight.d).bfloat16().float().repeat_interleave(32, dim=1)
    zero = torch.from_numpy(weight.m + 8 * weight.d).bfloat16().float()
    documented = (torch.from_numpy(weight.codes.astype(np.float32)) - 8) * d
    documented += zero.repeat_interleave(32, dim=1)
    x = torch.randn(3, weight.codes.shape[1]).bfloat16()
    torch.testing.assert_close(kernel(x).float(), x.float() @ documented.T, atol=0.05, rtol=0.01)
    # the tied output layer: Q8_0 blocks, as two int4 matrices with only d rounded to bf16
    raw, (rows, cols), kind = tensors["token_embd.weight"]
    head = read_q8_0(raw, rows, cols)
    assert kind == "Q8_0"
    assert torch.equal(torch.from_numpy(head.dequantized()), dense.lm_head.weight.detach())
    d = torch.from_numpy(head.d).bfloat16().float().repeat_interleave(32, dim=1)
    documented = torch.from_numpy(head.codes.astype(np.float32)) * d
    x = x[:, :cols].contiguous()
    got = Int4Pair.of(head, torch.bfloat16)(x)
    torch.testing.assert_close(
        got.float(), x[:, :cols].float() @ documented.T, atol=0.05, rtol=0.01
    )


def test_q4_decodes_sensible_greedy_text_on_the_lean_engine():
    loaded = smollm2("q4")
    # auto in reduced precision is row-invariant: exact greedy speculation by default
    assert loaded.engine == "lean-invariant" and "q4" in loaded.dtype_reason
    prompt = next(p for p in builtin_prompts() if p.category == "extraction")
    tokens, _ = decode(decoder_on(loaded), prompt)
    reference, _ = decode(decoder_on(smollm2("float32")), prompt)
    # a slightly different model (2^-9 rounding of its scales): it starts as float32 does
    assert tokens[0][:8] == reference[0][:8]


def test_auto_engine_keeps_greedy_speculation_exact_in_bf16_and_plain_lean_in_float32():
    assert smollm2("bfloat16").engine == "lean-invariant"
    assert "exact greedy speculation" in smollm2("bfloat16").engine_reason
    assert smollm2("float32").engine == "lean"
