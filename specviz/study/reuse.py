"""No decode twice: which requests of a study copy an earlier decode instead of decoding again.

A request's rounds are fully determined by an earlier decode of the same prompt when both runs
share the target, the token budget, the drafter and policy settings (the whole
:class:`~specviz.config.RunConfig`) and the repeat, decode greedily at batch size 1, and carry
no state from one request to the next (:func:`specviz.supports.stateless`: the baseline always;
prompt lookup or layer skip under a constant, per-request heuristic or stopping policy). The
suffix drafter's memory, the persistent and per-task heuristics, the cost-aware policy and a
draft model's cache prefix all carry state, so their runs always decode. Repeats never copy one
another: at greedy they give the same rounds, and they exist to measure the wall clock again.

Sources: single-task streams first, then the others, in plan order; the first unit that decodes
a request is its source, and a unit that copies anything is nobody's source (so every source
runs in the first wave and every copy in the second, :func:`waves`). The rows are copied by
:mod:`specviz.reuse` when the unit runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from specviz.reuse import Reused
from specviz.supports import stateless

if TYPE_CHECKING:
    from specviz.cost import CostModel
    from specviz.study.units import Unit
    from specviz.workloads.request import Request

_Key = tuple[str, int, tuple[str, ...], tuple[tuple[str, str], ...]]


def reuse_key(unit: Unit, request: Request) -> _Key | None:
    """What fixes ``request``'s rounds in ``unit``; None where they depend on more (batching,
    sampling, state carried across requests)."""
    config = unit.config
    if unit.batch is not None or not config.sampling.greedy:
        return None
    if not stateless(config.drafter.kind, config.policy.kind):
        return None
    settings = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return settings, request.repeat, request.prompt.turns, request.prompt.context


def _single_task(unit: Unit) -> bool:
    return len({r.prompt.category for r in unit.requests}) == 1


def assign_reuse(units: Sequence[Unit]) -> list[Unit]:
    """``units`` (same order) with each request that copies an earlier decode in ``reuse``."""
    decoded: dict[_Key, tuple[str, str]] = {}
    reuse: dict[int, tuple[Reused, ...]] = {}
    for i in sorted(range(len(units)), key=lambda i: (not _single_task(units[i]), i)):
        unit = units[i]
        keys = [(r, reuse_key(unit, r)) for r in unit.requests]
        found = tuple(
            Reused(r.id, *decoded[key]) for r, key in keys if key is not None and key in decoded
        )
        if found:
            reuse[i] = found
            continue
        for r, key in keys:
            if key is not None:
                decoded.setdefault(key, (unit.run_dir, r.id))
    return [replace(u, reuse=reuse.get(i, ())) for i, u in enumerate(units)]


def settle(units: Sequence[Unit], finished: set[str]) -> list[Unit]:
    """``units`` whose copies keep only sources that will exist when they run: a run directory
    in ``finished`` or a unit of ``units`` that decodes on its own (one shard may hold a copy
    whose source another shard decodes: it then decodes itself)."""
    available = finished | {u.run_dir for u in units if not u.reuse}
    return [replace(u, reuse=tuple(r for r in u.reuse if r.source in available)) for u in units]


def waves(units: Sequence[Unit]) -> list[list[Unit]]:
    """The units that decode everything first, then those that copy (their sources are done)."""
    first = [u for u in units if not u.reuse]
    second = [u for u in units if u.reuse]
    return [w for w in (first, second) if w]


@dataclass(frozen=True)
class ReuseSaving:
    """What copying saves: requests and budgeted tokens not decoded, and their estimated
    seconds (None without a cost curve)."""

    requests: int
    tokens: int
    seconds: float | None


def reuse_saving(units: Sequence[Unit], models: Mapping[str, CostModel]) -> ReuseSaving:
    """The copies among ``units`` whose source is one of them (the plan's estimate: every
    budgeted token one 1-row forward of its target, as :mod:`specviz.study.planning` prices)."""
    units = settle(units, set())
    copies = [(u, r) for u in units for r in u.requests if r.id in {c.request_id for c in u.reuse}]
    tokens = [len(r.prompt.turns) * u.config.max_new_tokens for u, r in copies]
    seconds = None
    if all(u.config.target.name in models for u, _ in copies):
        seconds = sum(
            t * models[u.config.target.name].verify(1)
            for t, (u, _) in zip(tokens, copies, strict=True)
        )
    return ReuseSaving(len(copies), sum(tokens), seconds)


def reuse_text(saving: ReuseSaving, total_tokens: int) -> str:
    """The plan's line about copies."""
    share = saving.tokens / total_tokens if total_tokens else 0.0
    line = (
        f"reuse: {saving.requests:,} requests ({saving.tokens:,} budgeted tokens, {share:.1%}) "
        "copy an earlier decode of the same prompt and settings instead of decoding again"
    )
    if saving.seconds is not None and saving.requests:
        minutes, secs = divmod(round(saving.seconds), 60)
        line += f", saving at most about {minutes} min {secs:02d} s"
    return line
