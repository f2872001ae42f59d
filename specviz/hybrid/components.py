"""Running decoder layers with some of their components skipped (component surgery).

A Falcon-H1 decoder layer computes ``h + mamba(norm(h)) + attention(norm(h))`` and then
``h + mlp(norm(h))``. Skipping a component means its term is zero: the residual stream passes
it by. For the duration of a ``with skipping(...)`` block the component modules of the chosen
layers are swapped for stand-ins that return zeros of the right shape and never touch the cache;
the weights of everything that runs are the target's own, and the modules are put back on exit
(also on error).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from specviz.config import COMPONENTS as NAMES
from specviz.drafters.layer_skip import decoder_layers
from specviz.errors import SpecvizError

# component name (as in DrafterConfig.components) -> attribute of a Falcon-H1 decoder layer
COMPONENTS = {"attention": "self_attn", "mamba": "mamba", "mlp": "feed_forward"}
assert tuple(COMPONENTS) == NAMES


class ComponentSkipError(SpecvizError):
    """The component subset does not fit the model."""


class _NoAttention(nn.Module):
    """A skipped attention block: contributes nothing, writes no KV; returns (output, weights)."""

    def forward(
        self, hidden_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, None]:
        return torch.zeros_like(hidden_states), None


class _NoOutput(nn.Module):
    """A skipped Mamba mixer or MLP: contributes nothing, leaves the recurrent state alone."""

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        return torch.zeros_like(x)


def has_parallel_components(model: PreTrainedModel) -> bool:
    """Whether every decoder layer holds attention, Mamba and MLP modules (Falcon-H1)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    return isinstance(layers, nn.ModuleList) and all(
        hasattr(layer, attr) for layer in layers for attr in COMPONENTS.values()
    )


def check_layout(model: PreTrainedModel) -> int:
    """The number of decoder layers, if every one holds attention, Mamba and MLP side by side."""
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        missing = [name for name, attr in COMPONENTS.items() if not hasattr(layer, attr)]
        if missing:
            raise ComponentSkipError(
                f"{type(model).__name__} layer {i} has no {', '.join(missing)} module: "
                "component-skip needs layers that run attention and Mamba side by side, like "
                "Falcon-H1; for models that interleave attention and SSM layers use layer-skip"
            )
    return len(layers)


def skip_plan(
    n_layers: int, components: tuple[str, ...], layers: tuple[int, ...] | None
) -> dict[int, tuple[str, ...]]:
    """Layer index -> components skipped there: all but ``components`` in ``layers`` (all
    layers when None); the other layers run in full."""
    chosen = sorted(set(range(n_layers) if layers is None else layers))
    bad = [i for i in chosen if not 0 <= i < n_layers]
    if bad:
        raise ComponentSkipError(
            f"layers {bad} do not exist: the model has layers 0..{n_layers - 1}"
        )
    skipped = tuple(c for c in COMPONENTS if c not in components)
    plan = {i: skipped for i in chosen}
    if "attention" in skipped and 0 in plan and len(plan) < n_layers:
        # attention masks and the cache length are read from layer 0: if any layer runs
        # attention while drafting, layer 0 must run it too
        raise ComponentSkipError(
            "attention is skipped in layer 0 but runs in other layers: keep layer 0 out of "
            "the chosen layers, or choose all layers"
        )
    return plan


def layer_skip_plan(n_layers: int, kept: list[int]) -> dict[int, tuple[str, ...]]:
    """Layer-skip as component surgery: every component of the layers not ``kept`` is skipped,
    so those layers pass the residual stream through unchanged. Used for Falcon-H1, whose
    decoder layers return a tuple that the layer-skip drafter's identity stand-in does not."""
    return {i: tuple(COMPONENTS) for i in range(n_layers) if i not in set(kept)}


def attention_layers(n_layers: int, plan: Mapping[int, tuple[str, ...]]) -> list[int]:
    """Layers whose attention runs (and so writes KV) under ``plan``."""
    return [i for i in range(n_layers) if "attention" not in plan.get(i, ())]


@contextmanager
def skipping(model: PreTrainedModel, plan: Mapping[int, tuple[str, ...]]) -> Iterator[None]:
    """Run ``model`` with the components ``plan`` names swapped for zero stand-ins."""
    layers = decoder_layers(model)
    saved: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for i, names in plan.items():
            for name in names:
                attr = COMPONENTS[name]
                saved.append((layers[i], attr, getattr(layers[i], attr)))
                setattr(layers[i], attr, _NoAttention() if name == "attention" else _NoOutput())
        yield
    finally:
        for layer, attr, module in reversed(saved):
            setattr(layer, attr, module)
