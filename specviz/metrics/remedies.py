"""What each remedy recovers of the multitask loss, and the drafter-memory term.

Inputs are per-stream tables of one clock (the report uses modelled seconds):
:func:`specviz.metrics.oracle.oracle_gap` (T_M, the stream's seconds; T_O, the oracle's) and
:func:`specviz.metrics.degradation.degradation` (T_M, T_S, T_ref). A stream's configuration is
(target, temperature, drafter, policy, k) and its mixture; drafters are their labels, and
``partitions`` maps a suffix drafter's label to its memory partition (``shared`` or ``task``,
from each run's config).

**Remedies** (:data:`REMEDIES`), each a pair of multitask streams of the same target,
temperature and mixture that differ in one thing only:

- ``task-aware policy``: ``heuristic`` (one k carried across tasks) -> ``heuristic-per-task``,
  same drafter and k;
- ``per-task drafter memory``: a suffix drafter with ``partition = "shared"`` -> one with
  ``partition = "task"``, same policy and k;
- ``cost-aware k``: ``constant`` k -> ``cost-aware`` with k_max = k, same drafter.

recovered_share = (T_M(reference) - T_M(remedy)) / (T_M(reference) - T_O(reference))
(:func:`specviz.metrics.oracle.recovered_share`): 1 = the remedy closes the reference's oracle
gap, 0 = no better, < 0 = worse; null when the reference has no gap to recover (T_M <= T_O).

**Drafter memory** (:func:`memory_term`): a single-task stream fills a cross-request drafter
memory with its own task; a mixed stream with one shared memory does not. For a shared-memory
stream S with a per-task-memory counterpart P (same policy, k, mixture: the same requests in the
same order, each reading only its own task's earlier outputs, as in its single-task run):

- ``drafter_memory`` = T_M(S) - T_M(P): what sharing the memory across tasks costs (negative:
  what other tasks' entries gain);
- it is a part of S's interleaving term ``carry_over + residual`` = T_M(S) - T_S(S), which splits
  into ``drafter_memory`` + ``other_interleaving`` (= T_M(P) - T_S(S));
- percentages are of T_ref(S), the denominator of every term of the decomposition.

:func:`memory_terms` classifies that term as every other term of the decomposition
(:class:`MemoryTerm`, on modelled seconds with its wall-clock twin), and :func:`absences` says
why a remedy has no recovered share (:class:`Absence`: not run, no oracle, or no oracle gap);
:mod:`specviz.report.answer` writes the sentences.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from specviz.config import N_BOOT
from specviz.metrics.answer import Term, classify_term, share_pct
from specviz.metrics.bootstrap import strata, stratified_sums
from specviz.metrics.degradation import label_streams, thin_tasks
from specviz.metrics.oracle import recovered_share

REMEDIES = ("task-aware policy", "per-task drafter memory", "cost-aware k")
KEYS = ("target", "temperature", "mixture")
_POLICY_REMEDIES = {"task-aware policy": ("heuristic", "heuristic-per-task"),
                    "cost-aware k": ("constant", "cost-aware")}  # fmt: skip


def remedy_pairs(
    streams: pl.DataFrame, partitions: Mapping[str, str]
) -> list[tuple[str, dict, dict]]:
    """(remedy, reference config, remedy config) for every matching pair of streams."""
    configs = streams.select(*KEYS, "drafter", "policy", "k").unique().sort(pl.all()).to_dicts()
    pairs = []
    for ref in configs:
        for rem in configs:
            if any(ref[c] != rem[c] for c in KEYS) or ref["k"] != rem["k"]:
                continue
            for name, (before, after) in _POLICY_REMEDIES.items():
                same_drafter = ref["drafter"] == rem["drafter"]
                if same_drafter and (ref["policy"], rem["policy"]) == (before, after):
                    pairs.append((name, ref, rem))
            shared = partitions.get(ref["drafter"]) == "shared"
            per_task = partitions.get(rem["drafter"]) == "task"
            if shared and per_task and ref["policy"] == rem["policy"]:
                pairs.append(("per-task drafter memory", ref, rem))
    return pairs


def _select(config: dict) -> pl.Expr:
    return pl.all_horizontal(pl.col(c) == config[c] for c in (*KEYS, "drafter", "policy", "k"))


def remedies(gaps: pl.DataFrame, partitions: Mapping[str, str]) -> pl.DataFrame:
    """One row per remedy pair present in ``gaps`` (an :func:`oracle_gap` table): remedy,
    target, temperature, mixture, reference and remedy (drafter/policy/k), reference_s,
    remedy_s, oracle_s, recovered_share (module docstring)."""
    rows = []
    for name, ref, rem in remedy_pairs(gaps, partitions):
        share = recovered_share(gaps, _select(ref), _select(rem)).row(0, named=True)
        gap = share["reference_s"] - share["oracle_s"]
        rows.append(
            {
                "remedy": name,
                **{c: ref[c] for c in KEYS},
                "reference": f"{ref['drafter']}/{ref['policy']}/k={ref['k']}",
                "remedied": f"{rem['drafter']}/{rem['policy']}/k={rem['k']}",
                "reference_s": share["reference_s"],
                "remedy_s": share["remedy_s"],
                "oracle_s": share["oracle_s"],
                "recovered_share": share["recovered_share"] if gap > 0 else None,
            }
        )
    schema = {"remedy": pl.String, "target": pl.String, "temperature": pl.Float64,
              "mixture": pl.String, "reference": pl.String, "remedied": pl.String,
              "reference_s": pl.Float64, "remedy_s": pl.Float64, "oracle_s": pl.Float64,
              "recovered_share": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def memory_term(table: pl.DataFrame, partitions: Mapping[str, str]) -> pl.DataFrame:
    """The drafter-memory term of each shared-memory stream with a per-task-memory counterpart.

    ``table``: a :func:`degradation` table (one clock). Columns: target, temperature, mixture,
    policy, k, shared, per_task (drafter labels), interleaving_s (T_M(S) - T_S(S)),
    drafter_memory_s (T_M(S) - T_M(P)), other_interleaving_s (T_M(P) - T_S(S)), reference_s
    (T_ref(S)), and each of the three as ``_pct`` of reference_s (module docstring).
    """
    rows = []
    for name, ref, rem in remedy_pairs(table, partitions):
        if name != "per-task drafter memory":
            continue
        s = table.filter(_select(ref)).row(0, named=True)
        p = table.filter(_select(rem)).row(0, named=True)
        parts = {
            "interleaving_s": s["multitask_s"] - s["single_task_s"],
            "drafter_memory_s": s["multitask_s"] - p["multitask_s"],
            "other_interleaving_s": p["multitask_s"] - s["single_task_s"],
        }
        ref_s = s["reference_s"]
        rows.append(
            {
                **{c: ref[c] for c in KEYS},
                "policy": ref["policy"],
                "k": ref["k"],
                "shared": ref["drafter"],
                "per_task": rem["drafter"],
                **{n: round(v, 9) + 0.0 for n, v in parts.items()},
                "reference_s": ref_s,
                **{f"{n[:-2]}_pct": 100 * v / ref_s for n, v in parts.items()},
            }
        )
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def memory_interval(
    requests: pl.DataFrame,
    row: Mapping[str, object],
    *,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The drafter-memory term of one :func:`memory_term` row with its percentile interval.

    ``requests``: labelled requests (:func:`specviz.metrics.degradation.label_streams`) timed by
    ``wall_s`` (either clock). S and P hold the same requests in the same order, so the term is
    a sum of paired differences, d_i = wall(S, i) - wall(P, i) over request_index i;
    ``drafter_memory_s`` = sum_i d_i, and its interval resamples the pairs within each task,
    pooling the tasks of one pair (as the decomposition does,
    :func:`specviz.metrics.bootstrap.strata`); ``thin_tasks``: the tasks with too few pairs
    for that interval (:func:`specviz.metrics.degradation.thin_tasks`). None when the two
    streams do not hold the same prompts in the same order.
    """
    keys = [*KEYS, "policy", "k"]
    base = requests.filter(pl.col("multitask"), *[pl.col(c).eq_missing(row[c]) for c in keys])
    shared = base.filter(pl.col("drafter") == row["shared"])
    per_task = base.filter(pl.col("drafter") == row["per_task"])
    pairs = shared.join(
        per_task.select("request_index", "prompt_id", pl.col("wall_s").alias("wall_p")),
        on=["request_index", "prompt_id"],
    )
    if not pairs.height or pairs.height != shared.height or pairs.height != per_task.height:
        return None
    pairs = pairs.with_columns((pl.col("wall_s") - pl.col("wall_p")).round(9).alias("d"))
    stratum = strata(pairs["category"].to_list())
    sampled = stratified_sums({"d": pairs["d"].to_numpy()}, stratum, n_boot, [seed])["d"]
    low, high = np.quantile(sampled, [(1 - level) / 2, (1 + level) / 2])
    return {
        "drafter_memory_s": round(float(pairs["d"].sum()), 9) + 0.0,
        "drafter_memory_low": round(float(low), 9) + 0.0,
        "drafter_memory_high": round(float(high), 9) + 0.0,
        "thin_tasks": thin_tasks(pairs["category"].to_list()),
    }


