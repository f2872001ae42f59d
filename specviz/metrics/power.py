"""How wide each multitask term's interval will be at a planned size, and how many requests
reach a target width: the power plan of ``specviz study FILE --plan --prior DIR``.

Every multitask term of a stream (:data:`PLANNED_TERMS`) is a sum over the stream's requests of
a per-request figure x_r (:func:`specviz.metrics.degradation.request_parts`; with t_ref,r =
n_r * rate):

- composition: x_r = t_s*,r - n_r * rate;
- k mismatch: x_r = t_s1,r - t_s*,r;
- drafter memory of a shared-memory stream S with a per-task-memory counterpart P (the same
  requests in the same order): x_r = t_m(S, r) - t_m(P, r), the paired difference its
  interval resamples (:func:`specviz.metrics.remedies.memory_interval`);
- carry-over and residual without state across requests: 0 and x_r = t_m,r - t_s,r;
  with a constant-policy control of relative gap rho = G_C / T_S,C: carry-over
  x_r = t_m,r - t_s,r - rho t_s,r and residual x_r = rho t_s,r, plus the control's own spread
  T_S^2 Var(rho) (delta method: Var(rho) = Var(sum_i (g_i - rho t_s,i)) / T_S,C^2 over the
  control's requests), which scales with the planned size as the stream's part does.

The decomposition's bootstrap resamples the requests within each task (strata; thin tasks
pooled, :func:`specviz.metrics.bootstrap.strata`) and holds the reference rate fixed, so the
variance of a term's sum is sum_h m_h s_h^2 over strata h with m_h planned requests and
within-stratum variance s_h^2, and its 95% half-width, in percent of the single-task decode time
T_ref = rate * sum_h m_h nbar_h (nbar_h: mean new tokens of a request of task h), is

    half-width ~ 100 * z * sqrt(sum_h m_h s_h^2) / (rate * sum_h m_h nbar_h),   z = 1.96,

i.e. z * sd / sqrt(n) of a stratified mean: it falls as 1/sqrt(n) at fixed task shares, so the
requests needed for a target half-width are n * (half-width / target)^2 (:func:`requests_needed`).
A pooled stratum of thin tasks has the variance of their mixture (their within-task variances
plus the spread of their means).

What it assumes: the prior (a previous study, or a pilot of this one) priced its requests with
the same kind of cost curve as the planned study will (same target, dtype and machine: the
spread is in its seconds); each task's per-request spread s_h (unbiased, ddof 1), mean and
tokens carry over to the planned prompts; a task with one prior request takes the stream's
pooled within-task variance, a task absent from the prior the variance of all the stream's
requests (between tasks included: on the safe side) and the stream's means; the normal
approximation of the percentile interval holds (it does for sums of tens of requests; with a
handful of requests per task the percentile interval is narrower than z sd allows, since a
resample of 2 requests takes 3 values). A term that is exactly zero in every prior request is
zero by construction (no state across requests, identical rounds priced identically, one k)
and needs no requests.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl

from specviz.metrics.bootstrap import MIN_TASK_REQUESTS, strata
from specviz.metrics.degradation import (
    CONFIG,
    MULTITASK_TERMS,
    PERSISTENT_POLICIES,
    request_parts,
)
from specviz.metrics.frames import Frame

#: the terms the power plan predicts: what multitasking itself costs, and the drafter-memory
#: term of a shared-memory stream (:mod:`specviz.metrics.remedies`), in the answer's order
PLANNED_TERMS = (*MULTITASK_TERMS[:2], "drafter_memory", *MULTITASK_TERMS[2:])
#: a stream: its configuration and mixture (the key of a :func:`degradation` row)
STREAM_KEY = (*CONFIG, "mixture")
PREDICTED, ZERO, NOT_ESTIMABLE = "predicted", "zero by construction", "not estimable"

StreamKey = tuple[Any, ...]


def z_value(level: float = 0.95) -> float:
    """The two-sided normal quantile of ``level`` (1.96 at 0.95)."""
    return NormalDist().inv_cdf((1 + level) / 2)


@dataclass(frozen=True)
class TaskSpread:
    """One task's per-request figure of one term in the prior: ``requests``, its ``mean`` and
    unbiased variance ``var`` (seconds; None with one request)."""

    category: str
    requests: int
    mean: float
    var: float | None


@dataclass(frozen=True)
class TermSpread:
    """One term of one prior stream: its tasks' spreads; ``fallback_var`` (the stream's pooled
    within-task variance) for a task with one request; ``overall_mean`` and ``overall_var``
    (all the stream's requests) for a task the prior lacks; ``control_var`` (seconds^2: what
    the control's rho adds at the prior's size, 0 without a control); ``zero``: exactly zero
    in every prior request, so zero by construction."""

    part: str
    tasks: Mapping[str, TaskSpread]
    fallback_var: float | None
    overall_mean: float
    overall_var: float | None
    control_var: float
    zero: bool


@dataclass(frozen=True)
class StreamSpread:
    """One multitask stream of the prior: ``key`` (:data:`STREAM_KEY` values), its
    ``requests``, reference ``rate`` (seconds per token), mean new tokens per request of each
    task (``tokens``; ``mean_tokens`` over all) and its terms' spreads."""

    key: StreamKey
    requests: int
    rate: float
    tokens: Mapping[str, float]
    mean_tokens: float
    terms: Mapping[str, TermSpread]


