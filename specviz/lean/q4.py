"""``--dtype q4``: a GGUF's Q4_1 weights run as the file stores them, in torch's int4 CPU kernel.

A Q4_1 block holds 32 weights of one row as 4-bit codes ``q`` (0..15) with an fp16 scale ``d``
and minimum ``m``: ``w = d * q + m``. torch's int4 kernel
(``torch.ops.aten._weight_int4pack_mm_for_cpu``, weights packed by
``_convert_weight_to_int4pack_for_cpu``, groups of 32 along the input) computes
``w = (q - 8) * scale + zero`` per group, so ``scale = d`` and ``zero = m + 8 d``: the same codes,
the same groups. The kernel takes its scales and zeros in the activations' dtype, bf16 here, so
``d`` and ``m + 8 d`` are rounded from fp16 (11 significant bits) to bf16 (8): the weights the
kernel multiplies differ from the file's by up to 2^-9 of a group's scale or zero
(docs/engine.md gives the measured error and the top-1 agreement with the float32 model). The
kernel also runs with float32 activations and scales, which would reproduce the file's weights
exactly, but measured ~40x slower than bf16 on an avx512_bf16 CPU, so that is not offered.

A Q8_0 output layer (SmolLM2's is its tied Q8_0 token embedding) runs as two int4 matrices
(:class:`Int4Pair`), only its ``d`` rounded to bf16. Everything else stays as transformers loaded
it (dequantized, in bf16): the embedding lookup and the norms.
Llama's q and k rows are stored permuted for llama.cpp's RoPE layout; they are put back in
transformers' order as transformers' own GGUF loader does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from specviz.lean.model import Layer, LeanModel
from specviz.model_source import ModelLoadError

GROUP = 32  # weights per Q4_1 block and per int4 kernel group
INNER_K_TILES = 2  # the packing's inner K tiles (what the CPU kernel expects)


@dataclass(frozen=True)
class Q4Weight:
    """A Q4_1 matrix ``(out, in)``: codes 0..15 with one ``d`` and ``m`` per block of 32 inputs
    (fp16 in the file, float32 here)."""

    codes: np.ndarray  # (out, in) uint8
    d: np.ndarray  # (out, in / 32) float32
    m: np.ndarray  # (out, in / 32) float32

    def dequantized(self) -> np.ndarray:
        """``d * q + m``, what transformers loads (float32)."""
        blocks = self.codes.reshape(self.codes.shape[0], -1, GROUP).astype(np.float32)
        w = self.d[..., None] * blocks + self.m[..., None]
        return w.reshape(self.codes.shape)

    def rows(self, order: np.ndarray) -> Q4Weight:
        return Q4Weight(self.codes[order], self.d[order], self.m[order])


def read_q4_1(raw: np.ndarray, out_features: int, in_features: int) -> Q4Weight:
    """Decode a GGUF Q4_1 tensor's bytes (``(out, in / 32 * 20)`` uint8: per block ``d``,
    ``m`` as fp16, then 16 bytes of codes: low nibbles weights 0..15, high nibbles 16..31)."""
    blocks = np.ascontiguousarray(raw).reshape(out_features, in_features // GROUP, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    packed = blocks[..., 4:]
    codes = np.concatenate([packed & 0x0F, packed >> 4], axis=-1)
    return Q4Weight(codes.reshape(out_features, in_features), d, m)


def unpermute(n: int, heads: int) -> np.ndarray:
    """Row order undoing llama.cpp's q/k permutation (transformers' ``_reverse_permute_weights``
    applied to row indices)."""
    dim = n // heads // 2
    return np.arange(n).reshape(heads, dim, 2).swapaxes(2, 1).reshape(n)


@dataclass(frozen=True)
class Int4:
    """``x @ w.T (+ bias)`` with ``w`` in torch's packed int4 layout (bf16 activations)."""

    packed: torch.Tensor
    scales_zeros: torch.Tensor  # (in / 32, out, 2): scale, zero
    bias: torch.Tensor | None
    in_features: int
    activation_dtype: torch.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_zeros)
        return y if self.bias is None else y + self.bias

    @staticmethod
    def of(weights: list[Q4Weight], bias: torch.Tensor | None, dtype: torch.dtype) -> Int4:
        """One kernel matrix for ``weights`` stacked by rows (fused q/k/v, gate/up)."""
        codes = np.concatenate([w.codes for w in weights])
        d = np.concatenate([w.d for w in weights])
        m = np.concatenate([w.m for w in weights])
        return Int4.pack(codes, d, m + 8 * d, bias, dtype)

    @staticmethod
    def pack(
        codes: np.ndarray,
        scale: np.ndarray,
        zero: np.ndarray,
        bias: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> Int4:
        """``w = (codes - 8) * scale + zero``, ``scale`` and ``zero`` per block of 32 inputs."""
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            torch.from_numpy(codes.astype(np.int32)), INNER_K_TILES
        )
        pairs = torch.stack([torch.from_numpy(scale), torch.from_numpy(zero)], dim=-1)
        return Int4(
            packed, pairs.transpose(0, 1).contiguous().to(dtype), bias, codes.shape[1], dtype
        )

    def weight(self) -> torch.Tensor:
        """The weights the kernel multiplies by, ``(out, in)`` float32 (an identity through it)."""
        eye = torch.eye(self.in_features, dtype=self.activation_dtype)
        saved = self.bias
        object.__setattr__(self, "bias", None)
        try:
            return self(eye).float().T.contiguous()
        finally:
            object.__setattr__(self, "bias", saved)


