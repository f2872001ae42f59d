"""Which configuration to run on each drafted multitask stream and what to do, in numbers;
:mod:`specviz.report.answer` writes the advice, nothing here does.

- :func:`configurations`: per drafted multitask stream, on modelled seconds, its throughput, the
  best single k for its method, the best single static configuration for its traffic and the
  per-task oracle with each task's route (:mod:`specviz.metrics.oracle`);
- :func:`advise`: what to do, from the stream's classified terms and the oracle's routes, in
  this order: *do not speculate* (every task's best static configuration is the baseline);
  *route by task* (the best single configuration is the baseline yet some tasks gain from a
  drafter; or sharing the drafter memory, the policy's state or one k across tasks is an
  established loss, each checked in that order); *change k* (an established tuning loss: a
  better global k helps on any traffic); else *keep k*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from specviz.metrics.answer import FINDING, Term
from specviz.metrics.degradation import CONFIG, label_streams
from specviz.metrics.oracle import (
    NoOracleError,
    best_single_configuration,
    oracle_gap,
    oracle_routes,
)
from specviz.metrics.speedup import BASELINE

DO_NOT_SPECULATE, ROUTE_BY_TASK, CHANGE_K, KEEP_K = (
    "do not speculate",
    "route by task",
    "change k",
    "keep k",
)
# the established losses that route a stream by task, in the order they are checked
ROUTED_PARTS = ("drafter_memory", "carry_over", "k_mismatch")


@dataclass(frozen=True)
class Advice:
    """What to do on one stream (module docstring). ``action``: one of :data:`DO_NOT_SPECULATE`,
    :data:`ROUTE_BY_TASK`, :data:`CHANGE_K`, :data:`KEEP_K`; ``term``: the established loss
    that decides it (a :data:`ROUTED_PARTS` term, or tuning for ``change k``), None when the
    oracle's routes decide or nothing is established; ``speculate_on``: routed by the oracle,
    the tasks that gain from a drafter."""

    action: str
    term: Term | None = None
    speculate_on: tuple[str, ...] = ()


def _loss(term: Term | None) -> bool:
    """Whether ``term`` is an established loss (a positive finding)."""
    return term is not None and term.status == FINDING and (term.pct or 0.0) > 0


def advise(
    terms: Sequence[Term], routes: Sequence[Mapping[str, Any]], single_baseline: bool
) -> Advice:
    """The :class:`Advice` for a stream with classified ``terms`` (tuning, k mismatch and
    carry-over at least; drafter memory when measured), its tasks' oracle ``routes``
    (:func:`~specviz.metrics.oracle.oracle_routes` rows: category, speculate) and whether its
    best single configuration is the baseline."""
    speculating = tuple(r["category"] for r in routes if r["speculate"])
    if routes and not speculating:
        return Advice(DO_NOT_SPECULATE)
    if routes and single_baseline:
        return Advice(ROUTE_BY_TASK, speculate_on=speculating)
    by_part = {t.part: t for t in terms}
    for part in ROUTED_PARTS:
        if _loss(by_part.get(part)):
            return Advice(ROUTE_BY_TASK, by_part[part])
    if _loss(by_part["tuning"]):
        return Advice(CHANGE_K, by_part["tuning"])
    return Advice(KEEP_K)


@dataclass(frozen=True)
class Configuration:
    """Which configuration to run on one drafted multitask stream, on modelled seconds (tokens
    per second of the stream's own tokens): ``stream``, the index of the stream among those
    given; as run; at the best single k for its method; at the best single static
    configuration for its traffic (``single``, a route such as ``prompt-lookup k=5``;
    ``single_baseline``: it is the baseline); with the per-task oracle; and ``routes``, the
    oracle's choice for each of its tasks (:func:`~specviz.metrics.oracle.oracle_routes` rows)."""

    stream: int
    tokens_per_s: float
    single_k_tokens_per_s: float
    single: str
    single_baseline: bool
    single_tokens_per_s: float
    oracle_tokens_per_s: float
    routes: tuple[Mapping[str, Any], ...]


def configurations(
    priced: pl.DataFrame, streams: Sequence[Mapping[str, Any]]
) -> list[Configuration]:
    """A :class:`Configuration` for each drafted multitask stream that has an oracle gap and a
    best single configuration. ``priced``: requests with ``modelled_s``; ``streams``: their
    modelled :func:`~specviz.metrics.degradation.degradation` rows. Empty without an oracle
    (:class:`~specviz.metrics.oracle.NoOracleError`)."""
    modelled = priced.with_columns(pl.col("modelled_s").alias("wall_s"))
    try:
        gaps = oracle_gap(modelled)
        singles = best_single_configuration(modelled)
        routes = oracle_routes(modelled).to_dicts()
    except NoOracleError:
        return []
    keys = [*CONFIG, "mixture"]
    gap_by = {tuple(r[k] for k in keys): r for r in gaps.to_dicts()}
    single_by = {tuple(r[k] for k in keys): r for r in singles.to_dicts()}
    labelled = label_streams(modelled).filter(pl.col("multitask")).collect()
    out = []
    for i, row in enumerate(streams):
        key = tuple(row[k] for k in keys)
        if row["drafter"] == BASELINE or key not in gap_by or key not in single_by:
            continue
        mine = labelled.filter(*[pl.col(k).eq_missing(v) for k, v in zip(keys, key, strict=True)])
        tasks = set(mine["category"].to_list())
        task_routes = [
            r for r in routes
            if r["category"] in tasks and r["target"] == row["target"]
            and r["temperature"] == row["temperature"]
        ]  # fmt: skip
        n, single = row["tokens"], single_by[key]
        out.append(
            Configuration(
                stream=i,
                tokens_per_s=n / row["multitask_s"],
                single_k_tokens_per_s=n / row["single_k_s"],
                single=single["single"],
                single_baseline=single["single_baseline"],
                single_tokens_per_s=n / single["single_s"],
                oracle_tokens_per_s=n / gap_by[key]["oracle_s"],
                routes=tuple(task_routes),
            )
        )
    return out
