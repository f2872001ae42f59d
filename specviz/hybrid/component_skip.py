"""The ``component-skip`` drafter: the target drafts with some of each layer's components.

Falcon-H1 runs attention and a Mamba-2 mixer side by side in every layer. Drafting with only one
of them (``components = ["mamba", "mlp"]``: the SSM path, attention skipped; or
``["attention", "mlp"]``), in every layer or in chosen ``layers``, is a self-draft that shares
every weight with the target and needs no training. Whether it accepts well, and on which tasks
it collapses, is what a study measures.

Drafting feeds tokens through the target's own cache, like layer-skip. Afterwards the cache is put
back exactly: KV entries written by the layers whose attention ran are cropped, and every
convolution/SSM state is written back from a snapshot taken before drafting. Verification then
sees the cache plain decoding would have.

The same drafter, with a plan that skips every component of some layers
(:func:`~specviz.hybrid.components.layer_skip_plan`) and named ``layer-skip``, is how layer-skip
runs on Falcon-H1.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
from transformers import Cache, PreTrainedModel

from specviz.config import SamplingConfig
from specviz.drafters.base import Drafter
from specviz.drafters.layer_skip import SelfDrafter
from specviz.hybrid.components import attention_layers, decoder_layers, skipping
from specviz.hybrid.preserve import StatePreservingDrafter


def component_skip_drafter(
    model: PreTrainedModel,
    target_cache: Cache,
    plan: Mapping[int, tuple[str, ...]],
    sampling: SamplingConfig,
    generator: torch.Generator,
) -> Drafter:
    """Drafts with the target under ``plan`` (layer index -> components skipped there): the
    one self-drafting loop (:class:`~specviz.drafters.layer_skip.SelfDrafter`) with component
    surgery, its recurrent state kept (:class:`~specviz.hybrid.preserve.StatePreservingDrafter`)."""
    plan = dict(plan)
    writes = attention_layers(len(decoder_layers(model)), plan)
    surgery = partial(skipping, model, plan)
    drafter = SelfDrafter(model, target_cache, surgery, writes, sampling, generator)
    return StatePreservingDrafter(drafter, target_cache)