@dataclass(frozen=True)
class Q8Weight:
    """A Q8_0 matrix ``(out, in)``: int8 codes with one ``d`` per block of 32 (``w = d * q``)."""

    codes: np.ndarray  # (out, in) int8
    d: np.ndarray  # (out, in / 32) float32

    def dequantized(self) -> np.ndarray:
        blocks = self.codes.reshape(self.codes.shape[0], -1, GROUP).astype(np.float32)
        return (self.d[..., None] * blocks).reshape(self.codes.shape)


def read_q8_0(raw: np.ndarray, out_features: int, in_features: int) -> Q8Weight:
    """Decode a GGUF Q8_0 tensor's bytes (per block of 32: ``d`` as fp16, then 32 int8 codes)."""
    blocks = np.ascontiguousarray(raw).reshape(out_features, in_features // GROUP, 34)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    codes = blocks[..., 2:].copy().view(np.int8)
    return Q8Weight(codes.reshape(out_features, in_features), d)


@dataclass(frozen=True)
class Int4Pair:
    """A Q8_0 matrix as two int4 kernel matrices: with ``u = q + 128 = 16 hi + lo``,
    ``d q = (hi - 8) 16d + (lo - 8) d + 8d``: the high nibbles with scale ``16 d`` and zero 0, the
    low ones with scale ``d`` and zero ``8 d``. Only ``d`` is rounded (to bf16; ``16 d`` and
    ``8 d`` are exact multiples of it); the two products are summed in float32. Measured on an
    avx512_bf16 CPU for SmolLM2's 49152 x 576 output layer, one row: ~1.7 ms a kernel call
    against 4.5-4.8 for the bf16 matrix (oneDNN, packed)."""

    high: Int4
    low: Int4
    in_features: int
    activation_dtype: torch.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.high(x).float() + self.low(x).float()).to(self.activation_dtype)

    @staticmethod
    def of(w: Q8Weight, dtype: torch.dtype) -> Int4Pair:
        u = w.codes.astype(np.int16) + 128
        d = w.d
        high = Int4.pack(u >> 4, 16 * d, np.zeros_like(d), None, dtype)
        low = Int4.pack(u & 0x0F, d, 8 * d, None, dtype)
        return Int4Pair(high, low, w.codes.shape[1], dtype)


