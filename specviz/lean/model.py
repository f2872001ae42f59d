"""A lean forward for Llama-family decoders (Llama, SmolLM2, Qwen2), over the model's own weights.

What it computes is what transformers' ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` compute
(RMSNorm in float32 then cast, RoPE from the model's own ``inv_freq``, grouped-query attention,
SiLU-gated MLP, tied or untied LM head, q/k/v biases where the model has them), in the model's
dtype, without transformers' per-call machinery (mask builders, cache classes, output objects):

- weights are laid out once: q/k/v fused into one matrix and gate/up into another (the
  transformers model's parameters become views of the fused matrices, so no weight is stored
  twice), or the GGUF's own 4-bit blocks (:mod:`specviz.lean.q4`);
- the KV cache is preallocated (:mod:`specviz.lean.cache`), written in place;
- RoPE's cos/sin are a table computed once for all positions up to the longest context seen.

bf16 linear layers run on specviz's own kernel (:mod:`specviz.lean.kernel`: AVX512-BF16, one
thread) where it runs, else on oneDNN's packed GEMM (:func:`linears_for` says which, and why, in
``run.json``'s ``engine_reason``); on the kernel, RMSNorm, RoPE with the cache writes, and the
row-by-row attention run in the same C library (fewer torch calls a layer, the same bits).

Exact greedy speculation in reduced precision (``row_invariant``, ``--engine lean-invariant``):
a forward over several rows computes every row bit for bit as a one-row forward does. On
specviz's kernel that holds by construction (every row's arithmetic is the same whatever the
row count), so a pass carries exactly the rows it is given. Otherwise every
forward but a prefill runs in passes of exactly ``pad_rows`` rows (padding rows after the real
ones; a longer feed takes several passes), so the linear layers always run one GEMM shape;
attention runs row by row, each row over its own prefix, in a one-row forward's shapes
(:func:`attend_rows`). Measured on an avx512_bf16 CPU
(SmolLM2-135M, bf16): oneDNN gives a row different bits at one row than at eight for the
1536-wide ``down`` projection in ~10% of random inputs, and the same bits at every position of
an 8-row GEMM in 100 of 100; a masked 6-row attention differs from six one-row attentions by up
to 0.5 in a logit. A prefill (``last_only``) is exempt: plain decoding and speculation prefill
the same prompt the same way.

Because a row's bits depend on nothing else in its pass, one pass may carry the rows of several
sequences (:meth:`LeanModel.forward_many`, each feed with its own cache and positions): the
lanes of co-decoding (:mod:`specviz.lean.batch`) fill the 8-row passes a lone verify would pad.

Layer-skip drafting swaps layers of the transformers model for an identity
(:func:`specviz.drafters.layer_skip.only_layers`); a layer swapped out there is run here as the
module that replaced it, so the same surgery drives both engines.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from specviz.lean.cache import GROW_TO, LayerKV, LeanCache
from specviz.lean.kernel import KernelLinear, Library, Unavailable, linear_kernel

Linear = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Dense:
    """``x @ weight.T + bias`` (``F.linear``: oneDNN/MKL on the CPU)."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    row_invariant = False  # a row's bits may depend on the row count (class attribute)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def activation_dtype(self) -> torch.dtype:
        return self.weight.dtype


@dataclass(frozen=True)
class Packed:
    """``F.linear`` with the weight reordered once into oneDNN's blocked layout (bf16 on a CPU
    with native bf16): ``torch.ops.mkldnn._linear_pointwise``, the kernel torch.compile's CPU
    backend uses for frozen weights. Measured on an avx512_bf16 CPU (SmolLM2-135M's 211 linear
    layers, one thread, CPU time): 25 ms at one row and 25 at eight, against 38 and 44 for
    ``F.linear`` on the same bf16 weights. The reordered copy is a second copy of the weights
    (the transformers model keeps its own). A row's bits depend on the row count (the 1536-wide
    ``down`` projection differed between one row and eight in ~10% of random inputs)."""

    weight: torch.Tensor  # an opaque mkldnn tensor
    bias: torch.Tensor | None
    in_features: int
    activation_dtype: torch.dtype
    row_invariant = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


PACK_ROWS = 8  # the row count oneDNN is told to expect when it reorders a weight


def packed(dense: Dense) -> Linear:
    """``dense`` as a :class:`Packed` layer where oneDNN computes bf16 natively, else itself
    (float32 keeps ``F.linear``: oneDNN's packed float32 path was not faster here)."""
    if dense.weight.dtype != torch.bfloat16 or dense.weight.device.type != "cpu":
        return dense
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return dense
    weight = torch.ops.mkldnn._reorder_linear_weight(dense.weight, PACK_ROWS)
    return Packed(weight, dense.bias, dense.in_features, dense.activation_dtype)


