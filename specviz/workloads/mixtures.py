"""Mixtures of tasks: weights over categories, a size and a seed, turned into a request stream.

Composition. A mixture of ``size`` requests with weights ``w`` gives category ``c`` the count
``size * w_c / sum(w)`` rounded by the largest-remainder (Hamilton) method: everyone gets the
floor, and the requests left over go to the largest fractional parts (ties: the category listed
first). The counts always sum to ``size`` and each is within one of its exact share.

Selection. Each category's prompts are shuffled once by a generator seeded with
``(seed, category)`` alone, and a mixture takes the first ``count`` of that order (cycling when it
needs more than the pool holds). So, for one seed, the coding requests of the ``coding`` mixture
and of the uniform mixture are the same prompts: a multitask stream is a re-ordering of the
single-task streams, and its composition is known exactly.

Order. ``blocked`` runs the categories one after the other, in the mixture's category order;
``interleaved`` shuffles the whole stream with a generator seeded with ``seed``. The same mixture
and prompts always give the same stream. ``source`` keeps the prompts' own order (a sampled real
stream, e.g. ShareGPT): the first ``size`` prompts of the mixture's categories, no selection by
weight (the weights then only describe the stream).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from specviz.errors import SpecvizError
from specviz.workloads.prompt import Prompt
from specviz.workloads.request import Request

#: Orders a study file may ask for; ``source`` is the order of a sampled real stream.
COMPOSED_ORDERS = ("blocked", "interleaved")
ORDERS = (*COMPOSED_ORDERS, "source")


class MixtureError(SpecvizError):
    """A mixture is invalid: unknown category, bad weights, size or order."""


@dataclass(frozen=True)
class Mixture:
    """Weights over categories (in order), a stream size, an order and a seed."""

    name: str
    weights: tuple[tuple[str, float], ...]
    size: int
    order: str = "interleaved"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise MixtureError("a mixture needs a name")
        if self.order not in ORDERS:
            raise MixtureError(f"order {self.order!r} is not one of {', '.join(ORDERS)}")
        if self.size < 1:
            raise MixtureError(f"mixture {self.name!r}: size must be >= 1 (got {self.size})")
        check_weights(dict(self.weights), self.name)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(c for c, w in self.weights if w > 0)


def check_weights(weights: Mapping[str, float], name: str = "mixture") -> None:
    if not weights:
        raise MixtureError(f"{name}: no weights given")
    negative = [f"{c}={w}" for c, w in weights.items() if w < 0]
    if negative:
        raise MixtureError(f"{name}: weights must be >= 0 (got {', '.join(negative)})")
    if sum(weights.values()) <= 0:
        raise MixtureError(f"{name}: weights sum to zero; give at least one category a weight > 0")


def parse_weights(text: str) -> dict[str, float]:
    """``"coding=0.5,writing=0.5"`` -> ``{"coding": 0.5, "writing": 0.5}`` (weights need not sum to 1)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        category, sep, value = part.partition("=")
        category = category.strip().lower()
        if not sep or not category:
            raise MixtureError(f"{text!r}: write weights as category=weight,category=weight")
        try:
            weight = float(value)
        except ValueError as err:
            raise MixtureError(
                f"{text!r}: weight of {category!r} is not a number: {value!r}"
            ) from err
        if category in weights:
            raise MixtureError(f"{text!r}: {category!r} is given twice")
        weights[category] = weight
    check_weights(weights, repr(text))
    return weights


def allocate(weights: Sequence[tuple[str, float]], size: int) -> dict[str, int]:
    """Largest-remainder counts per category; they sum to ``size``."""
    total = sum(w for _, w in weights)
    exact = [(c, size * w / total) for c, w in weights]
    counts = {c: int(x) for c, x in exact}
    left = size - sum(counts.values())
    by_remainder = sorted(range(len(exact)), key=lambda i: -(exact[i][1] - int(exact[i][1])))
    for i in by_remainder[:left]:
        counts[exact[i][0]] += 1
    return counts


