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

import torch
from transformers import Cache, PreTrainedModel

from specviz.config import SamplingConfig
from specviz.drafters.base import Proposal, draft_tokens
from specviz.forward import TokenFeeder, rollback_layers
from specviz.hybrid.components import attention_layers, decoder_layers, skipping
from specviz.hybrid.state import RecurrentSnapshot
from specviz.stopping import StopRule


class ComponentSkipDrafter:
    """Drafts with the target under ``plan`` (layer index -> components skipped there)."""

    def __init__(
        self,
        model: PreTrainedModel,
        target_cache: Cache,
        plan: Mapping[int, tuple[str, ...]],
        sampling: SamplingConfig,
        generator: torch.Generator,
    ) -> None:
        self.model = model
        self.cache = target_cache
        self.plan = dict(plan)
        self.attention = attention_layers(len(decoder_layers(model)), self.plan)
        self.sampling = sampling
        self.generator = generator

    def start(self, context: torch.Tensor) -> None:
        return None

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        # the target cache holds every context token but the last: feed that one first
        steps = TokenFeeder(self.model, self.cache, len(context) - 1)
        snapshot = RecurrentSnapshot.capture(self.cache)
        try:
            with skipping(self.model, self.plan):
                first = steps(int(context[-1]))
                return draft_tokens(first, steps, k, self.sampling, self.generator, stop)
        finally:
            rollback_layers(self.cache, self.attention, steps.fed)
            snapshot.restore(self.cache)
