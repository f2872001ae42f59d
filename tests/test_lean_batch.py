"""Several sequences in one row-invariant lean forward (specviz.lean.model.forward_many) and the
lean batch cache (specviz.lean.batch): every row gets exactly the bits of a one-row forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import MODELS

from specviz.batch.kv import BatchKV, batch_cache
from specviz.config import ModelSpec
from specviz.forward import forward, new_cache
from specviz.lean import LeanCache, lean_of
from specviz.lean.batch import LeanBatchKV
from specviz.lean.model import Feed, LeanModel
from specviz.models import LoadedModel

PROMPTS = (37, 5, 90)  # prompt lengths of the three sequences
FEEDS = (3, 6, 1)  # rows each feeds at once: 10 rows, so passes of 8 mix sequences


def load(path: Path, dtype: str, engine: str = "lean-invariant") -> LoadedModel:
    return MODELS.get(ModelSpec(str(path), device="cpu", dtype=dtype, engine=engine))


def engine_of(loaded: LoadedModel) -> LeanModel:
    lean = lean_of(loaded.model)
    assert lean is not None
    return lean


def prefilled(loaded: LoadedModel, ids: list[torch.Tensor]) -> list[LeanCache]:
    caches = []
    for seq in ids:
        cache = new_cache(loaded.model)
        assert isinstance(cache, LeanCache)
        forward(loaded.model, seq, cache, 0, last_only=True)
        caches.append(cache)
    return caches


def sequences(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(prompt, continuation) ids of each sequence."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(4, 100, (n,), generator=g) for n in PROMPTS]
    fed = [torch.randint(4, 100, (n,), generator=g) for n in FEEDS]
    return prompts, fed


def assert_forward_many_is_one_row_forwards(
    loaded: LoadedModel, prompts: list[torch.Tensor], fed: list[torch.Tensor]
) -> None:
    """One ``forward_many`` over every sequence's fed rows gives each row the logits, and each
    cache the keys and values, of one-row forwards of that sequence alone."""
    with torch.inference_mode():
        many, one = prefilled(loaded, prompts), prefilled(loaded, prompts)
        feeds = [Feed(t, c, len(p)) for t, c, p in zip(fed, many, prompts, strict=True)]
        together = engine_of(loaded).forward_many(feeds)
        for t, c, p, got in zip(fed, one, prompts, together, strict=True):
            singles = torch.cat(
                [forward(loaded.model, t[i : i + 1], c, len(p) + i) for i in range(len(t))]
            )
            assert got.dtype == loaded.dtype
            assert torch.equal(got, singles)
    for a, b in zip(many, one, strict=True):
        for x, y in zip(a.layers, b.layers, strict=True):
            assert torch.equal(x.keys, y.keys) and torch.equal(x.values, y.values)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_rows_of_several_sequences_in_one_forward_are_one_row_forwards_bit_for_bit(
    tiny_model_dir: Path, dtype: str
) -> None:
    loaded = load(tiny_model_dir, dtype)
    prompts, fed = sequences(3)
    assert_forward_many_is_one_row_forwards(loaded, prompts, fed)


@pytest.mark.slow
def test_on_smollm2_rows_of_several_sequences_are_one_row_forwards_bit_for_bit() -> None:
    """The same claim on the embedded model in bf16, where a plain multi-row forward does differ
    (tests/test_lean_embedded.py, test_in_bf16_a_six_row_forward_is_not_six_one_row_forwards);
    long prompts (keys past 256 positions) and rows that straddle passes."""
    loaded = MODELS.get(
        ModelSpec("smollm2-135m", device="cpu", dtype="bfloat16", engine="lean-invariant")
    )
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(4, 40000, (n,), generator=g) for n in (250, 40, 300)]
    fed = [torch.randint(4, 40000, (n,), generator=g) for n in (7, 5, 4)]
    assert_forward_many_is_one_row_forwards(loaded, prompts, fed)


def test_a_batched_decoder_gets_the_lean_batch_cache_only_on_lean_invariant(
    tiny_model_dir: Path,
) -> None:
    assert isinstance(batch_cache(load(tiny_model_dir, "bfloat16").model), LeanBatchKV)
    assert isinstance(batch_cache(load(tiny_model_dir, "float32", "lean").model), BatchKV)
    assert isinstance(batch_cache(load(tiny_model_dir, "float32", "transformers").model), BatchKV)


def test_the_lean_batch_cache_keeps_each_rows_accepted_prefix_and_rows_come_and_go(
    tiny_model_dir: Path,
) -> None:
    """Two verify rounds through the batch cache, with rejections and a row leaving, give the
    logits and caches that one-row forwards of the kept tokens give."""
    loaded = load(tiny_model_dir, "bfloat16")
    prompts, fed = sequences(4)
    kv = batch_cache(loaded.model)
    assert isinstance(kv, LeanBatchKV)
    width = max(FEEDS)
    with torch.inference_mode():
        for p in prompts:
            cache = kv.row_cache()
            forward(loaded.model, p, cache, 0, last_only=True)
            kv.add(cache)
        tokens = torch.zeros(3, width, dtype=torch.long)
        mask = torch.zeros(3, width, dtype=torch.bool)
        for r, t in enumerate(fed):
            tokens[r, : len(t)], mask[r, : len(t)] = t, True
        first = kv.forward(loaded.model, tokens, mask)
        keep = torch.tensor([2, 6, 1])
        kv.commit(width, keep)
        kv.keep_rows([2, 0])  # the middle row leaves; the others swap places
        second = kv.forward(loaded.model, tokens[[0, 1], :4], torch.ones(2, 4, dtype=torch.bool))
        kv.commit(4, torch.tensor([4, 3]))
        one = prefilled(loaded, prompts)
        for r in range(3):
            n = len(fed[r])
            alone = [
                forward(loaded.model, fed[r][i : i + 1], one[r], PROMPTS[r] + i) for i in range(n)
            ]
            assert torch.equal(first[r, :n], torch.cat(alone))
            one[r].crop(int(keep[r]) - n)
        for r, row, kept in ((2, 0, 4), (0, 1, 3)):
            start = one[r].get_seq_length()
            alone = [
                forward(loaded.model, tokens[row, i : i + 1], one[r], start + i) for i in range(4)
            ]
            assert torch.equal(second[row], torch.cat(alone))
            one[r].crop(kept - 4)
        for mine, theirs in zip(kv.caches, (one[2], one[0]), strict=True):
            assert mine.get_seq_length() == theirs.get_seq_length()
            for x, y in zip(mine.layers, theirs.layers, strict=True):
                assert torch.equal(x.keys, y.keys) and torch.equal(x.values, y.values)