def _var(values: np.ndarray) -> float | None:
    return float(np.var(values, ddof=1)) if values.size >= 2 else None


def _stratified_var(values: np.ndarray, categories: Sequence[str]) -> float:
    """The bootstrap's own variance of sum(values) (with replacement within strata, ddof 0)."""
    stratum = strata(list(categories))
    return float(sum(
        (stratum == s).sum() * np.var(values[stratum == s]) for s in np.unique(stratum)
    ))  # fmt: skip


def _term_spread(
    part: str, values: np.ndarray, categories: Sequence[str], control_var: float
) -> TermSpread:
    tasks = {}
    pooled_ss, pooled_df = 0.0, 0
    for category in sorted(set(categories)):
        mine = values[np.asarray(categories) == category]
        tasks[category] = TaskSpread(category, int(mine.size), float(mine.mean()), _var(mine))
        if mine.size >= 2:
            pooled_ss += float(((mine - mine.mean()) ** 2).sum())
            pooled_df += mine.size - 1
    overall = _var(values)
    return TermSpread(
        part=part,
        tasks=tasks,
        fallback_var=pooled_ss / pooled_df if pooled_df else overall,
        overall_mean=float(values.mean()),
        overall_var=overall,
        control_var=control_var,
        zero=bool(np.all(values == 0.0)) and control_var == 0.0,
    )


def _control_of(key: StreamKey, frames: Mapping[StreamKey, pl.DataFrame]) -> pl.DataFrame | None:
    """The constant-policy stream of the same target, temperature, drafter, k and mixture."""
    at = STREAM_KEY.index("policy")
    return frames.get((*key[:at], "constant", *key[at + 1 :]))


def _carry_parts(
    frame: pl.DataFrame, control: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, float]:
    """Carry-over and residual per request against a control, and the control's variance."""
    g_c = (control["t_m"] - control["t_s"]).to_numpy()
    t_sc = control["t_s"].to_numpy()
    rho = float(g_c.sum() / t_sc.sum())
    var_rho = _stratified_var(g_c - rho * t_sc, control["category"].to_list()) / t_sc.sum() ** 2
    t_s = frame["t_s"].to_numpy()
    gap = (frame["t_m"] - frame["t_s"]).to_numpy()
    return gap - rho * t_s, rho * t_s, float(t_s.sum() ** 2 * var_rho)


