"""The lean engine: a forward of specviz's own for Llama-family models (docs/engine.md).

:func:`build` lays a loaded transformers model's weights out for :class:`LeanModel`;
:func:`attach` records that a transformers model runs on it. :mod:`specviz.forward` asks
:func:`lean_of` for every model it is handed: a model with a lean engine gets a
:class:`LeanCache` from ``new_cache`` and its forwards run here; any other model (every other
architecture, a copy made by ``--draft-quant``, a model loaded with ``engine="transformers"``)
runs on transformers as before. The record is kept beside the model (a weak mapping), not on it,
so a deep copy of the model (:func:`specviz.models.quantized_copy`) does not carry an engine whose weights are
the original's.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from transformers import PreTrainedModel

from specviz.lean.cache import LayerKV, LeanCache
from specviz.lean.model import Dense, Layer, LeanModel, Rope, Shape, linears_for

__all__ = ["LayerKV", "LeanCache", "LeanModel", "attach", "build", "lean_of", "unsupported"]

ARCHITECTURES = ("llama", "qwen2")  # config.model_type values the lean forward implements
STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inv_freq fixed at load time

_ENGINES: weakref.WeakKeyDictionary[nn.Module, LeanModel] = weakref.WeakKeyDictionary()


def attach(model: PreTrainedModel, lean: LeanModel) -> None:
    _ENGINES[model] = lean


def lean_of(model: nn.Module) -> LeanModel | None:
    """The lean engine ``model`` runs on, or None (transformers)."""
    return _ENGINES.get(model)


def unsupported(model: PreTrainedModel) -> str | None:
    """Why the lean forward cannot run ``model`` exactly as transformers does, or None."""
    config = model.config
    kind = getattr(config, "model_type", None)
    if kind not in ARCHITECTURES:
        return f"architecture {kind!r} is not one of {', '.join(ARCHITECTURES)}"
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in STATIC_ROPE:
        return f"RoPE type {rope!r} is not one of {', '.join(STATIC_ROPE)}"
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"} or getattr(config, "use_sliding_window", False):
        return "sliding-window attention layers"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not silu"
    if getattr(config, "mlp_bias", False):
        return "MLP biases"
    return None


def fuse(linears: list[nn.Linear]) -> Dense:
    """One matrix for several linear layers that read the same input; each layer's parameters
    become views of it, so the weights are stored once."""
    weight = torch.cat([m.weight.detach() for m in linears])
    biases = [m.bias for m in linears]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat(
            [
                m.bias.detach() if m.bias is not None else m.weight.new_zeros(m.out_features)
                for m in linears
            ]
        )
    row = 0
    for m in linears:
        n = m.out_features
        m.weight.data = weight[row : row + n]
        if m.bias is not None and bias is not None:
            m.bias.data = bias[row : row + n]
        row += n
    return Dense(weight, bias)


def dense(linear: nn.Linear) -> Dense:
    return Dense(linear.weight.detach(), None if linear.bias is None else linear.bias.detach())


def shape_of(model: PreTrainedModel) -> Shape:
    config = model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return Shape(heads, kv_heads, head_dim, float(config.rms_norm_eps))


def build(model: PreTrainedModel) -> LeanModel:
    """The lean forward over ``model``'s own (dense) weights, bf16 ones laid out for specviz's
    kernel or oneDNN (:func:`specviz.lean.model.linears_for`); check :func:`unsupported` first."""
    inner = model.model
    linears = linears_for(model.dtype, model.device)
    layers = []
    with torch.no_grad():
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            layers.append(
                Layer(
                    attn_norm=layer.input_layernorm.weight.detach(),
                    qkv=linears.make(fuse([attn.q_proj, attn.k_proj, attn.v_proj])),
                    o=linears.make(dense(attn.o_proj)),
                    mlp_norm=layer.post_attention_layernorm.weight.detach(),
                    gate_up=linears.make(fuse([mlp.gate_proj, mlp.up_proj])),
                    down=linears.make(dense(mlp.down_proj)),
                )
            )
    rotary = inner.rotary_emb
    rope = Rope(rotary.inv_freq, float(rotary.attention_scaling), model.dtype)
    engine = LeanModel(
        layers,
        inner.embed_tokens.weight.detach(),
        inner.norm.weight.detach(),
        linears.make(dense(model.lm_head)),
        rope,
        shape_of(model),
        inner.layers,
        "dense",
    )
    engine.linears_note = linears.note
    engine.kernels = linears.library
    return engine
