"""The two kinds of state in a hybrid model's cache, and how to put each back.

transformers 5.x gives a hybrid model (Falcon-H1, Bamba, Jamba, Qwen3-Next, ...) a
``DynamicCache`` whose layers mix two kinds of state:

- attention keys/values, one row per position: cut back exactly by cropping;
- a Mamba-2 layer's convolution window (the last ``d_conv`` inputs) and SSM state (one
  ``heads x head_dim x d_state`` matrix): fixed-size summaries of *all* positions so far, updated
  in place. No crop can remove a position from them. (transformers can keep the convolution
  inputs for a later crop, ``activate_past_recording``, but never the SSM state: its
  ``is_croppable`` is False as soon as an SSM state exists.)

Falcon-H1 layers hold both (``LinearAttentionAndFullAttentionLayer``); interleaved models hold one
kind per layer. :class:`RecurrentSnapshot` copies every recurrent tensor so it can be written back
in place; :func:`specviz.forward.crop_attention` crops only the attention part of a layer (it
lives with the other rollbacks, which every loop uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Cache

from specviz.forward import is_recurrent


def is_hybrid(cache: Cache) -> bool:
    """Whether any layer of ``cache`` holds recurrent state, so that cropping cannot roll it back."""
    return any(is_recurrent(layer) for layer in cache.layers)


@dataclass
class RecurrentSnapshot:
    """Copies of every convolution and SSM state in a cache, to write back later.

    Restoring copies into the cache's own tensors (they are updated in place by the model and
    may be marked static for CUDA graphs) and resets the ``has_previous_state`` flags, so the
    cache is exactly as it was when captured. The copy is small and fixed-size: for
    Falcon-H1-0.5B about 36 layers x (24 heads x 64 x 128 SSM + conv window) floats.
    """

    conv: dict[tuple[int, int], torch.Tensor]
    ssm: dict[tuple[int, int], torch.Tensor]
    started: dict[int, dict[int, bool]]

    @staticmethod
    def capture(cache: Cache) -> RecurrentSnapshot:
        conv: dict[tuple[int, int], torch.Tensor] = {}
        ssm: dict[tuple[int, int], torch.Tensor] = {}
        started: dict[int, dict[int, bool]] = {}
        for i, layer in enumerate(cache.layers):
            if not is_recurrent(layer):
                continue
            started[i] = dict(layer.has_previous_state)
            for s in range(layer.number_of_states):
                if layer.is_conv_states_initialized[s]:
                    conv[i, s] = layer.conv_states[s].clone()
                if layer.is_recurrent_states_initialized[s]:
                    ssm[i, s] = layer.recurrent_states[s].clone()
        return RecurrentSnapshot(conv, ssm, started)

    def restore(self, cache: Cache) -> None:
        for (i, s), saved in self.conv.items():
            layer = cache.layers[i]
            if layer.conv_states[s].shape == saved.shape:
                layer.conv_states[s].copy_(saved)
            else:  # a cache recording its past grows the window; put the saved one back
                layer.conv_states[s] = saved.clone()
        for (i, s), saved in self.ssm.items():
            cache.layers[i].recurrent_states[s].copy_(saved)
        for i, flags in self.started.items():
            cache.layers[i].has_previous_state.update(flags)
