"""A separate, smaller draft model with its own KV cache (e.g. Qwen2.5-0.5B for Qwen2.5-7B).

The draft cache always holds a prefix of the context. ``propose`` first crops the cache to its
longest common prefix with the context (this drops the drafted tokens the target rejected, and
keeps the whole conversation across the turns of a multi-turn prompt), feeds whatever part of the
context the cache lacks, then decodes up to k tokens one by one. A context id past the draft's
embedding rows (possible when the target has more rows than the tokenizer needs) is fed to the
draft as :data:`FALLBACK_ID` (:func:`embeddable`); the draft only proposes, so verification
stays exact. The hybrid draft-model drafter (:mod:`specviz.hybrid.draft_model`) does the same.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from specviz.config import SamplingConfig
from specviz.drafters.base import Proposal, draft_tokens
from specviz.forward import forward, new_cache, rollback
from specviz.stopping import StopRule

FALLBACK_ID = 0  # fed to a draft model in place of an id past its embedding rows


def embeddable(ids: torch.Tensor, model: PreTrainedModel) -> torch.Tensor:
    """``ids`` with every id past ``model``'s embedding rows replaced by :data:`FALLBACK_ID`."""
    rows = model.get_input_embeddings().weight.shape[0]
    return torch.where(ids < rows, ids, FALLBACK_ID)


class DraftModel:
    """What both draft-model drafters share (this module's and
    :class:`specviz.hybrid.draft_model.HybridDraftModelDrafter`): the draft with its own cache,
    the ids that cache holds, and catching it up with a context."""

    def __init__(
        self, model: PreTrainedModel, sampling: SamplingConfig, generator: torch.Generator
    ) -> None:
        self.model = model
        self.sampling = sampling
        self.generator = generator
        self.cache = new_cache(model)
        self.cached: torch.Tensor = torch.empty(0, dtype=torch.long, device=model.device)

    def _catch_up(self, context: torch.Tensor, keep: int) -> torch.Tensor:
        """Feed ``context[keep:]`` (:func:`embeddable`) after the ``keep`` ids the cache holds;
        the draft's next-token logits at the end of ``context``."""
        fresh = embeddable(context[keep:].to(self.model.device), self.model)
        logits = forward(self.model, fresh, self.cache, keep, last_only=True)[-1]
        self.cached = context.to(self.model.device).clone()
        return logits


class DraftModelDrafter(DraftModel):
    """An attention-only draft model: its cache is cropped to the common prefix each round."""

    def start(self, context: torch.Tensor) -> None:
        # keep the cache if the new turn's context extends what is cached (multi-turn prompts)
        self._sync(context)

    def _sync(self, context: torch.Tensor) -> int:
        """Crop the cache to its common prefix with ``context``; return that length.

        After a round the cache holds context + drafted[:-1]: the drafts past the accepted ones
        are stale, and this crop (at the next ``start`` or ``propose``) drops them."""
        n = min(len(self.cached), len(context))
        same = (self.cached[:n] == context[:n].to(self.cached.device)).int().cumprod(0).sum()
        keep = int(same)
        rollback(self.cache, len(self.cached) - keep)
        self.cached = self.cached[:keep]
        return keep

    def propose(self, context: torch.Tensor, k: int, stop: StopRule | None) -> Proposal:
        keep = self._sync(context)
        if keep == len(context):  # the last token must be fed to get its next-token logits
            rollback(self.cache, 1)
            keep -= 1
            self.cached = self.cached[:keep]
        logits = self._catch_up(context, keep)
        device = self.model.device

        def feed(x: int) -> torch.Tensor:
            step = torch.tensor([x], device=device)
            out = forward(self.model, step, self.cache, len(self.cached))[-1]
            self.cached = torch.cat([self.cached, step])
            return out

        return draft_tokens(logits, feed, k, self.sampling, self.generator, stop)