@dataclass(frozen=True)
class MemoryTerm:
    """The drafter-memory term of one shared-memory stream, classified as every other term
    (:func:`specviz.metrics.answer.classify_term`) on modelled seconds: ``stream``, the index of
    the stream among those given; ``wall_pct``: its wall-clock twin, percent of the stream's
    wall-clock single-task decode time (None when the wall clock pairs no requests)."""

    stream: int
    term: Term
    wall_pct: float | None


def memory_terms(
    priced: pl.DataFrame,
    clocked: pl.DataFrame,
    modelled: Sequence[Mapping[str, Any]],
    wall: Sequence[Mapping[str, Any]],
    partitions: Mapping[str, str],
    n_boot: int,
) -> list[MemoryTerm]:
    """A :class:`MemoryTerm` for each shared-memory stream with a per-task-memory counterpart
    (:func:`memory_term`) whose two streams hold the same requests (:func:`memory_interval`).

    ``priced``: requests with ``modelled_s`` and ``wall_s``; ``clocked``: those with a
    batch-size-1 wall clock (the wall-clock twin's requests); ``modelled``, ``wall``: the
    streams' :func:`degradation` rows on each clock, in the same order.
    """
    if not modelled:
        return []
    rows = memory_term(pl.DataFrame(list(modelled)), partitions)
    if not rows.height:
        return []
    wall_requests = label_streams(clocked).collect()
    modelled_requests = (
        label_streams(priced).collect().with_columns(pl.col("modelled_s").alias("wall_s"))
    )
    keys = ("target", "temperature", "mixture", "policy", "k")
    out = []
    for m in rows.iter_rows(named=True):
        est = memory_interval(modelled_requests, m, n_boot=n_boot)
        at = next(
            (
                i
                for i, r in enumerate(modelled)
                if r["drafter"] == m["shared"] and all(r[c] == m[c] for c in keys)
            ),
            None,
        )
        if est is None or at is None:
            continue
        checked = memory_interval(wall_requests, m, n_boot=n_boot)
        values = {
            "reference_s": modelled[at]["reference_s"],
            "control": modelled[at]["control"],
            "drafter_memory": est["drafter_memory_s"],
            "drafter_memory_low": est["drafter_memory_low"],
            "drafter_memory_high": est["drafter_memory_high"],
            "thin_tasks": est["thin_tasks"],
        }
        wall_s = None if checked is None else checked["drafter_memory_s"]
        term = classify_term(values, "drafter_memory")
        out.append(MemoryTerm(at, term, share_pct(wall_s, wall[at]["reference_s"])))
    return out


