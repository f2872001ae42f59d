"""Dropping rejected drafts from the target's cache: crop for attention, restore + replay for SSMs.

Each verify round feeds ``[last, x_1..x_gamma]`` and keeps the first ``n + 1`` of them (n drafts
accepted). An attention cache drops the rest by cropping (:class:`CropRollback`, the engine's fast
path, unchanged for plain models). A recurrent state cannot drop positions: after the verify pass
it summarises all ``gamma + 1`` tokens. :class:`ReplayRollback` makes it exact again:

1. ``checkpoint``: before the verify pass, copy every convolution and SSM state
   (:class:`~specviz.hybrid.state.RecurrentSnapshot`; small and fixed-size);
2. ``keep``: when all drafts were accepted the state after verification is already the state
   after the last kept token: nothing to do. Otherwise write the copy back, crop the attention
   KV of all ``gamma + 1`` fed positions, and feed the ``n + 1`` kept tokens again (one forward
   pass, last logits only). Every state then equals what plain decoding of the same tokens gives.

Cost: one extra target forward of ``n + 1`` tokens in every round with a rejection, nothing in
fully accepted rounds and nothing in plain decoding. :attr:`ReplayRollback.replayed_tokens`
counts the extra tokens (docs/hybrid.md gives measured figures).

:class:`MixerReplayRollback` (Falcon-H1) replays less: the input of each layer's Mamba mixer at
every fed position is kept during the verify pass (a forward pre-hook holds a reference, no
copy), so after restoring the snapshot only the mixers are run again on their first ``n + 1``
inputs. Attention, MLPs and the LM head are not recomputed, and the attention KV of the kept
tokens stays. This is exact for the same reason the full replay is: causality makes a mixer's
input at position t independent of the tokens after t.

Keeping per-position states instead would need a Mamba-2 scan that returns the state at every
position, which neither the PyTorch fallback nor the fused kernels of transformers 5.x expose.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from transformers import Cache, PreTrainedModel

from specviz.drafters.layer_skip import decoder_layers
from specviz.forward import crop_attention, forward, rollback
from specviz.hybrid.components import has_parallel_components
from specviz.hybrid.state import RecurrentSnapshot, is_hybrid


class CacheRollback(Protocol):
    """How the engine empties the target's cache and drops rejected positions from it."""

    def clear(self, cache: Cache) -> None:
        """Empty the cache (a new turn is prefilled from scratch)."""
        ...

    def checkpoint(self, cache: Cache) -> None:
        """A forward pass whose tail may be rejected is about to run."""
        ...

    def keep(
        self,
        cache: Cache,
        model: PreTrainedModel,
        fed: torch.Tensor,
        start: int,
        n_keep: int,
    ) -> None:
        """Of the tokens ``fed`` at positions ``start..`` since the checkpoint, keep the first
        ``n_keep`` in the cache and drop the rest."""
        ...


class CropRollback:
    """Attention-only caches: cropping is exact."""

    def clear(self, cache: Cache) -> None:
        rollback(cache, cache.get_seq_length())

    def checkpoint(self, cache: Cache) -> None:
        return None

    def keep(
        self, cache: Cache, model: PreTrainedModel, fed: torch.Tensor, start: int, n_keep: int
    ) -> None:
        rollback(cache, len(fed) - n_keep)


class ReplayRollback:
    """Hybrid caches: restore the recurrent state from a snapshot, then replay the kept tokens."""

    def __init__(self) -> None:
        self.snapshot: RecurrentSnapshot | None = None
        self.replays = 0  # rounds that needed a replay
        self.replayed_tokens = 0  # tokens fed again, in all

    def clear(self, cache: Cache) -> None:
        cache.reset()  # zeroes the recurrent states and marks them unstarted; drops all KV
        self.snapshot = None

    def checkpoint(self, cache: Cache) -> None:
        self.snapshot = RecurrentSnapshot.capture(cache)

    def keep(
        self, cache: Cache, model: PreTrainedModel, fed: torch.Tensor, start: int, n_keep: int
    ) -> None:
        snapshot, self.snapshot = self.snapshot, None
        if n_keep == len(fed):
            return  # every fed token stays: the state after the pass is the one we want
        if snapshot is None:
            raise RuntimeError("ReplayRollback.keep needs a checkpoint before the forward pass")
        snapshot.restore(cache)
        for layer in cache.layers:
            crop_attention(layer, len(fed))
        forward(model, fed[:n_keep], cache, start, last_only=True)
        self.replays += 1
        self.replayed_tokens += n_keep


class MixerReplayRollback(ReplayRollback):
    """Falcon-H1 caches: restore the recurrent state, then re-run only the Mamba mixers on the
    inputs they saw for the kept positions during verification."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.mixers: list[nn.Module] = [layer.mamba for layer in decoder_layers(model)]
        self.inputs: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.hooks: list[RemovableHandle] = []

    def _record(
        self, module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> None:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        mask = kwargs.get("attention_mask")
        assert isinstance(hidden, torch.Tensor)
        self.inputs.append((hidden, mask if isinstance(mask, torch.Tensor) else None))

    def _release(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Stop recording; return what was recorded since the checkpoint."""
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        inputs, self.inputs = self.inputs, []
        return inputs

    def clear(self, cache: Cache) -> None:
        self._release()
        super().clear(cache)

    def checkpoint(self, cache: Cache) -> None:
        self._release()  # nothing left over from a pass that never reached keep
        super().checkpoint(cache)
        self.hooks = [
            mixer.register_forward_pre_hook(self._record, with_kwargs=True) for mixer in self.mixers
        ]

    def keep(
        self, cache: Cache, model: PreTrainedModel, fed: torch.Tensor, start: int, n_keep: int
    ) -> None:
        inputs = self._release()
        snapshot, self.snapshot = self.snapshot, None
        if n_keep == len(fed):
            return
        if snapshot is None or len(inputs) != len(self.mixers):
            raise RuntimeError(
                "MixerReplayRollback.keep needs a checkpoint before the forward pass"
            )
        snapshot.restore(cache)
        for layer in cache.layers:
            crop_attention(layer, len(fed) - n_keep)
        for mixer, (hidden, mask) in zip(self.mixers, inputs, strict=True):
            kept_mask = None if mask is None else mask[:, :n_keep]
            mixer(hidden_states=hidden[:, :n_keep], cache=cache, attention_mask=kept_mask)
        self.replays += 1
        self.replayed_tokens += n_keep


def cache_rollback(model: PreTrainedModel, cache: Cache) -> CacheRollback:
    """The exact rollback for ``cache``: mixer replay for Falcon-H1, full replay for other
    caches with recurrent state, crop for attention-only caches."""
    if not is_hybrid(cache):
        return CropRollback()
    if has_parallel_components(model):
        return MixerReplayRollback(model)
    return ReplayRollback()
