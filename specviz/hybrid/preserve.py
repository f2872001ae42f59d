"""Drafting on the target's own cache without leaving a trace in its recurrent state.

A self-drafter (layer-skip, component-skip) feeds drafted tokens through (part of) the target
with the target's cache, then crops the KV entries it wrote. On a hybrid model the Mamba layers
it ran have also folded those tokens into their convolution and SSM state, which cannot be
cropped. :class:`StatePreservingDrafter` wraps such a drafter: it snapshots every recurrent state
before ``propose`` and writes it back afterwards, so verification starts from the state plain
decoding would have.
"""

from __future__ import annotations

import torch
from transformers import Cache

from specviz.drafters.base import Drafter, Proposal
from specviz.hybrid.state import RecurrentSnapshot
from specviz.stopping import StopRule


class StatePreservingDrafter:
    def __init__(self, inner: Drafter, cache: Cache) -> None:
        self.inner = inner
        self.cache = cache

    def start(self, context: torch.Tensor) -> None:
        self.inner.start(context)

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        snapshot = RecurrentSnapshot.capture(self.cache)
        try:
            return self.inner.propose(context, k, stop)
        finally:
            snapshot.restore(self.cache)