def _memory_values(
    key: StreamKey, frames: Mapping[StreamKey, pl.DataFrame], partitions: Mapping[str, str]
) -> np.ndarray | None:
    """The paired differences t_m(S, r) - t_m(P, r) of shared-memory stream ``key`` against its
    per-task-memory counterpart (same target, temperature, policy, k and mixture); None when it
    has none, or the two do not hold the same prompts in the same order."""
    at = STREAM_KEY.index("drafter")
    if partitions.get(key[at]) != "shared":
        return None
    counterparts = [k for k in frames if partitions.get(k[at]) == "task"
                    and k[:at] + k[at + 1 :] == key[:at] + key[at + 1 :]]  # fmt: skip
    if not counterparts:
        return None
    shared, per_task = frames[key], frames[sorted(counterparts)[0]]
    pairs = shared.join(
        per_task.select("request_index", "prompt_id", pl.col("t_m").alias("t_p")),
        on=["request_index", "prompt_id"],
    )
    if pairs.height != shared.height or pairs.height != per_task.height:
        return None
    return (pairs.sort("request_index")["t_m"] - pairs.sort("request_index")["t_p"]).to_numpy()


def _stream_spread(
    key: StreamKey,
    frame: pl.DataFrame,
    frames: Mapping[StreamKey, pl.DataFrame],
    partitions: Mapping[str, str],
) -> StreamSpread:
    config = dict(zip(STREAM_KEY, key, strict=True))
    categories = frame["category"].to_list()
    rate = float(frame["rate"][0])
    n = frame["n"].to_numpy()
    values = {
        "composition": (frame["t_s_best"].to_numpy() - n * rate, 0.0),
        "k_mismatch": ((frame["t_s_single"] - frame["t_s_best"]).to_numpy(), 0.0),
    }
    memory = _memory_values(key, frames, partitions)
    if memory is not None:
        values["drafter_memory"] = (memory, 0.0)
    gap = (frame["t_m"] - frame["t_s"]).to_numpy()
    control = _control_of(key, frames)
    if config["policy"] not in PERSISTENT_POLICIES:
        values["carry_over"], values["residual"] = (np.zeros_like(gap), 0.0), (gap, 0.0)
    elif control is not None:
        carry, residual, control_var = _carry_parts(frame, control)
        values["carry_over"], values["residual"] = (carry, control_var), (residual, control_var)
    tokens = frame.group_by("category").agg(pl.col("n").mean())
    return StreamSpread(
        key=key,
        requests=frame.height,
        rate=rate,
        tokens=dict(tokens.iter_rows()),
        mean_tokens=float(n.mean()),
        terms={p: _term_spread(p, v, categories, c) for p, (v, c) in values.items()},
    )


def stream_spreads(
    requests: Frame, seconds: str = "modelled_s", partitions: Mapping[str, str] | None = None
) -> dict[StreamKey, StreamSpread]:
    """The per-task spread of every multitask term of every multitask stream in ``requests``
    (a prior study's request table; ``seconds``: the clock the summary classifies on,
    ``modelled_s`` of :func:`specviz.metrics.accounting.decode_clock`), keyed by :data:`STREAM_KEY` values. A stateful stream without a
    constant-policy control has no carry-over or residual (not measured); ``partitions`` (each
    suffix drafter label's memory, ``shared`` or ``task``) gives a shared-memory stream with a
    per-task counterpart its drafter-memory term."""
    parts = request_parts(requests, seconds).sort("run_id", "request_index")
    frames = parts.partition_by(list(STREAM_KEY), as_dict=True, maintain_order=True)
    return {
        key: _stream_spread(key, frame, frames, partitions or {}) for key, frame in frames.items()
    }


