"""Self-speculation: the target drafts with a subset of its own layers, sharing its weights.

The subset is either the first ``exit_layer`` layers (early exit) or an explicit list that must
include layer 0. The skipped layers are replaced by an identity for the duration of drafting,
so layer indices, per-layer attention types and the shared KV cache stay aligned; the final
norm and LM head are the target's own. Drafting writes KV entries into the kept layers of the
*target's* cache; they are removed from just those layers before verification, so the verify
pass sees exactly the cache plain decoding would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from specviz.config import SamplingConfig
from specviz.drafters.base import Proposal, draft_tokens
from specviz.errors import SpecvizError
from specviz.forward import TokenFeeder, rollback_layers
from specviz.stopping import StopRule


class LayerSkipError(SpecvizError):
    """The layer subset does not fit the model."""


class _Skip(nn.Module):
    """Stands in for a skipped decoder layer: the residual stream passes through unchanged."""

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return hidden_states


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise LayerSkipError(
            f"{type(model).__name__} has no model.layers list: layer-skip supports decoder-only "
            "models laid out like Llama/Qwen2"
        )
    return layers


@contextmanager
def only_layers(model: PreTrainedModel, kept: list[int]) -> Iterator[None]:
    """Run ``model`` with every decoder layer not in ``kept`` replaced by an identity."""
    layers = decoder_layers(model)
    skip = _Skip()
    skipped = {i: layers[i] for i in range(len(layers)) if i not in set(kept)}
    try:
        for i in skipped:
            layers[i] = skip
        yield
    finally:
        for i, layer in skipped.items():
            layers[i] = layer


def kept_layers(n_layers: int, exit_layer: int | None, layers: tuple[int, ...] | None) -> list[int]:
    if exit_layer is not None:
        if exit_layer >= n_layers:
            raise LayerSkipError(
                f"--exit-layer {exit_layer} must be below the model's {n_layers} layers"
            )
        return list(range(exit_layer))
    assert layers is not None
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise LayerSkipError(f"layers {bad} do not exist: the model has layers 0..{n_layers - 1}")
    if 0 not in layers:
        raise LayerSkipError(
            "the layer subset must include layer 0 (the cache length is read from it)"
        )
    return sorted(set(layers))


class LayerSkipDrafter:
    def __init__(
        self,
        model: PreTrainedModel,
        target_cache: DynamicCache,
        kept: list[int],
        sampling: SamplingConfig,
        generator: torch.Generator,
    ) -> None:
        self.model = model
        self.cache = target_cache
        self.kept = kept
        self.sampling = sampling
        self.generator = generator

    def start(self, context: torch.Tensor) -> None:
        return None

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        # the target cache holds every context token but the last: feed that one first
        steps = TokenFeeder(self.model, self.cache, len(context) - 1)
        with only_layers(self.model, self.kept):
            first = steps(int(context[-1]))
            proposal = draft_tokens(first, steps, k, self.sampling, self.generator, stop)
        rollback_layers(self.cache, self.kept, steps.fed)
        return proposal