@dataclass(frozen=True)
class Linears:
    """How a model's dense linear layers run (``make`` lays one out), one line saying so
    (``note``, part of run.json's ``engine_reason``; empty for float32) and specviz's kernel
    library when they run on it (its attention then runs the rows of row-invariant passes)."""

    make: Callable[[Dense], Linear]
    note: str
    library: Library | None = None


def linears_for(dtype: torch.dtype, device: torch.device) -> Linears:
    """bf16 on the CPU: specviz's kernel (:mod:`specviz.lean.kernel`) where it runs, else
    oneDNN's packed GEMM (:func:`packed`), with the reason; float32 and other devices: ``F.linear``.

    The kernel is chosen where torch runs one thread (it is one-threaded; oneDNN splits a
    product between threads): measured on an avx512_bf16 CPU, one thread, SmolLM2-135M's
    matrices took less CPU time on it than on oneDNN at one row (the forward's common case) and
    about as much at six (``bench/bf16_kernel.py``), and its rows are row-invariant by
    construction, so ``lean-invariant`` needs no padding to a fixed row count."""
    if dtype != torch.bfloat16 or device.type != "cpu":
        return Linears(packed, "")
    found = linear_kernel()
    threads = torch.get_num_threads()
    if isinstance(found, Library) and threads == 1:
        return Linears(
            functools.partial(kernel_linear, found),
            "bf16 linear layers on specviz's AVX512-BF16 kernel",
            found,
        )
    why = found.reason if isinstance(found, Unavailable) else f"one-threaded, torch runs {threads}"
    backend = "oneDNN" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "F.linear"
    return Linears(packed, f"bf16 linear layers on {backend} (specviz's kernel: {why})")


def kernel_linear(library: Library, dense: Dense) -> Linear:
    return KernelLinear.of(library, dense.weight, dense.bias)


@dataclass(frozen=True)
class Shape:
    """The sizes a forward needs."""

    heads: int
    kv_heads: int
    head_dim: int
    eps: float

    @property
    def groups(self) -> int:
        return self.heads // self.kv_heads


