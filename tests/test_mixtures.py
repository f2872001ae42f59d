"""Mixtures: composition, presets, custom weights, sweeps, order and reproducibility."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from specviz.workloads import (
    Mixture,
    MixtureError,
    Prompt,
    build_stream,
    builtin_prompts,
    compose,
    custom,
    parse_weights,
    single_task,
    sweep,
    uniform,
)
from specviz.workloads.mixtures import allocate, categories_of


def _pool(n_per_category: int = 6) -> list[Prompt]:
    return [
        Prompt(f"{c}-{i}", c, (f"{c} prompt {i}",))
        for c in ("coding", "math", "writing")
        for i in range(n_per_category)
    ]


@pytest.mark.parametrize(
    ("weights", "size"),
    [
        ({"coding": 0.5, "writing": 0.5}, 10),
        ({"coding": 1, "math": 1, "writing": 1}, 10),
        ({"coding": 0.7, "math": 0.2, "writing": 0.1}, 13),
        ({"coding": 3, "math": 0, "writing": 1}, 7),
    ],
)
def test_mixture_composition_matches_weights(weights: dict[str, float], size: int) -> None:
    mixture = custom("m", weights, size, order="interleaved", seed=3)
    counts = Counter(p.category for p in compose(mixture, _pool()))
    total = sum(weights.values())
    assert sum(counts.values()) == size
    for category, weight in weights.items():
        exact = size * weight / total
        assert abs(counts.get(category, 0) - exact) < 1  # largest remainder: within one


def test_largest_remainder_gives_leftovers_to_largest_fractions() -> None:
    assert allocate((("a", 0.55), ("b", 0.30), ("c", 0.15)), 10) == {"a": 6, "b": 3, "c": 1}
    assert allocate((("a", 1.0), ("b", 1.0), ("c", 1.0)), 10) == {"a": 4, "b": 3, "c": 3}


def test_same_seed_same_stream_and_other_seed_other_order() -> None:
    prompts = builtin_prompts()
    mix = uniform(categories_of(prompts), 33, order="interleaved", seed=7)
    first = [p.id for p in compose(mix, prompts)]
    assert first == [p.id for p in compose(mix, prompts)]
    other = uniform(categories_of(prompts), 33, order="interleaved", seed=8)
    assert first != [p.id for p in compose(other, prompts)]


def test_uniform_mix_reuses_the_single_task_prompts() -> None:
    prompts = builtin_prompts()
    cats = categories_of(prompts)
    singles = {c: [p.id for p in compose(single_task(c, 2, seed=1), prompts)] for c in cats}
    blocked = compose(uniform(cats, 2 * len(cats), order="blocked", seed=1), prompts)
    interleaved = compose(uniform(cats, 2 * len(cats), order="interleaved", seed=1), prompts)
    assert [p.id for p in blocked] == [i for c in cats for i in singles[c]]
    assert sorted(p.id for p in interleaved) == sorted(p.id for p in blocked)


def test_interleaved_order_switches_tasks_and_blocked_does_not() -> None:
    prompts = builtin_prompts()
    cats = categories_of(prompts)

    def switches(order: str) -> int:
        stream = compose(uniform(cats, 3 * len(cats), order=order, seed=0), prompts)
        return sum(a.category != b.category for a, b in itertools.pairwise(stream))

    assert switches("blocked") == len(cats) - 1
    assert switches("interleaved") > 2 * len(cats)


def test_stream_larger_than_pool_cycles_through_it() -> None:
    stream = compose(single_task("math", 9, seed=0), _pool(4))
    ids = [p.id for p in stream]
    assert ids[4:8] == ids[:4] and ids[8] == ids[0]
    assert len(set(ids)) == 4


def test_unknown_category_lists_known_ones() -> None:
    with pytest.raises(
        MixtureError, match=r"unknown category 'poetry'; known: coding, math, writing"
    ):
        compose(custom("m", "poetry=1,math=1", 4, order="blocked"), _pool())


@pytest.mark.parametrize(
    "text", ["coding=-0.5,writing=1", "coding=0,writing=0", "coding=x", "coding"]
)
def test_negative_zero_sum_and_malformed_weights_are_refused(text: str) -> None:
    with pytest.raises(MixtureError):
        parse_weights(text)


def test_mixture_refuses_negative_weight_directly() -> None:
    with pytest.raises(MixtureError, match="must be >= 0"):
        Mixture("m", (("coding", -1.0), ("math", 2.0)), size=4)


def test_parse_weights_reads_custom_weights() -> None:
    assert parse_weights("coding=0.5, Writing=0.5") == {"coding": 0.5, "writing": 0.5}


def test_sweep_goes_from_one_task_to_uniform() -> None:
    mixes = sweep("coding", ["coding", "math", "writing"], [0.0, 0.5, 1.0], 12, order="interleaved")
    assert [m.name for m in mixes] == ["sweep-coding-0", "sweep-coding-0.5", "sweep-coding-1"]
    counts = [Counter(p.category for p in compose(m, _pool())) for m in mixes]
    assert counts[0] == {"coding": 12}
    assert counts[1] == {"coding": 8, "math": 2, "writing": 2}
    assert counts[2] == {"coding": 4, "math": 4, "writing": 4}


def test_build_stream_gives_indexed_runner_requests() -> None:
    from specviz.runner import Request

    mixture = uniform(["coding", "math", "writing"], 6, order="interleaved", seed=2)
    requests = build_stream(mixture, _pool(), repeat=1)
    assert all(isinstance(r, Request) for r in requests)
    assert [r.index for r in requests] == list(range(6))
    assert {r.mixture for r in requests} == {"uniform-interleaved"}
    assert {r.repeat for r in requests} == {1}
    assert [r.prompt for r in requests] == compose(mixture, _pool())
