"""Batched speculation is lossless: every row equals its prompt's own batch-size-1 output, and
every row's KV state equals a fresh forward of its tokens whatever its neighbours accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import MODELS, PROMPTS, decode, make_decoder

from specviz.batch import (
    BatchConfig,
    BatchDecoder,
    Job,
    RowTurnEnd,
    Step,
    StepPrefill,
    build_batch_drafter,
)
from specviz.batch import (
    kv as kv_module,
)
from specviz.config import DrafterConfig, ModelSpec, PolicyConfig, SamplingConfig
from specviz.forward import forward, new_cache
from specviz.policies import build_policy
from specviz.workloads.prompt import Prompt

LONG = Prompt(
    "long",
    "summarization",
    (
        "Summarize: "
        + " ".join(f"item {i} is stored in box {i % 7} next to the red door." for i in range(8)),
    ),
)
SHORT = Prompt("short", "qa", ("Hi",))
BATCH_PROMPTS = [*PROMPTS, LONG, SHORT]


def drafters(draft_dir: Path) -> list[DrafterConfig]:
    return [
        DrafterConfig("none"),
        DrafterConfig("prompt-lookup", max_ngram=3),
        DrafterConfig("layer-skip", exit_layer=2),
        DrafterConfig("layer-skip", layers=(0, 2, 3)),
        DrafterConfig("model", draft=ModelSpec(str(draft_dir))),
    ]


def batch_decoder(
    target_dir: Path,
    drafter: DrafterConfig,
    policy: PolicyConfig,
    batch: BatchConfig,
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 48,
) -> BatchDecoder:
    target = MODELS.get(ModelSpec(str(target_dir)))
    built = build_batch_drafter(drafter, target, sampling, MODELS)
    return BatchDecoder(
        target, built, lambda: build_policy(policy), sampling, max_new_tokens, batch
    )


def run_batched(
    decoder: BatchDecoder, prompts: list[Prompt], seed: int = 0
) -> tuple[dict[int, list[tuple[int, ...]]], list[Step]]:
    """(tokens per turn of every prompt, verify steps)."""
    size = decoder.batch.size
    jobs = [Job(i, p, seed + i, i // size) for i, p in enumerate(prompts)]
    batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    turns: dict[int, list[tuple[int, ...]]] = {i: [] for i in range(len(prompts))}
    steps = []
    for record in decoder.run(batches):
        if isinstance(record, RowTurnEnd):
            turns[record.key].append(record.end.tokens)
        elif isinstance(record, Step):
            steps.append(record)
    return turns, steps


@pytest.mark.parametrize("k_mode", ["batch", "row"])
@pytest.mark.parametrize(
    "which", range(5), ids=["none", "prompt-lookup", "exit-2", "skip-1", "model"]
)
def test_every_row_of_a_batched_greedy_run_matches_its_own_greedy_output(
    tiny_model_dir, tiny_draft_dir, which, k_mode
):
    drafter = drafters(tiny_draft_dir)[which]
    policy = PolicyConfig("heuristic", 2)
    single = make_decoder(tiny_model_dir, drafter, policy)
    want = {i: decode(single, p)[0] for i, p in enumerate(BATCH_PROMPTS)}
    batched = batch_decoder(tiny_model_dir, drafter, policy, BatchConfig(3, k_mode=k_mode))
    got, steps = run_batched(batched, BATCH_PROMPTS)
    for i, prompt in enumerate(BATCH_PROMPTS):
        assert got[i] == want[i], f"row {prompt.id} diverged from its batch-size-1 output"
    assert max(len(s.rows) for s in steps) == 3  # rows really shared forward passes
    if drafter.kind != "none":
        assert sum(r.round.n_accepted for s in steps for r in s.rows) > 0


def test_rows_of_very_different_lengths_share_batches(tiny_model_dir):
    batched = batch_decoder(
        tiny_model_dir, DrafterConfig("prompt-lookup"), PolicyConfig(), BatchConfig(2)
    )
    prompts = [LONG, SHORT]
    lengths = [len(batched.encode_turn(p, [])) for p in prompts]
    assert lengths[0] > 8 * lengths[1]
    got, steps = run_batched(batched, prompts)
    single = make_decoder(tiny_model_dir, DrafterConfig("prompt-lookup"), PolicyConfig())
    assert [got[0], got[1]] == [decode(single, p)[0] for p in prompts]
    assert any(len(s.rows) == 2 for s in steps)


def test_continuous_batching_refills_freed_slots_and_stays_lossless(tiny_model_dir, tiny_draft_dir):
    drafter = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    batched = batch_decoder(
        tiny_model_dir, drafter, PolicyConfig("constant", 3), BatchConfig(2, continuous=True)
    )
    size = 2
    jobs = [Job(i, p, i, i // size) for i, p in enumerate(BATCH_PROMPTS)]
    got: dict[int, list[tuple[int, ...]]] = {i: [] for i in range(len(jobs))}
    joined_mid_batch = False
    seen_step = False
    for record in batched.run([jobs[i : i + size] for i in range(0, len(jobs), size)]):
        if isinstance(record, Step):
            seen_step = True
            assert len(record.rows) <= size
        elif isinstance(record, StepPrefill) and seen_step and len(batched.rows) == 1:
            joined_mid_batch = True  # a new request joined while another row was decoding
        elif isinstance(record, RowTurnEnd):
            got[record.key].append(record.end.tokens)
    assert joined_mid_batch
    single = make_decoder(tiny_model_dir, drafter, PolicyConfig("constant", 3))
    assert all(got[i] == decode(single, p)[0] for i, p in enumerate(BATCH_PROMPTS))


def _row_kv(kv: kv_module.BatchKV, row: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one row's valid columns in one layer: ``(heads, cached, dim)``."""
    assert kv.cache is not None
    columns = kv.valid[row].nonzero().flatten()
    entry = kv.cache.layers[layer]
    return entry.keys[row][:, columns], entry.values[row][:, columns]


