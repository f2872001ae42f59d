"""The batch cache of a row-invariant lean engine: one :class:`LeanCache` per row.

:class:`LeanBatchKV` offers what the batched decoding loop (:mod:`specviz.batch.decoder`) asks
of :class:`specviz.batch.kv.BatchKV` (``row_cache`` / ``add`` / ``keep_rows`` /
``forward(model, tokens, fed)`` / ``commit(width, keep)``), over per-row caches instead of one
left-padded tensor: a verify round feeds every row's tokens to
:meth:`~specviz.lean.model.LeanModel.forward_many`, which packs all rows of all sequences into
the engine's fixed-size passes and computes each row bit for bit as a one-row forward does; a
commit crops each row's rejected tail from its own cache. A row therefore decodes exactly as
it would alone, in any dtype (bf16 included), which left padding on transformers cannot give.
Nothing is padded, masked or compacted: rows join (a batch-size-1 prefill in their own cache)
and leave without touching the others.

Layer-skip drafting, which writes into the batch cache between commits (``pending``), is not
offered: drafters that write into the target's cache cannot run in a lane
(:func:`specviz.supports.unlaned_drafter`), and every other batched run uses transformers.
"""

from __future__ import annotations

import torch
from torch import nn

from specviz.lean.cache import LeanCache
from specviz.lean.model import Feed, LeanModel


class LeanBatchKV:
    """Rows of a row-invariant :class:`LeanModel`, each in its own cache."""

    def __init__(self, engine: LeanModel) -> None:
        if not engine.row_invariant:
            raise ValueError("LeanBatchKV needs a row-invariant lean engine (lean-invariant)")
        self.engine = engine
        self.caches: list[LeanCache] = []
        self.fed: list[int] = []  # tokens each row was fed by the last forward

    @property
    def rows(self) -> int:
        return len(self.caches)

    def row_cache(self) -> LeanCache:
        """A cache to prefill a joining row in (then :meth:`add` it)."""
        return self.engine.new_cache()

    def add(self, single: LeanCache) -> int:
        """Append a row whose whole context is in ``single``; its index."""
        if single.engine is not self.engine:
            raise ValueError("this cache belongs to another model's lean engine")
        self.caches.append(single)
        self.fed.append(0)
        return self.rows - 1

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in the new order)."""
        self.caches = [self.caches[i] for i in rows]
        self.fed = [self.fed[i] for i in rows]

    def forward(
        self,
        model: nn.Module,
        tokens: torch.Tensor,
        fed: torch.Tensor,
        pending: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(rows, T, vocab)`` for ``tokens`` ``(rows, T)``: row r's real tokens
        (``fed[r]``, a prefix) appended to its cache at its next positions; columns past a
        row's feed are zeros. :meth:`commit` then keeps each row's accepted prefix."""
        if pending is not None:
            raise ValueError("the lean batch cache takes no pending draft columns")
        counts = [int(n) for n in fed.sum(dim=1)]
        feeds = [
            Feed(tokens[r, :n], cache, cache.get_seq_length())
            for r, (cache, n) in enumerate(zip(self.caches, counts, strict=True))
        ]
        logits = self.engine.forward_many(feeds)
        out = logits[0].new_zeros(self.rows, tokens.shape[1], logits[0].shape[-1])
        for r, (rows, n) in enumerate(zip(logits, counts, strict=True)):
            out[r, :n] = rows
        self.fed = counts
        return out

    def commit(self, width: int, keep: torch.Tensor) -> None:
        """Row r keeps the first ``keep[r]`` tokens of its last feed (``width``: the feed's
        padded width, unused: each row knows what it was fed)."""
        for cache, n, kept in zip(self.caches, self.fed, keep.tolist(), strict=True):
            if kept > n:
                raise ValueError(f"a row keeps {kept} of the {n} tokens it was fed")
            if kept < n:
                cache.crop(kept - n)
        self.fed = [0] * self.rows
