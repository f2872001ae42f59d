"""A separate draft model that is itself hybrid (e.g. Falcon-H1-0.5B drafting for Falcon-H1-7B).

The attention-only draft-model drafter crops its cache back to the common prefix with the
context after every round; a recurrent state cannot be cropped. This drafter instead never lets
drafted tokens stay in its cache: after feeding the context it snapshots the recurrent state,
drafts, then crops the attention rows it drafted and writes the snapshot back. The cache thus
always holds exactly the last context it was given, and the next round's context (that context
plus the accepted drafts and one target token) extends it: only the new tokens are fed. When a
context does not extend the cache (a new turn re-encodes the conversation), the cache is
emptied and the context prefilled afresh. No replay is ever needed; the cost is one snapshot
copy per round. Ids past the draft's embedding rows are fed as the attention-only drafter feeds
them (:func:`~specviz.drafters.draft_model.embeddable`).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from specviz.config import SamplingConfig
from specviz.drafters.base import Proposal, draft_tokens
from specviz.drafters.draft_model import DraftModel
from specviz.forward import crop_attention, forward
from specviz.hybrid.state import RecurrentSnapshot
from specviz.stopping import StopRule


class HybridDraftModelDrafter(DraftModel):
    """A hybrid draft model: drafted tokens never stay in its cache (see the module doc)."""

    def __init__(
        self, model: PreTrainedModel, sampling: SamplingConfig, generator: torch.Generator
    ) -> None:
        super().__init__(model, sampling, generator)
        self.refills = 0  # times the cache had to be emptied and refilled (new turns)

    def start(self, context: torch.Tensor) -> None:
        return None  # the cache is checked against the context at every propose

    def _reusable(self, context: torch.Tensor) -> int:
        """How many leading context tokens the cache holds; empties it unless it holds a proper
        prefix of ``context`` (the last token must still be fed to get its logits)."""
        n = len(self.cached)
        if n < len(context) and torch.equal(self.cached, context[:n].to(self.cached.device)):
            return n
        self.cache.reset()
        self.cached = self.cached[:0]
        self.refills += 1
        return 0

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        device = self.model.device
        logits = self._catch_up(context, self._reusable(context))
        snapshot = RecurrentSnapshot.capture(self.cache)
        fed = 0

        def feed(x: int) -> torch.Tensor:
            nonlocal fed
            step = torch.tensor([x], device=device)
            fed += 1
            return forward(self.model, step, self.cache, len(context) + fed - 1)[-1]

        try:
            return draft_tokens(logits, feed, k, self.sampling, self.generator, stop)
        finally:
            for layer in self.cache.layers:
                crop_attention(layer, fed)
            snapshot.restore(self.cache)
