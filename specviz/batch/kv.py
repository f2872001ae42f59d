"""A batch KV cache whose rows advance independently: left padding plus a validity mask.

Layout. One ``DynamicCache`` holds every row, shape ``(rows, heads, L, head_dim)`` per layer,
beside a boolean ``valid`` mask of shape ``(rows, L)``. A row's context lives in its valid
columns, in order; invalid columns are either left padding (a row shorter than the batch's
longest) or *holes*: positions fed in a verify round and then rejected. Holes are masked out,
not cropped, so a round never copies the cache: every verify round appends ``T`` columns to all
rows (``T`` = the longest feed of the round) and marks, per row, only the accepted ones valid.
Each row keeps its own count of cached tokens, which gives its token positions (passed to the
model explicitly, so RoPE sees each row's true positions whatever its padding).

Cost of the choice. Masking instead of cropping trades copies for width: attention runs over
``L`` columns, of which a share are holes or padding, and the cache holds them in memory. Three
cheap trims bound it: trailing columns invalid in every row are cropped after each round (a
round in which every row rejected its whole tail costs nothing later), leading columns invalid
in every row are sliced off when rows leave, and when more than :data:`COMPACT_WASTE` of the
cache is invalid the cache is *compacted*: one gather per layer packs every row's valid columns
to the right (``O(layers x rows x L)`` copying, amortised over the rounds since the last one).
The alternative, per-row crop with re-padding after every round, copies the cache every round.

A new row is prefilled alone (batch size 1, exactly the forward plain decoding does) and then
spliced in, left-padded to the batch's width; nothing but invalid padding columns is ever a
query-less zero, and no query ever attends to an empty row (every row has its context).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel

from specviz.lean import lean_of
from specviz.lean.batch import LeanBatchKV

#: compact when more than this share of the cache's columns (over all rows) is invalid
COMPACT_WASTE = 0.5
#: ... and the cache is at least this wide (compacting tiny caches buys nothing)
COMPACT_MIN_WIDTH = 64


class BatchKV:
    """The batch cache of one model: rows are added (prefilled alone), advanced, removed."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.config = model.config
        self.cache: DynamicCache | None = None
        self.valid = torch.zeros(0, 0, dtype=torch.bool, device=model.device)
        self.cached = torch.zeros(0, dtype=torch.long, device=model.device)  # tokens per row
        self.compactions = 0

    # -- shape ----------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return int(self.valid.shape[0])

    @property
    def width(self) -> int:
        return int(self.valid.shape[1])

    def _layers(self) -> list:
        assert self.cache is not None
        return list(self.cache.layers)

    # -- rows -----------------------------------------------------------------------------

    def row_cache(self) -> DynamicCache:
        """A cache to prefill a joining row in (then :meth:`add` it): a transformers cache,
        whatever engine the model has, since the batched forwards run the model itself."""
        return DynamicCache(config=self.config)

    def add(self, single: DynamicCache) -> int:
        """Append a row whose whole context is in ``single`` (a batch-1 cache); its index."""
        n = single.get_seq_length()
        mask = torch.ones(1, n, dtype=torch.bool, device=self.valid.device)
        if self.cache is None or self.rows == 0:
            self.cache, self.valid = single, mask
            self.cached = torch.tensor([n], device=self.valid.device)
            return 0
        width = max(self.width, n)
        self._pad_left(width - self.width)
        for mine, theirs in zip(self._layers(), single.layers, strict=True):
            mine.keys = torch.cat([mine.keys, _pad_cols(theirs.keys, width - n)], dim=0)
            mine.values = torch.cat([mine.values, _pad_cols(theirs.values, width - n)], dim=0)
        pad = torch.zeros(1, width - n, dtype=torch.bool, device=self.valid.device)
        self.valid = torch.cat([self.valid, torch.cat([pad, mask], dim=1)], dim=0)
        self.cached = torch.cat([self.cached, self.cached.new_tensor([n])])
        return self.rows - 1

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices, in the new order); trim what no remaining row uses."""
        if not rows:
            self.cache = None
            self.valid = self.valid[:0, :0]
            self.cached = self.cached[:0]
            return
        index = torch.tensor(rows, device=self.valid.device)
        for layer in self._layers():
            layer.keys = layer.keys[index]
            layer.values = layer.values[index]
        self.valid = self.valid[index]
        self.cached = self.cached[index]
        self._trim()

    def _pad_left(self, n: int) -> None:
        if n <= 0:
            return
        for layer in self._layers():
            layer.keys = _pad_cols(layer.keys, n)
            layer.values = _pad_cols(layer.values, n)
        pad = torch.zeros(self.rows, n, dtype=torch.bool, device=self.valid.device)
        self.valid = torch.cat([pad, self.valid], dim=1)

    # -- forward passes -------------------------------------------------------------------

    def positions(self, width: int, offset: int = 0) -> torch.Tensor:
        """Token positions of ``width`` new tokens per row, ``offset`` past the cached ones."""
        steps = torch.arange(offset, offset + width, device=self.valid.device)
        return self.cached[:, None] + steps[None, :]

    def forward(
        self,
        model: PreTrainedModel,
        tokens: torch.Tensor,
        fed: torch.Tensor,
        pending: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(rows, T, vocab)`` for ``tokens`` ``(rows, T)`` appended to every row.

        ``fed`` marks the real tokens (the rest is right padding of shorter rows: never a key for
        a real token). ``pending``: validity of columns already appended to the attending layers
        since the last commit (layer-skip drafting), placed between the cache and the new tokens.
        The new columns stay in the cache until :meth:`commit` decides which rows keep which.
        """
        assert self.cache is not None
        parts = [self.valid] + ([pending] if pending is not None else []) + [fed]
        offset = 0 if pending is None else int(pending.shape[1])
        out = model(
            input_ids=tokens,
            attention_mask=torch.cat(parts, dim=1),
            position_ids=self.positions(tokens.shape[1], offset),
            cache=self.cache,
            use_cache=True,
        )
        return out.logits

    def commit(self, width: int, keep: torch.Tensor) -> None:
        """The last ``width`` columns were a verify feed: row r keeps its first ``keep[r]``."""
        steps = torch.arange(width, device=self.valid.device)
        self.valid = torch.cat([self.valid, steps[None, :] < keep[:, None].to(steps)], dim=1)
        self.cached = self.cached + keep.to(self.cached)
        self._trim()
        if self.width >= COMPACT_MIN_WIDTH and self.waste() > COMPACT_WASTE:
            self.compact()

    def waste(self) -> float:
        """Share of the cache's columns (over all rows) that are padding or holes."""
        if self.valid.numel() == 0:
            return 0.0
        return 1.0 - float(self.valid.float().mean())

    # -- housekeeping ---------------------------------------------------------------------

    def _trim(self) -> None:
        """Drop columns invalid in every row at both ends (no copy of row data needed)."""
        used = self.valid.any(dim=0)
        if not bool(used.any()):
            return
        idx = used.nonzero().flatten()
        first, last = int(idx[0]), int(idx[-1]) + 1
        tail = self.width - last
        if tail > 0:
            assert self.cache is not None
            self.cache.crop(-tail)
        if first > 0:
            for layer in self._layers():
                layer.keys = layer.keys[..., first:, :]
                layer.values = layer.values[..., first:, :]
        self.valid = self.valid[:, first:last]

    def compact(self) -> None:
        """Pack every row's valid columns to the right: holes and extra padding disappear."""
        width = int(self.cached.max())
        counts = self.valid.sum(dim=1)
        assert torch.equal(counts, self.cached), "valid columns must equal cached tokens"
        # source column of target column j of row r: its (j - (width - count))-th valid column
        order = torch.sort(self.valid.int(), dim=1, stable=True, descending=True).indices
        slot = torch.arange(width, device=self.valid.device)[None, :] - (width - counts)[:, None]
        source = order.gather(1, slot.clamp(min=0))
        new_valid = slot >= 0
        for layer in self._layers():
            index = source[:, None, :, None].expand(
                -1, layer.keys.shape[1], -1, layer.keys.shape[3]
            )
            layer.keys = layer.keys.gather(2, index)
            index = source[:, None, :, None].expand(
                -1, layer.values.shape[1], -1, layer.values.shape[3]
            )
            layer.values = layer.values.gather(2, index)
        self.valid = new_valid
        self.compactions += 1


def _pad_cols(t: torch.Tensor, n: int) -> torch.Tensor:
    """Left-pad the column axis (-2) of a ``(rows, heads, L, dim)`` tensor with ``n`` zeros."""
    if n <= 0:
        return t
    return torch.nn.functional.pad(t, (0, 0, n, 0))


BatchCache = BatchKV | LeanBatchKV  # what a batched decoder holds (batch_cache chooses)


def batch_cache(model: PreTrainedModel) -> BatchCache:
    """The batch cache for ``model``, chosen once where a batched decoder is built: per-row
    lean caches on a row-invariant lean engine (every row exactly as alone,
    :mod:`specviz.lean.batch`), else the left-padded transformers cache above."""
    lean = lean_of(model)
    if lean is not None and lean.row_invariant:
        return LeanBatchKV(lean)
    return BatchKV(model)