def categories_of(prompts: Sequence[Prompt]) -> list[str]:
    """Categories in order of first appearance."""
    return list(dict.fromkeys(p.category for p in prompts))


def single_task(category: str, size: int, *, seed: int = 0) -> Mixture:
    """Preset: one category only (named after it)."""
    return Mixture(name=category, weights=((category, 1.0),), size=size, order="blocked", seed=seed)


def uniform(categories: Sequence[str], size: int, *, order: str, seed: int = 0) -> Mixture:
    """Preset: equal weight on every category (named ``uniform-<order>``)."""
    return Mixture(
        name=f"uniform-{order}",
        weights=tuple((c, 1.0) for c in categories),
        size=size,
        order=order,
        seed=seed,
    )


def custom(
    name: str, weights: str | Mapping[str, float], size: int, *, order: str, seed: int = 0
) -> Mixture:
    """A mixture from ``"coding=0.5,writing=0.5"`` or a mapping."""
    parsed = parse_weights(weights) if isinstance(weights, str) else dict(weights)
    return Mixture(name=name, weights=tuple(parsed.items()), size=size, order=order, seed=seed)


def sweep(
    task: str,
    categories: Sequence[str],
    steps: Sequence[float],
    size: int,
    *,
    order: str,
    seed: int = 0,
) -> list[Mixture]:
    """Mixtures from one task (``alpha = 0``) to the uniform mix (``alpha = 1``).

    Weights are ``(1 - alpha) * onehot(task) + alpha * uniform``; each mixture is named
    ``sweep-<task>-<alpha>``.
    """
    if task not in categories:
        raise MixtureError(f"sweep task {task!r} is not a category; known: {', '.join(categories)}")
    mixtures = []
    for alpha in steps:
        if not 0.0 <= alpha <= 1.0:
            raise MixtureError(f"sweep steps must lie in [0, 1] (got {alpha})")
        weights = tuple(
            (c, (1.0 - alpha) * (c == task) + alpha / len(categories)) for c in categories
        )
        mixtures.append(
            Mixture(
                name=f"sweep-{task}-{alpha:g}", weights=weights, size=size, order=order, seed=seed
            )
        )
    return mixtures


def _pool_order(prompts: Sequence[Prompt], category: str, seed: int) -> list[Prompt]:
    pool = [p for p in prompts if p.category == category]
    random.Random(f"{seed}:{category}").shuffle(pool)
    return pool


def compose(mixture: Mixture, prompts: Sequence[Prompt]) -> list[Prompt]:
    """The mixture's prompts in stream order (see the module docstring)."""
    known = categories_of(prompts)
    unknown = [c for c, _ in mixture.weights if c not in known]
    if unknown:
        raise MixtureError(
            f"mixture {mixture.name!r}: unknown categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    if mixture.order == "source":
        wanted = set(mixture.categories)
        stream = [p for p in prompts if p.category in wanted][: mixture.size]
        if len(stream) < mixture.size:
            raise MixtureError(
                f"mixture {mixture.name!r}: {mixture.size} prompts wanted in source order, "
                f"{len(stream)} given"
            )
        return stream
    counts = allocate(mixture.weights, mixture.size)
    blocks = []
    for category, _ in mixture.weights:
        pool = _pool_order(prompts, category, mixture.seed)
        blocks.append([pool[i % len(pool)] for i in range(counts[category])])
    stream = [p for block in blocks for p in block]
    if mixture.order == "interleaved":
        random.Random(mixture.seed).shuffle(stream)
    return stream


def build_stream(mixture: Mixture, prompts: Sequence[Prompt], *, repeat: int = 0) -> list[Request]:
    """The mixture as runner requests, indexed 0..size-1 in stream order."""
    return [
        Request(index=i, prompt=p, mixture=mixture.name, repeat=repeat)
        for i, p in enumerate(compose(mixture, prompts))
    ]