# why a remedy has no recovered share: the study ran no pair of streams for it; it did, but
# there is no oracle (modelled seconds); or there is one, but no oracle gap for its streams
NOT_RUN, NO_ORACLE, NO_GAP = "not run", "no oracle", "no oracle gap"


@dataclass(frozen=True)
class Absence:
    """A remedy with no recovered share, and why (:data:`NOT_RUN`, :data:`NO_ORACLE` or
    :data:`NO_GAP`)."""

    remedy: str
    reason: str


def absences(
    requests: pl.DataFrame,
    partitions: Mapping[str, str],
    recovered: Collection[str],
    has_oracle: bool,
) -> list[Absence]:
    """An :class:`Absence` for each of :data:`REMEDIES` not in ``recovered`` (the remedies with a
    :func:`remedies` row), in that order. ``requests``: the study's requests (the multitask
    streams are the candidates for a remedy pair); ``has_oracle``: whether the oracle could be
    formed (:class:`~specviz.metrics.oracle.NoOracleError` otherwise)."""
    streams = label_streams(requests).filter(pl.col("multitask")).collect()
    present = {name for name, _, _ in remedy_pairs(streams, partitions)}
    missing = NO_GAP if has_oracle else NO_ORACLE
    return [
        Absence(name, missing if name in present else NOT_RUN)
        for name in REMEDIES
        if name not in recovered
    ]
