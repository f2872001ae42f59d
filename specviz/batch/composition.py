"""Batch composition: the same requests grouped into single-task or mixed batches.

Both groupings keep every request exactly once, so a single-task run and a mixed run of one
workload decode the same prompts and differ only in who shares a batch with whom:

- ``stream``: the stream's own order, cut into batches of ``size``;
- ``single-task``: requests grouped by category (categories in order of first appearance,
  requests in stream order within one), each category cut into batches of ``size`` on its own, so
  every batch holds one task (a category's last batch may be smaller);
- ``mixed``: requests dealt round-robin over the categories (one of each in turn, in order of
  first appearance), then cut into batches of ``size``: every batch holds ``min(size, tasks)``
  categories while they last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from specviz.workloads.prompt import Prompt

T = TypeVar("T")


def by_category(items: Sequence[T], prompt_of: dict[int, Prompt]) -> list[list[T]]:
    """``items`` grouped by their prompt's category, in order of first appearance."""
    groups: dict[str, list[T]] = {}
    for i, item in enumerate(items):
        groups.setdefault(prompt_of[i].category, []).append(item)
    return list(groups.values())


def chunk(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def compose(
    items: Sequence[T], prompts: Sequence[Prompt], size: int, composition: str
) -> list[list[T]]:
    """``items`` (one per prompt, aligned with ``prompts``) grouped into batches."""
    if composition == "stream":
        return chunk(items, size)
    groups = by_category(items, dict(enumerate(prompts)))
    if composition == "single-task":
        return [batch for group in groups for batch in chunk(group, size)]
    if composition == "mixed":
        dealt: list[T] = []
        for i in range(max(len(g) for g in groups)):
            dealt += [g[i] for g in groups if i < len(g)]
        return chunk(dealt, size)
    raise ValueError(f"unknown batch composition {composition!r}")
