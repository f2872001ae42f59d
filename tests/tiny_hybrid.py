"""A tiny random Falcon-H1 (attention and Mamba-2 side by side in every layer), saved with
save_pretrained and loaded through the same code path as users' models.

It shares the character-level tokenizer of :mod:`tiny_models`. On the CPU transformers runs its
Mamba-2 with the PyTorch fallback (no ``mamba_ssm``/``causal_conv1d`` kernels): the code path a
GPU without those kernels takes too. The LM head is scaled up, as for the tiny Qwen2, so greedy
choices are not near ties. At random initialisation the Mamba-2 path contributes about a
hundredth of what attention does, so its output multiplier is raised (and attention's lowered)
until both matter: then the Mamba-only and the attention-only drafts each agree with the full
model in some rounds and not in others.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import tiny_settings, tiny_tokenizer
from transformers import (
    BambaConfig,
    BambaForCausalLM,
    Cache,
    FalconH1Config,
    FalconH1ForCausalLM,
    PreTrainedModel,
)

# Mamba-2 mixer settings both tiny hybrids share
MAMBA = {
    "mamba_n_heads": 4,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 1,
    "mamba_chunk_size": 16,
}


def tiny_hybrid_config(layers: int = 4, hidden: int = 64) -> FalconH1Config:
    return FalconH1Config(
        vocab_size=128,
        mamba_d_ssm=hidden,
        attention_out_multiplier=0.5,
        ssm_out_multiplier=100.0,
        **MAMBA,
        **tiny_settings(hidden, layers),
    )


def _save_tiny(model: PreTrainedModel, root: Path) -> Path:
    """Save a tiny random ``model`` (its logits sharpened 8x, eos = 2) and the tiny tokenizer
    under ``root``."""
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(root)
    tiny_tokenizer().save_pretrained(root)
    return root


def build_tiny_hybrid(root: Path, seed: int = 0) -> Path:
    """Save a tiny random FalconH1ForCausalLM and the tiny tokenizer under ``root``."""
    torch.manual_seed(seed)
    return _save_tiny(FalconH1ForCausalLM(tiny_hybrid_config()), root)


def build_tiny_hybrid_draft(target_dir: Path, root: Path, seed: int = 1) -> Path:
    """A draft for the tiny Falcon-H1: its weights plus noise (same tokenizer and layout), so it
    proposes what the target would in many rounds but not all."""
    torch.manual_seed(seed)
    draft = FalconH1ForCausalLM.from_pretrained(target_dir)
    with torch.no_grad():
        for param in draft.parameters():
            param.add_(0.05 * param.std() * torch.randn_like(param))
    draft.save_pretrained(root)
    tiny_tokenizer().save_pretrained(root)
    return root


def build_tiny_bamba(root: Path, seed: int = 0) -> Path:
    """A tiny random BambaForCausalLM: attention in layers 0 and 2, Mamba-2 in layers 1 and 3
    (a hybrid that interleaves layers instead of running both in each)."""
    torch.manual_seed(seed)
    config = BambaConfig(vocab_size=128, attn_layer_indices=[0, 2], **MAMBA, **tiny_settings())
    return _save_tiny(BambaForCausalLM(config), root)


def cache_tensors(cache: Cache) -> dict[str, torch.Tensor]:
    """Every tensor of a hybrid cache by name: keys/values (attention), conv and ssm (Mamba)."""
    out: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(cache.layers):
        if hasattr(layer, "keys"):
            out[f"{i}.keys"] = layer.keys
            out[f"{i}.values"] = layer.values
        if hasattr(layer, "conv_states"):
            out[f"{i}.conv"] = layer.conv_states[0]
            out[f"{i}.ssm"] = layer.recurrent_states[0]
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two caches' tensors (inf when shapes differ)."""
    worst = 0.0
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            return float("inf")
        worst = max(worst, float((x - y).abs().max()))
    return worst