Tensors = dict[str, tuple[np.ndarray, tuple[int, int], str]]


def gguf_tensors(path: Path) -> Tensors:
    """The Q4_1 and Q8_0 tensors of a GGUF file: name -> (raw bytes, (out, in), type name)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    kinds = (gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0)
    found = {}
    for tensor in reader.tensors:
        if tensor.tensor_type in kinds:
            in_features, out_features = (int(x) for x in tensor.shape[:2])
            shape = (out_features, in_features)
            found[tensor.name] = (np.asarray(tensor.data), shape, tensor.tensor_type.name)
    return found


def output_layer(tensors: Tensors, tied: bool, dtype: torch.dtype) -> Int4Pair | None:
    """The LM head as the file stores it, where it is Q8_0 (``output.weight``, or the token
    embedding when tied); None (keep the dense bf16 head) otherwise."""
    name = "token_embd.weight" if tied else "output.weight"
    if name not in tensors or tensors[name][2] != "Q8_0":
        return None
    raw, (rows, cols), _ = tensors[name]
    return Int4Pair.of(read_q8_0(raw, rows, cols), dtype)


def layer_weights(tensors: Tensors, i: int, heads: int, kv_heads: int) -> dict[str, Q4Weight]:
    """Layer ``i``'s seven matrices, q/k rows in transformers' order."""
    names = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    out = {}
    for name in names:
        key = f"blk.{i}.{name}.weight"
        if key not in tensors or tensors[key][2] != "Q4_1":
            raise ModelLoadError(f"--dtype q4 needs Q4_1 weights, and {key} is not Q4_1")
        raw, (rows, cols), _ = tensors[key]
        out[name] = read_q4_1(raw, rows, cols)
    out["attn_q"] = out["attn_q"].rows(unpermute(out["attn_q"].codes.shape[0], heads))
    out["attn_k"] = out["attn_k"].rows(unpermute(out["attn_k"].codes.shape[0], kv_heads))
    return out


def bias_of(*linears: torch.nn.Linear) -> torch.Tensor | None:
    if all(m.bias is None for m in linears):
        return None
    return torch.cat(
        [
            m.bias.detach() if m.bias is not None else m.weight.new_zeros(m.out_features)
            for m in linears
        ]
    )


def build_q4(model: PreTrainedModel, path: Path) -> LeanModel:
    """The lean forward of ``model`` (loaded in bf16 from ``path``) with its linear layers in the
    file's Q4_1 blocks; refuses a file whose layers are not all Q4_1 or not Llama-ordered."""
    from specviz.lean import build

    if model.config.model_type != "llama":
        raise ModelLoadError("--dtype q4 reads Llama-family GGUF files (SmolLM2, Llama) only")
    lean = build(model)  # dense layout first: norms, embeddings, LM head, RoPE
    tensors = gguf_tensors(path)
    s = lean.shape
    dtype = model.dtype
    layers = []
    for i, (layer, module) in enumerate(zip(lean.layers, model.model.layers, strict=True)):
        w = layer_weights(tensors, i, s.heads, s.kv_heads)
        attn = module.self_attn
        layers.append(
            Layer(
                attn_norm=layer.attn_norm,
                qkv=Int4.of(
                    [w["attn_q"], w["attn_k"], w["attn_v"]],
                    bias_of(attn.q_proj, attn.k_proj, attn.v_proj),
                    dtype,
                ),
                o=Int4.of([w["attn_output"]], bias_of(attn.o_proj), dtype),
                mlp_norm=layer.mlp_norm,
                gate_up=Int4.of([w["ffn_gate"], w["ffn_up"]], None, dtype),
                down=Int4.of([w["ffn_down"]], None, dtype),
            )
        )
    lean.layers = layers
    head = output_layer(tensors, bool(model.config.tie_word_embeddings), dtype)
    if head is not None:
        lean.lm_head = head
    lean.weights = "q4"
    return lean
