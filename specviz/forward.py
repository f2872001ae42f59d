"""Cached forward passes and KV-cache rollback, the two primitives every loop here uses.

Two engines sit behind these functions. A model built with the lean engine (:mod:`specviz.lean`,
Llama-family models, the default where it applies; docs/engine.md) gets a
:class:`~specviz.lean.LeanCache` from :func:`new_cache` and its forwards run on
:class:`~specviz.lean.LeanModel`; every other model runs on transformers. Callers cannot tell
them apart: both caches crop the last ``n`` positions, per layer or all at once.

transformers 5.x: the forward argument is ``cache``; ``DynamicCache.crop(-n)`` removes the last
``n`` positions (positive values are refused). Position ids are always passed explicitly, since
default positions are read from layer 0's cache length, which drafting may change.
"""

from __future__ import annotations

from typing import TypeAlias

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import CacheLayerMixin, LinearAttentionCacheLayerMixin

from specviz.lean import LeanCache, lean_of

Cache: TypeAlias = DynamicCache | LeanCache


def new_cache(model: PreTrainedModel) -> Cache:
    lean = lean_of(model)
    return lean.new_cache() if lean is not None else DynamicCache(config=model.config)


def forward(
    model: PreTrainedModel,
    tokens: torch.Tensor,
    cache: Cache,
    start: int,
    last_only: bool = False,
) -> torch.Tensor:
    """Feed ``tokens`` (1-D) at positions ``start..``; return logits, one row per token fed
    (only the last row when ``last_only``: prefill needs nothing else)."""
    if isinstance(cache, LeanCache):
        if cache.engine is not lean_of(model):
            raise ValueError("this cache belongs to another model's lean engine")
        return cache.engine.forward(tokens, cache, start, last_only)
    ids = tokens.view(1, -1)
    positions = torch.arange(start, start + ids.shape[1], device=ids.device).view(1, -1)
    out = model(
        input_ids=ids,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=1 if last_only else 0,
    )
    return out.logits[0]


def rollback(cache: Cache, n: int) -> None:
    """Remove the last ``n`` positions from every layer of ``cache`` (attention-only caches: a
    hybrid cache's recurrent state needs :class:`specviz.hybrid.rollback.ReplayRollback`)."""
    if n > 0:
        cache.crop(-n)


def rollback_layers(cache: Cache, layers: list[int], n: int) -> None:
    """Remove the last ``n`` positions from the given layers only (layer-skip drafting).

    Only attention entries are removed: a hybrid layer's recurrent state cannot be cropped, and
    a drafter that ran it restores it from a snapshot (:mod:`specviz.hybrid.preserve`)."""
    for i in layers:
        crop_attention(cache.layers[i], n)


def is_recurrent(layer: object) -> bool:
    """Whether a cache layer holds convolution/SSM state (alone or beside attention KV)."""
    return isinstance(layer, LinearAttentionCacheLayerMixin)


def crop_attention(layer: object, n: int) -> None:
    """Remove the last ``n`` positions from the attention part of one cache layer.

    A plain attention layer is cropped as usual. For a hybrid layer the crop of its attention
    base class is called directly (the layer's own ``crop`` would also try to crop its recurrent
    state and refuse); a purely recurrent layer has nothing to crop.
    """
    if n <= 0:
        return
    if not is_recurrent(layer):
        layer.crop(-n)  # type: ignore[attr-defined]
        return
    for base in type(layer).__mro__:  # the first attention class that defines crop
        attention = issubclass(base, CacheLayerMixin) and not issubclass(
            base, LinearAttentionCacheLayerMixin
        )
        if attention and "crop" in vars(base):
            base.crop(layer, -n)  # type: ignore[attr-defined]
            return


class TokenFeeder:
    """Feeds one token at a time into ``cache`` at the next position, counting what it fed.

    Self-drafters use it on the target's own cache: they start at the context's last token
    (``start`` = its position) and later remove ``fed`` positions from the layers they ran.
    """

    def __init__(self, model: PreTrainedModel, cache: Cache, start: int) -> None:
        self.model = model
        self.cache = cache
        self.start = start
        self.fed = 0

    def __call__(self, token: int) -> torch.Tensor:
        """Next-token logits after ``token``."""
        step = torch.tensor([token], device=self.model.device)
        logits = forward(self.model, step, self.cache, self.start + self.fed)[-1]
        self.fed += 1
        return logits