@dataclass(frozen=True)
class Layer:
    """One decoder layer's weights."""

    attn_norm: torch.Tensor
    qkv: Linear
    o: Linear
    mlp_norm: torch.Tensor
    gate_up: Linear
    down: Linear


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalise in float32 (one fused ``F.rms_norm``), cast back,
    then scale."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as transformers applies it (``x * cos + rotate_half(x) * sin``); ``x`` is
    ``(heads, rows, head_dim)``, ``cos``/``sin`` ``(rows, head_dim)``."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Rope:
    """cos/sin of every position up to the longest context seen, from the model's ``inv_freq``
    and ``attention_scaling`` (so every static RoPE variant transformers implements is the
    model's own), computed as transformers does (float32 products, then cast)."""

    def __init__(self, inv_freq: torch.Tensor, scaling: float, dtype: torch.dtype) -> None:
        self.inv_freq = inv_freq.float()
        self.scaling = scaling
        self.dtype = dtype
        self.cos = torch.empty(0, 2 * len(inv_freq), dtype=dtype, device=inv_freq.device)
        self.sin = self.cos

    def _grow(self, end: int) -> None:
        """Extend the table to cover positions ``[0, end)``."""
        if end <= self.cos.shape[0]:
            return
        size = max(2 * self.cos.shape[0], -(-end // GROW_TO) * GROW_TO)
        positions = torch.arange(size, device=self.inv_freq.device).float()
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = (emb.cos() * self.scaling).to(self.dtype)
        self.sin = (emb.sin() * self.scaling).to(self.dtype)

    def at(self, start: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._grow(start + rows)
        return self.cos[start : start + rows], self.sin[start : start + rows]

    def of(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of each position in ``positions`` (1-D, any order): the same table rows."""
        self._grow(int(positions.max()) + 1)
        return self.cos[positions], self.sin[positions]


class LeanModel:
    """The forward of one Llama-family model; :func:`specviz.lean.lean_model` builds it."""

    def __init__(
        self,
        layers: list[Layer],
        embed: torch.Tensor,
        norm: torch.Tensor,
        lm_head: Linear,
        rope: Rope,
        shape: Shape,
        swappable: nn.ModuleList,
        weights: str,
    ) -> None:
        self.layers = layers
        self.embed = embed
        self.norm = norm
        self.lm_head = lm_head
        self.rope = rope
        self.shape = shape
        self.swappable = swappable  # the transformers model's layer list (layer-skip surgery)
        self.originals = list(swappable)
        self.weights = weights  # "dense" (the model's own tensors) or "q4" (the GGUF's blocks)
        self.row_invariant = False
        self.pad_rows = 0  # >0: linear layers always run at this many rows (row_invariant)
        self.reason = ""  # why it runs here (run.json's engine_reason)
        self.linears_note = ""  # what computes its linear layers, when worth saying (reason)
        # specviz's kernel library where it runs: RMSNorm, and RoPE, cache writes and attention
        # of row-invariant passes run on it (one row at a time, row-invariant)
        self.kernels: Library | None = None

    @property
    def name(self) -> str:
        return "lean-invariant" if self.row_invariant else "lean"

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    def new_cache(self) -> LeanCache:
        s = self.shape
        device = self.embed.device
        return LeanCache(
            self, [LayerKV(s.kv_heads, s.head_dim, torch.float32, device) for _ in self.layers]
        )

    def linears(self) -> list[Linear]:
        """Every linear layer of the forward (the output layer last)."""
        inner = [
            f for layer in self.layers for f in (layer.qkv, layer.o, layer.gate_up, layer.down)
        ]
        return [*inner, self.lm_head]

    def make_row_invariant(self, pad_rows: int) -> None:
        """Compute every row as a one-row forward would (see the module docstring): every
        forward but a prefill runs in passes of exactly ``pad_rows`` rows, unless every linear
        layer is row-invariant by construction (specviz's bf16 kernel): then a pass carries
        exactly the rows it is given."""
        self.row_invariant = True
        invariant = all(getattr(f, "row_invariant", False) for f in self.linears())
        self.pad_rows = 0 if invariant else pad_rows

    @property
    def invariance(self) -> str:
        """How a row-invariant engine keeps rows independent (run.json's engine_reason)."""
        if self.pad_rows:
            return f"every forward in passes of {self.pad_rows} rows, attention row by row"
        return "linear layers row-invariant by construction, attention row by row"

    def forward(
        self, tokens: torch.Tensor, cache: LeanCache, start: int, last_only: bool = False
    ) -> torch.Tensor:
        """Logits of ``tokens`` (1-D) fed at positions ``start..`` (one row per token, or the
        last only); their keys and values are appended to ``cache``."""
        if self.row_invariant and not last_only:
            return self.forward_many([Feed(tokens, cache, start)])[0]
        return self._forward(tokens, cache, start, last_only)

    def forward_many(self, feeds: Sequence[Feed]) -> list[torch.Tensor]:
        """Logits of every feed (one row per token), each feed appended to its own cache at its
        own positions; row-invariant engines only.

        The feeds' rows, in order (feed by feed, a feed's rows in order), are cut into passes
        of exactly ``pad_rows`` rows (the last padded), so a pass may hold the end of one feed
        and the start of the next: the linear layers compute a row the same wherever it sits
        in an 8-row GEMM, and attention runs each row alone in a one-row forward's shapes
        (:func:`attend_rows`), so every row gets the bits of a one-row forward."""
        if not self.row_invariant:
            raise ValueError("forward_many runs on a row-invariant lean engine only")
        rows = [(f, j) for f, feed in enumerate(feeds) for j in range(len(feed.tokens))]
        size = self.pad_rows or max(1, len(rows))
        out: list[torch.Tensor] = []
        for first in range(0, len(rows), size):
            out.append(self._pass(feeds, rows[first : first + size]))
        logits = torch.cat(out) if len(out) > 1 else out[0]
        return list(logits.split([len(feed.tokens) for feed in feeds]))

    def _pass(self, feeds: Sequence[Feed], rows: list[tuple[int, int]]) -> torch.Tensor:
        """One padded pass over ``rows`` ((feed, row of the feed) pairs, in order)."""
        real = len(rows)
        width = max(self.pad_rows, real)
        tokens = feeds[0].tokens.new_zeros(width)
        positions = torch.zeros(width, dtype=torch.long, device=tokens.device)
        segments: list[Segment] = []
        for i, (f, j) in enumerate(rows):
            feed = feeds[f]
            tokens[i] = feed.tokens[j]
            positions[i] = feed.start + j
            if segments and segments[-1].feed == f:
                last = segments[-1]
                segments[-1] = Segment(f, feed.cache, last.first, last.rows + 1)
            else:
                segments.append(Segment(f, feed.cache, i, 1))
        h = F.embedding(tokens, self.embed)
        cos, sin = self.rope.of(positions)
        for i, layer in enumerate(self.layers):
            module = self.swappable[i]
            if module is not self.originals[i]:  # swapped out by layer-skip surgery
                h = module(h)
                continue
            h = self._layer_rows(layer, h, i, segments, cos, sin, real)
        return self.lm_head(self._norm(h, self.norm))[:real]

    def _forward(
        self, tokens: torch.Tensor, cache: LeanCache, start: int, last_only: bool
    ) -> torch.Tensor:
        h = F.embedding(tokens, self.embed)
        cos, sin = self.rope.at(start, len(tokens))
        for i, layer in enumerate(self.layers):
            module = self.swappable[i]
            if module is not self.originals[i]:  # swapped out by layer-skip surgery
                h = module(h)
                continue
            h = self._layer(layer, h, cache.layers[i], cos, sin)
        if last_only:
            return self.lm_head(self._norm(h[-1:], self.norm))
        return self.lm_head(self._norm(h, self.norm))

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """:func:`rms_norm`, in specviz's kernel library where the engine has it (one C call
        instead of ~6 torch operations, ~18 us a call here)."""
        if self.kernels is None:
            return rms_norm(x, weight, self.shape.eps)
        return self.kernels.rms_norm(x, weight, self.shape.eps)

    def _qkv(
        self, layer: Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotated queries ``(heads, rows, dim)``, keys and values ``(kv_heads, rows, dim)``."""
        s = self.shape
        rows = h.shape[0]
        qkv = layer.qkv(self._norm(h, layer.attn_norm))
        width = (s.heads + s.kv_heads) * s.head_dim  # q and k, rotated together
        qk = qkv[:, :width].view(rows, s.heads + s.kv_heads, s.head_dim).transpose(0, 1)
        qk = rotate(qk, cos, sin)
        v = qkv[:, width:].view(rows, s.kv_heads, s.head_dim).transpose(0, 1)
        return qk[: s.heads], qk[s.heads :], v

    def _rest(self, layer: Layer, h: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        h = h + layer.o(attended)
        return h + mlp(layer, self._norm(h, layer.mlp_norm))

    def _layer(
        self,
        layer: Layer,
        h: torch.Tensor,
        kv: LayerKV,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        q, k, v = self._qkv(layer, h, cos, sin)
        before = kv.length
        keys, values = kv.append(k, v)
        return self._rest(layer, h, attend(q, keys, values, before, self.shape.groups))

    def _layer_rows(
        self,
        layer: Layer,
        h: torch.Tensor,
        index: int,
        segments: list[Segment],
        cos: torch.Tensor,
        sin: torch.Tensor,
        real: int,
    ) -> torch.Tensor:
        """Layer ``index`` of a padded pass: each segment's keys and values are appended to
        its own cache, then every real row attends alone (:func:`attend_rows`)."""
        if self.kernels is not None:
            return self._layer_rows_in_kernels(layer, h, index, segments, cos, sin)
        q, k, v = self._qkv(layer, h, cos, sin)
        spans = []
        for seg in segments:
            kv = seg.cache.layers[index]
            kv.append(
                k[:, seg.first : seg.first + seg.rows], v[:, seg.first : seg.first + seg.rows]
            )
            spans.append((kv, seg.rows))
        attended = self._attend_rows(q[:, :real], spans)
        if real < h.shape[0]:  # padding rows attend to nothing
            attended = torch.cat(
                [attended, attended.new_zeros(h.shape[0] - real, attended.shape[1])]
            )
        return self._rest(layer, h, attended)

    def _layer_rows_in_kernels(
        self,
        layer: Layer,
        h: torch.Tensor,
        index: int,
        segments: list[Segment],
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`_layer_rows` with RoPE, the cache writes and attention in specviz's kernel
        library (the same bits as the torch operations they replace, ~20 fewer calls a layer).
        Padding rows (an engine whose linear layers are not all on the kernel, q4) attend to
        nothing, as there."""
        s = self.shape
        assert self.kernels is not None
        qkv = layer.qkv(self._norm(h, layer.attn_norm))
        q = qkv.new_empty(s.heads, qkv.shape[0], s.head_dim)
        spans = []
        for seg in segments:
            kv = seg.cache.layers[index]
            rows = slice(seg.first, seg.first + seg.rows)
            self.kernels.rotate_into(qkv[rows], cos[rows], sin[rows], q[:, rows], kv, s.heads)
            spans.append((kv, seg.rows))
        real = sum(n for _, n in spans)
        attended = self._attend_rows(q[:, :real], spans)
        if real < h.shape[0]:
            attended = torch.cat(
                [attended, attended.new_zeros(h.shape[0] - real, attended.shape[1])]
            )
        return self._rest(layer, h, attended)

    def _attend_rows(self, q: torch.Tensor, spans: list[tuple[LayerKV, int]]) -> torch.Tensor:
        """:func:`attend_rows`, or the same per row in specviz's kernel library (``kernels``),
        one call per sequence's rows."""
        if self.kernels is None:
            return attend_rows(q, spans, self.shape.groups)
        parts, first = [], 0
        for kv, n in spans:
            part = q[:, first : first + n]
            parts.append(self.kernels.attend(part, kv.key_buffer, kv.value_buffer, kv.length))
            first += n
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass(frozen=True)
class Feed:
    """Tokens (1-D) fed to one sequence's cache at positions ``start..``."""

    tokens: torch.Tensor
    cache: LeanCache
    start: int


@dataclass(frozen=True)
class Segment:
    """The rows of one feed inside a padded pass: ``rows`` rows from index ``first``."""

    feed: int
    cache: LeanCache
    first: int
    rows: int


def mlp(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    gate, up = layer.gate_up(x).chunk(2, dim=-1)
    return layer.down(F.silu(gate) * up)


def attend(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, before: int, groups: int
) -> torch.Tensor:
    """Causal attention of ``q`` ``(heads, rows, dim)`` at positions ``before..`` over
    ``keys``/``values`` ``(kv_heads, before + rows, dim)``, float32; ``(rows, heads * dim)``.

    Written out (two batched matmuls and a softmax, in float32 whatever the model's dtype)
    rather than ``F.scaled_dot_product_attention``: on the CPU that picks a flash-attention
    kernel whose fixed cost was ~0.5 ms per call for one query over 200 keys (measured, SmolLM2,
    bf16), half the cost of a one-row forward's linear layers. Query head ``h`` reads key head
    ``h // groups``, as transformers' ``repeat_kv`` has it."""
    heads, rows, dim = q.shape
    kv_heads, length, _ = keys.shape
    grouped = q.reshape(kv_heads, groups * rows, dim).float()
    scores = torch.bmm(grouped, keys.transpose(1, 2)) * dim**-0.5
    if rows > 1:
        cols = torch.arange(length, device=q.device)
        hidden = cols[None, :] > before + torch.arange(rows, device=q.device)[:, None]
        scores.view(kv_heads, groups, rows, length).masked_fill_(hidden, float("-inf"))
    out = torch.bmm(torch.softmax(scores, dim=-1), values).to(q.dtype)
    return out.view(heads, rows, dim).transpose(0, 1).reshape(rows, heads * dim)


def attend_rows(q: torch.Tensor, spans: list[tuple[LayerKV, int]], groups: int) -> torch.Tensor:
    """Causal attention of ``q`` ``(heads, rows, dim)``, each row computed alone: :func:`attend`
    of one query over its own prefix, the shapes of a one-row forward.

    ``spans``: per segment of consecutive rows (one sequence's rows in a pass), the layer cache
    its rows were just appended to and how many rows it has; the segment's row ``j`` attends to
    its cache's first ``length - rows + j + 1`` positions. Rows of different sequences read
    different caches, so the rows of several sequences share a pass at no extra cost.

    Chosen over one batched kernel for all rows (the batch index the row, each row's own copy of
    its keys padded to a multiple of 16 positions, masked): that one is row-invariant too
    (485 of 485 rows bit-identical alone and among 2-8 rows, float32) but cost more CPU time per
    SmolLM2 bf16 forward after 200 tokens (one thread, one process, interleaved): 45.8 / 49.4 /
    56.8 ms at 1 / 6 / 8 rows against 39.5 / 47.9 / 51.9 ms for this loop (37.5 / 36.1 / 36.7
    without attention); its copies and mask cost more than the loop's per-row calls."""
    heads, rows, dim = q.shape
    out = q.new_empty(rows, heads * dim)
    r = 0
    for kv, n in spans:
        for j in range(n):
            end = kv.length - n + j + 1
            keys, values = kv.key_buffer[:, :end], kv.value_buffer[:, :end]
            out[r] = attend(q[:, r : r + 1], keys, values, end - 1, groups)[0]
            r += 1
    return out
