"""The lean engine's KV cache: one preallocated key and value tensor per layer, and its length.

Entries are float32 whatever the model's dtype: a bf16 model's keys and values are computed in
bf16 (as transformers' are) and stored exactly in float32, so attention, which runs in float32,
reads them without a conversion per step (measured: a one-row bf16 forward spent ~9 ms of its
~34 outside the linear layers before this and the fused norm).

A layer's keys are ``(kv_heads, capacity, head_dim)``; a forward writes its rows in place at
the layer's length and attends over ``[0, length + rows)``. Nothing is allocated per step: the
capacity grows (doubling, one copy) only when a forward would run past it, which happens a few
times per long context. Removing the last ``n`` positions is ``length -= n``, per layer, so a
layer-skip draft that wrote only its kept layers crops only those.

The interface mirrors what :mod:`specviz.forward` and its callers use of a transformers
``DynamicCache``: ``layers`` (each with ``crop(-n)``), ``crop(-n)``, ``get_seq_length()`` and
``reset()``, so :func:`specviz.hybrid.state.is_hybrid` and ``crop_attention`` read it as an
attention-only cache.
"""

from __future__ import annotations

import torch

GROW_TO = 256  # positions a new or outgrown cache reserves at least (rounded up to this)


class LayerKV:
    """One layer's keys and values, valid in positions ``[0, length)`` of the buffers
    ``(kv_heads, capacity, head_dim)``."""

    def __init__(self, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.key_buffer = torch.empty(kv_heads, 0, head_dim, dtype=dtype, device=device)
        self.value_buffer = torch.empty_like(self.key_buffer)
        self.length = 0

    @property
    def keys(self) -> torch.Tensor:
        """The valid keys, ``(1, kv_heads, length, head_dim)`` as a ``DynamicCache`` layer
        holds them (a view)."""
        return self.key_buffer[None, :, : self.length]

    @property
    def values(self) -> torch.Tensor:
        return self.value_buffer[None, :, : self.length]

    @property
    def capacity(self) -> int:
        return int(self.key_buffer.shape[1])

    def reserve(self, needed: int) -> None:
        """Make room for ``needed`` positions (a copy only when the capacity is outgrown)."""
        if needed <= self.capacity:
            return
        size = max(2 * self.capacity, -(-needed // GROW_TO) * GROW_TO)
        old_keys, old_values = self.key_buffer, self.value_buffer
        self.key_buffer = old_keys.new_empty(old_keys.shape[0], size, old_keys.shape[2])
        self.value_buffer = torch.empty_like(self.key_buffer)
        self.key_buffer[:, : self.length] = old_keys[:, : self.length]
        self.value_buffer[:, : self.length] = old_values[:, : self.length]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``(kv_heads, rows, head_dim)`` at the end; return every valid key and value
        (views, no copy). The length advances; a rollback moves it back."""
        rows = keys.shape[1]
        end = self.length + rows
        self.reserve(end)
        self.key_buffer[:, self.length : end] = keys
        self.value_buffer[:, self.length : end] = values
        self.length = end
        return self.key_buffer[:, :end], self.value_buffer[:, :end]

    def crop(self, n: int) -> None:
        """Remove the last ``-n`` positions (transformers' ``crop`` convention: ``n < 0``)."""
        if n > 0:
            raise ValueError(f"LayerKV.crop takes a negative count, got {n}")
        self.length = max(0, self.length + n)


class LeanCache:
    """The KV cache of one sequence on a :class:`~specviz.lean.model.LeanModel`."""

    def __init__(self, engine: object, layers: list[LayerKV]) -> None:
        self.engine = engine  # the LeanModel it belongs to (forward checks it)
        self.layers = layers

    def get_seq_length(self) -> int:
        return self.layers[0].length

    def crop(self, n: int) -> None:
        """Remove the last ``-n`` positions from every layer."""
        for layer in self.layers:
            layer.crop(n)

    def reset(self) -> None:
        for layer in self.layers:
            layer.length = 0
