"""The drafter a :class:`~specviz.config.DrafterConfig` names, built for a loaded target.

It builds plain drafters (:mod:`specviz.drafters`) and hybrid ones (:mod:`specviz.hybrid`, which
build on the former), so it lives above both folders, and neither imports the other back.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from specviz.config import (
    ComponentSkipOptions,
    DrafterConfig,
    DraftModelOptions,
    LayerSkipOptions,
    PromptLookupOptions,
    SamplingConfig,
    SuffixOptions,
)
from specviz.drafters.base import Drafter
from specviz.drafters.draft_model import DraftModelDrafter
from specviz.drafters.layer_skip import decoder_layers, kept_layers, layer_skip_drafter
from specviz.drafters.prompt_lookup import PromptLookupDrafter
from specviz.drafters.suffix import SuffixDrafter
from specviz.forward import new_cache
from specviz.hybrid.component_skip import component_skip_drafter
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
    """The drafter a config names (None for plain decoding), built from the kind's own options
    (:attr:`~specviz.config.DrafterConfig.options`)."""
    options = config.options
    if options is None:
        return None
    if isinstance(options, PromptLookupOptions):
        return PromptLookupDrafter(options.max_ngram, options.min_ngram)
    if isinstance(options, SuffixOptions):
        return suffix_drafter(options)
    if isinstance(options, LayerSkipOptions):
        return _layer_skip(options, target, target_cache, sampling, generator)
    if isinstance(options, ComponentSkipOptions):
        assert options.components is not None
        plan = skip_plan(check_layout(target.model), options.components, options.layers)
        return component_skip_drafter(target.model, target_cache, plan, sampling, generator)
    draft = draft_model(options, target, models)
    if is_hybrid(new_cache(draft.model)):  # its SSM state cannot be cropped to a prefix
        return HybridDraftModelDrafter(draft.model, sampling, generator)
    return DraftModelDrafter(draft.model, sampling, generator)


def _layer_skip(
    options: LayerSkipOptions,
    target: LoadedModel,
    target_cache: DynamicCache,
    sampling: SamplingConfig,
    generator: torch.Generator,
) -> Drafter:
    n_layers = len(decoder_layers(target.model))
    kept = kept_layers(n_layers, options)
    if has_parallel_components(target.model):  # Falcon-H1: skip all of a layer's parts
        plan = layer_skip_plan(n_layers, kept)
        return component_skip_drafter(target.model, target_cache, plan, sampling, generator)
    drafter = layer_skip_drafter(target.model, target_cache, kept, sampling, generator)
    if is_hybrid(target_cache):  # its SSM layers must not keep the drafted tokens
        return StatePreservingDrafter(drafter, target_cache)
    return drafter


def draft_model(options: DraftModelOptions, target: LoadedModel, models: ModelCache) -> LoadedModel:
    """The draft model ``options`` name, checked to draft for ``target`` (same tokenizer and
    device)."""
    assert options.draft is not None  # RunConfig names the target when only quant is given
    draft = models.get(options.draft, options.draft_quant)
    why = tokenizer_mismatch(target.tokenizer, draft.tokenizer)
    if why is not None:
        raise TokenizerMismatchError(
            f"draft {options.draft.name!r} cannot draft for target {target.spec.name!r}: {why}. "
            "Pick a draft model from the same family (same tokenizer)."
        )
    if draft.device != target.device:
        raise ModelLoadError(
            f"draft is on {draft.device} but target on {target.device}: give both the same --device"
        )
    return draft


def suffix_drafter(options: SuffixOptions) -> SuffixDrafter:
    return SuffixDrafter(
        options.memory_tokens,
        options.tree_depth,
        options.spec_factor,
        options.min_token_prob,
        options.partition,
    )