@torch.inference_mode()
def _assert_kv_matches_fresh_forward(decoder: BatchDecoder, finished: set[int]) -> int:
    """Each unfinished row's valid cache columns equal a fresh forward of its context."""
    model = decoder.target.model
    checked = 0
    for i, row in enumerate(decoder.rows):
        if row.slot in finished:
            continue
        cache = new_cache(model)
        forward(model, row.context[:-1], cache, 0)  # the cache holds all but the last token
        assert int(decoder.kv.cached[i]) == len(row.context) - 1
        for layer in range(len(cache.layers)):
            keys, values = _row_kv(decoder.kv, i, layer)
            torch.testing.assert_close(keys, cache.layers[layer].keys[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(values, cache.layers[layer].values[0], atol=1e-4, rtol=1e-4)
        checked += 1
    return checked


@pytest.mark.parametrize("layer_skip", [False, True], ids=["draft-model", "layer-skip"])
@pytest.mark.parametrize("compact", [False, True], ids=["masked-holes", "compacted"])
def test_rows_accepting_different_counts_keep_correct_kv(
    tiny_model_dir, tiny_draft_dir, monkeypatch, compact, layer_skip
):
    # either never compact (holes and padding stay, masked) or compact after every round
    monkeypatch.setattr(kv_module, "COMPACT_MIN_WIDTH", 1)
    monkeypatch.setattr(kv_module, "COMPACT_WASTE", 0.0 if compact else 1.0)
    drafter = DrafterConfig("model", draft=ModelSpec(str(tiny_draft_dir)))
    if layer_skip:  # drafting writes into the shared batch cache and must leave no trace
        drafter = DrafterConfig("layer-skip", exit_layer=1)
    decoder = batch_decoder(
        tiny_model_dir, drafter, PolicyConfig("constant", 4), BatchConfig(4), max_new_tokens=32
    )
    jobs = [Job(i, p, i, 0) for i, p in enumerate(BATCH_PROMPTS[:4])]
    uneven_rounds = 0
    for record in decoder.run([jobs]):
        if not isinstance(record, Step):
            continue
        accepted = {r.round.n_accepted for r in record.rows}
        finished = {r.slot for r in record.rows if r.round.finish is not None}
        if len(accepted) > 1 and len(record.rows) > 1:
            uneven_rounds += _assert_kv_matches_fresh_forward(decoder, finished) > 0
    assert uneven_rounds >= 3
    assert (decoder.kv.compactions > 0) == compact


def test_batch_k_is_shared_and_row_k_is_per_row(tiny_model_dir):
    drafter = DrafterConfig("layer-skip", exit_layer=1)
    policy = PolicyConfig("heuristic-per-request", 3)
    shared = batch_decoder(tiny_model_dir, drafter, policy, BatchConfig(3, k_mode="batch"))
    _, steps = run_batched(shared, BATCH_PROMPTS[:3])
    assert all(len({r.round.k for r in s.rows}) == 1 for s in steps)
    own = batch_decoder(tiny_model_dir, drafter, policy, BatchConfig(3, k_mode="row"))
    _, steps = run_batched(own, BATCH_PROMPTS[:3])
    assert any(len({r.round.k for r in s.rows}) > 1 for s in steps)


def test_batched_sampling_rows_draw_what_they_draw_alone(tiny_model_dir):
    """Each row samples with its own request-seeded generator, in batch-size-1 order."""
    sampling = SamplingConfig(temperature=0.8)
    drafter = DrafterConfig("prompt-lookup")
    batched = batch_decoder(
        tiny_model_dir, drafter, PolicyConfig("constant", 3), BatchConfig(3), sampling
    )
    got, _ = run_batched(batched, BATCH_PROMPTS[:3], seed=11)
    single = make_decoder(tiny_model_dir, drafter, PolicyConfig("constant", 3), sampling)
    for i, prompt in enumerate(BATCH_PROMPTS[:3]):
        assert got[i] == decode(single, prompt, seed=11 + i)[0]


@pytest.mark.slow
def test_batched_greedy_on_the_embedded_model_matches_batch_size_one():
    from specviz.workloads import builtin_prompts

    prompts = [
        next(p for p in builtin_prompts() if p.category == c and len(p.turns) == 1)
        for c in ("extraction", "writing", "coding")
    ]
    drafter, policy = DrafterConfig("prompt-lookup"), PolicyConfig("constant", 4)
    single = make_decoder("smollm2-135m", drafter, policy, max_new_tokens=24)
    want = {i: decode(single, p)[0] for i, p in enumerate(prompts)}
    target = MODELS.get(ModelSpec("smollm2-135m"))
    built = build_batch_drafter(drafter, target, SamplingConfig(), MODELS)
    batched = BatchDecoder(
        target, built, lambda: build_policy(policy), SamplingConfig(), 24, BatchConfig(3)
    )
    got, steps = run_batched(batched, prompts)
    assert got == want
    assert max(len(s.rows) for s in steps) == 3
    assert sum(r.round.n_accepted for s in steps for r in s.rows) > 0
