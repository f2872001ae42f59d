"""Drafting for a batch: per-row adapters of the batch-size-1 drafters, and batched layer skip.

- :class:`PerRowDrafters` gives every row its own batch-size-1 drafter (prompt lookup, draft
  model), created when a request joins and dropped when it leaves. Prompt lookup is a search in
  the row's own context, so nothing is lost by running it per row. A draft model runs per row
  too: its own batch-1 cache and forwards, one row after another (correct and simple; a batched
  draft model would share its forward passes across rows, which this does not measure).
- :class:`BatchLayerSkip` drafts with a subset of the target's own layers for all rows at once,
  writing into the shared batch cache (:class:`~specviz.batch.kv.BatchKV`); the entries are
  removed from just those layers before verification, as the batch-size-1 layer-skip drafter does.

Each row samples with its own generator (seeded per request), in the same order as at batch
size 1, so a row's random draws do not depend on its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedModel

from specviz.batch.config import BatchDrafterError
from specviz.batch.kv import BatchCache, BatchKV
from specviz.config import (
    DrafterConfig,
    DraftModelOptions,
    LayerSkipOptions,
    PromptLookupOptions,
    SamplingConfig,
)
from specviz.drafter_factory import draft_model
from specviz.drafters.base import Drafter, Drafting, Proposal
from specviz.drafters.draft_model import DraftModelDrafter
from specviz.drafters.layer_skip import decoder_layers, kept_layers, only_layers
from specviz.drafters.prompt_lookup import PromptLookupDrafter
from specviz.forward import rollback_layers
from specviz.models import LoadedModel, ModelCache
from specviz.stopping import StopRule
from specviz.supports import unbatched_drafter

__all__ = [
    "BatchDrafter",
    "BatchDrafterError",
    "BatchLayerSkip",
    "PerRowDrafters",
    "RowAsk",
    "build_batch_drafter",
]


@dataclass(frozen=True)
class RowAsk:
    """What one row asks of the drafter this round."""

    slot: int  # the row's slot label (stable while its request is in the batch)
    cache_index: int  # its index in the batch cache now (moves as rows leave)
    context: torch.Tensor  # all ids so far, last emitted included
    k: int  # tokens to draft (0: this row does not draft this round)
    generator: torch.Generator


class BatchDrafter(Protocol):
    """What the batched decoding loop needs from a drafter."""

    def join(self, slot: int, context: torch.Tensor, generator: torch.Generator) -> None:
        """A request's turn starts in ``slot`` with ``context`` (its prompt ids)."""
        ...

    def leave(self, slot: int) -> None: ...

    def propose(
        self, kv: BatchCache, asks: Sequence[RowAsk], stop: StopRule | None
    ) -> list[Proposal]:
        """One proposal per ask (empty where ``k == 0``)."""
        ...


class PerRowDrafters:
    """One batch-size-1 drafter per row slot, built by ``factory(generator)``."""

    def __init__(self, factory: Callable[[torch.Generator], Drafter]) -> None:
        self.factory = factory
        self.rows: dict[int, Drafter] = {}

    def join(self, slot: int, context: torch.Tensor, generator: torch.Generator) -> None:
        if slot not in self.rows:
            self.rows[slot] = self.factory(generator)
        self.rows[slot].start(context)

    def leave(self, slot: int) -> None:
        self.rows.pop(slot, None)

    def propose(self, kv: BatchKV, asks: Sequence[RowAsk], stop: StopRule | None) -> list[Proposal]:
        out = []
        for ask in asks:
            if ask.k <= 0:
                out.append(Proposal(ask.context.new_empty(0)))
            else:
                out.append(self.rows[ask.slot].propose(ask.context, ask.k, stop))
        return out


class BatchLayerSkip:
    """Self-speculation over the batch: the target with only ``kept`` layers drafts every row."""

    def __init__(self, model: PreTrainedModel, kept: list[int], sampling: SamplingConfig) -> None:
        self.model = model
        self.kept = kept
        self.sampling = sampling

    def join(self, slot: int, context: torch.Tensor, generator: torch.Generator) -> None:
        return None

    def leave(self, slot: int) -> None:
        return None

    def propose(self, kv: BatchKV, asks: Sequence[RowAsk], stop: StopRule | None) -> list[Proposal]:
        """Every drafting row steps together, each through its own :class:`Drafting` (the
        batch-size-1 stop / cap loop); a row leaves the forward passes when its draft is done."""
        device = kv.valid.device
        drafts = {a.cache_index: Drafting(a.k, self.sampling, a.generator, stop) for a in asks}
        active = [a.cache_index for a in asks if a.k > 0]
        step_ids = torch.zeros(kv.rows, 1, dtype=torch.long, device=device)
        for a in asks:
            step_ids[a.cache_index, 0] = int(a.context[-1])
        pending = torch.zeros(kv.rows, 0, dtype=torch.bool, device=device)
        with only_layers(self.model, self.kept):
            while active:
                live = torch.zeros(kv.rows, 1, dtype=torch.bool, device=device)
                live[active, 0] = True
                logits = kv.forward(self.model, step_ids, live, pending)[:, -1]
                pending = torch.cat([pending, live], dim=1)
                active = self._step(drafts, active, logits, step_ids)
        rollback_layers(kv.cache, self.kept, pending.shape[1])  # type: ignore[arg-type]
        return [drafts[a.cache_index].proposal(device) for a in asks]

    @staticmethod
    def _step(
        drafts: dict[int, Drafting], active: list[int], logits: torch.Tensor, step_ids: torch.Tensor
    ) -> list[int]:
        """Each active row drafts one token from its logits; the rows whose drafts go on, with
        that token set as their next input."""
        still = []
        for r in active:
            x = drafts[r].step(logits[r])
            if x is not None:
                step_ids[r, 0] = x
                still.append(r)
        return still


def build_batch_drafter(
    config: DrafterConfig, target: LoadedModel, sampling: SamplingConfig, models: ModelCache
) -> BatchDrafter | None:
    """The batch drafter a config names (None for plain decoding).

    The draft model is checked (tokenizer, device) exactly as at batch size 1
    (:func:`~specviz.drafter_factory.draft_model`).
    """
    why = unbatched_drafter(config.kind)
    if why is not None:
        raise BatchDrafterError(why)
    options = config.options
    if options is None:
        return None
    if isinstance(options, PromptLookupOptions):
        ngrams = options
        return PerRowDrafters(lambda _g: PromptLookupDrafter(ngrams.max_ngram, ngrams.min_ngram))
    if isinstance(options, LayerSkipOptions):
        kept = kept_layers(len(decoder_layers(target.model)), options)
        return BatchLayerSkip(target.model, kept, sampling)
    if isinstance(options, DraftModelOptions):
        draft = draft_model(options, target, models).model
        return PerRowDrafters(lambda g: DraftModelDrafter(draft, sampling, g))
    raise AssertionError(f"{config.kind!r} is declared batched in specviz.supports but not built")
