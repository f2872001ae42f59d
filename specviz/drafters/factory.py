"""The drafter a :class:`~specviz.config.DrafterConfig` names, built for a loaded target."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from specviz.config import DrafterConfig, SamplingConfig
from specviz.drafters.base import Drafter
from specviz.drafters.draft_model import DraftModelDrafter
from specviz.drafters.layer_skip import (
    LayerSkipDrafter,
    decoder_layers,
    kept_layers,
)
from specviz.drafters.prompt_lookup import PromptLookupDrafter
from specviz.drafters.suffix import SuffixDrafter
from specviz.forward import new_cache
from specviz.hybrid.component_skip import ComponentSkipDrafter
from specviz.hybrid.components import (
    check_layout,
    has_parallel_components,
    layer_skip_plan,
    skip_plan,
)
from specviz.hybrid.draft_model import HybridDraftModelDrafter
from specviz.hybrid.preserve import StatePreservingDrafter
from specviz.hybrid.state import is_hybrid
from specviz.models import LoadedModel, ModelCache, ModelLoadError, tokenizer_mismatch

__all__ = ["TokenizerMismatchError", "build_drafter"]


class TokenizerMismatchError(ModelLoadError):
    """Draft and target tokenizers differ, so their token ids cannot be compared."""


def build_drafter(
    config: DrafterConfig,
    target: LoadedModel,
    target_cache: DynamicCache,
    sampling: SamplingConfig,
    generator: torch.Generator,
    models: ModelCache,
) -> Drafter | None:
    """The drafter a config names (None for plain decoding)."""
    if config.kind == "none":
        return None
    if config.kind == "prompt-lookup":
        return PromptLookupDrafter(config.max_ngram, config.min_ngram)
    if config.kind == "suffix":
        return suffix_drafter(config)
    if config.kind == "layer-skip":
        n_layers = len(decoder_layers(target.model))
        kept = kept_layers(n_layers, config.exit_layer, config.layers)
        if has_parallel_components(target.model):  # Falcon-H1: skip all of a layer's parts
            plan = layer_skip_plan(n_layers, kept)
            return ComponentSkipDrafter(target.model, target_cache, plan, sampling, generator)
        drafter = LayerSkipDrafter(target.model, target_cache, kept, sampling, generator)
        if is_hybrid(target_cache):  # its SSM layers must not keep the drafted tokens
            return StatePreservingDrafter(drafter, target_cache)
        return drafter
    if config.kind == "component-skip":
        assert config.components is not None
        plan = skip_plan(check_layout(target.model), config.components, config.layers)
        return ComponentSkipDrafter(target.model, target_cache, plan, sampling, generator)
    draft = draft_model(config, target, models)
    if is_hybrid(new_cache(draft.model)):  # its SSM state cannot be cropped to a prefix
        return HybridDraftModelDrafter(draft.model, sampling, generator)
    return DraftModelDrafter(draft.model, sampling, generator)


def draft_model(config: DrafterConfig, target: LoadedModel, models: ModelCache) -> LoadedModel:
    """The draft model ``config`` names, checked to draft for ``target`` (same tokenizer and
    device)."""
    assert config.draft is not None
    draft = models.get(config.draft, config.draft_quant)
    why = tokenizer_mismatch(target.tokenizer, draft.tokenizer)
    if why is not None:
        raise TokenizerMismatchError(
            f"draft {config.draft.name!r} cannot draft for target {target.spec.name!r}: {why}. "
            "Pick a draft model from the same family (same tokenizer)."
        )
    if draft.device != target.device:
        raise ModelLoadError(
            f"draft is on {draft.device} but target on {target.device}: give both the same --device"
        )
    return draft


def suffix_drafter(config: DrafterConfig) -> SuffixDrafter:
    assert config.memory_tokens is not None and config.tree_depth is not None
    assert config.spec_factor is not None and config.min_token_prob is not None
    assert config.partition is not None
    return SuffixDrafter(
        config.memory_tokens,
        config.tree_depth,
        config.spec_factor,
        config.min_token_prob,
        config.partition,
    )