@dataclass(frozen=True)
class TermPower:
    """The power of one term of one planned stream: ``status`` (:data:`PREDICTED`,
    :data:`ZERO`, :data:`NOT_ESTIMABLE`: the planned stream has a lone task of one request,
    which the bootstrap cannot resample), the expected 95% ``half_width_pct`` at the planned
    ``requests`` and the requests ``needed`` for ``target_pct`` at the same task shares."""

    part: str
    status: str
    requests: int
    target_pct: float
    half_width_pct: float | None = None
    needed: int | None = None

    @property
    def resolved(self) -> bool | None:
        """Whether the planned size resolves the term at the target (half-width <= target);
        None when not estimable."""
        if self.status == ZERO:
            return True
        return None if self.half_width_pct is None else self.half_width_pct <= self.target_pct


def _task_moments(term: TermSpread, category: str) -> tuple[float, float | None]:
    """(mean, variance) of a planned task's per-request figure (module docstring)."""
    task = term.tasks.get(category)
    if task is None:
        return term.overall_mean, term.overall_var
    return task.mean, task.var if task.var is not None else term.fallback_var


def planned_variance(term: TermSpread, counts: Mapping[str, int]) -> float | None:
    """Var(sum of the term's figures) over a planned stream of ``counts`` requests per task,
    strata as the bootstrap forms them (thin tasks pooled); None when a lone task of one
    request makes a stratum of one, or a task's variance is unknown."""
    thin = {c for c, m in counts.items() if m < MIN_TASK_REQUESTS}
    if thin and sum(counts[c] for c in thin) < MIN_TASK_REQUESTS:
        return None
    moments = {c: _task_moments(term, c) for c in counts}
    if any(v is None for _, v in moments.values()):
        return None
    total = sum(counts[c] * moments[c][1] for c in counts if c not in thin)  # type: ignore[operator]
    pooled = sum(counts[c] for c in thin)
    if pooled:
        weights = {c: counts[c] / pooled for c in thin}
        second = sum(w * (moments[c][1] + moments[c][0] ** 2) for c, w in weights.items())  # type: ignore[operator]
        mean = sum(w * moments[c][0] for c, w in weights.items())
        total += pooled * (second - mean**2)
    return float(total)


def half_width_pct(
    stream: StreamSpread, part: str, counts: Mapping[str, int], level: float = 0.95
) -> float | None:
    """The expected half-width of term ``part`` at ``level`` for a planned stream of
    ``counts`` requests per task, percent of its single-task decode time (module docstring)."""
    term = stream.terms[part]
    variance = planned_variance(term, counts)
    if variance is None:
        return None
    planned = sum(counts.values())
    variance += term.control_var * planned / stream.requests
    tokens = sum(m * stream.tokens.get(c, stream.mean_tokens) for c, m in counts.items())
    return 100.0 * z_value(level) * math.sqrt(variance) / (stream.rate * tokens)


def requests_needed(half_width: float, requests: int, target_pct: float) -> int:
    """Requests that give ``target_pct`` at the same task shares: the half-width falls as
    1/sqrt(n), so n * (half_width / target)^2, rounded up."""
    if target_pct <= 0:
        raise ValueError(f"target_pct must be > 0, got {target_pct}")
    return max(1, math.ceil(requests * (half_width / target_pct) ** 2 - 1e-9))


def term_power(
    stream: StreamSpread,
    part: str,
    counts: Mapping[str, int],
    target_pct: float,
    level: float = 0.95,
) -> TermPower | None:
    """:class:`TermPower` of term ``part`` for a planned stream of ``counts`` requests per
    task; None when the prior does not measure it (a stateful stream without a control)."""
    term = stream.terms.get(part)
    if term is None:
        return None
    planned = sum(counts.values())
    if term.zero:
        return TermPower(part, ZERO, planned, target_pct, 0.0, None)
    width = half_width_pct(stream, part, counts, level)
    if width is None:
        return TermPower(part, NOT_ESTIMABLE, planned, target_pct)
    return TermPower(
        part, PREDICTED, planned, target_pct, width, requests_needed(width, planned, target_pct)
    )


def task_counts(categories: Sequence[str]) -> dict[str, int]:
    """Requests per task of a stream given as one category per request."""
    return dict(Counter(categories))
