"""Self-speculation: the target drafts with a subset of its own layers, sharing its weights.

The subset is either the first ``exit_layer`` layers (early exit) or an explicit list that must
include layer 0. The skipped layers are replaced by an identity for the duration of drafting,
so layer indices, per-layer attention types and the shared KV cache stay aligned; the final
norm and LM head are the target's own. Drafting writes KV entries into the kept layers of the
*target's* cache; they are removed from just those layers before verification, so the verify
pass sees exactly the cache plain decoding would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

import torch
from torch import nn
from transformers import Cache, PreTrainedModel

from specviz.config import LayerSkipOptions, SamplingConfig
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


def kept_layers(n_layers: int, options: LayerSkipOptions) -> list[int]:
    """The layers ``options`` keep, checked against a model of ``n_layers`` layers (the options
    checked themselves, :class:`~specviz.config.LayerSkipOptions`)."""
    if options.exit_layer is not None:
        if options.exit_layer >= n_layers:
            raise LayerSkipError(
                f"--exit-layer {options.exit_layer} must be below the model's {n_layers} layers"
            )
        return list(range(options.exit_layer))
    assert options.layers is not None
    bad = [i for i in options.layers if not 0 <= i < n_layers]
    if bad:
        raise LayerSkipError(f"layers {bad} do not exist: the model has layers 0..{n_layers - 1}")
    return sorted(set(options.layers))


class SelfDrafter:
    """The target drafts with part of itself, on its own cache: layer-skip, and component-skip
    (:func:`specviz.hybrid.component_skip.component_skip_drafter`).

    ``surgery()`` enters the model's drafting shape (layers or components swapped out);
    ``writes``: the layers whose KV entries drafting writes, cropped afterwards so the verify pass
    sees the cache plain decoding would have. Recurrent (SSM) state, which cannot be cropped, is
    kept by wrapping this drafter in :class:`~specviz.hybrid.preserve.StatePreservingDrafter`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        target_cache: Cache,
        surgery: Callable[[], AbstractContextManager[None]],
        writes: list[int],
        sampling: SamplingConfig,
        generator: torch.Generator,
    ) -> None:
        self.model = model
        self.cache = target_cache
        self.surgery = surgery
        self.writes = writes
        self.sampling = sampling
        self.generator = generator

    def start(self, context: torch.Tensor) -> None:
        return None

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        # the target cache holds every context token but the last: feed that one first
        steps = TokenFeeder(self.model, self.cache, len(context) - 1)
        try:
            with self.surgery():
                first = steps(int(context[-1]))
                return draft_tokens(first, steps, k, self.sampling, self.generator, stop)
        finally:
            rollback_layers(self.cache, self.writes, steps.fed)


def layer_skip_drafter(
    model: PreTrainedModel,
    target_cache: Cache,
    kept: list[int],
    sampling: SamplingConfig,
    generator: torch.Generator,
) -> SelfDrafter:
    """Layer-skip: draft with the ``kept`` layers only; they alone write KV entries."""
    return SelfDrafter(
        model, target_cache, partial(only_layers, model, kept), kept, sampling, generator
    )
