"""Cost accounting: every request's rounds priced with one cost curve, beside its wall clock.

Under greedy decoding the round structure of a request (how many rounds, how many tokens each
drafted and verified) is exact and repeatable; only the seconds are noisy, and they depend on
what else the machine did while that stream ran. Cost accounting separates the two:

1. **Calibrate** (:func:`fit_cost_models`), once per target, pooled over every unbatched round
   of every run given (a whole study). Each request's load factor (:func:`load_factors`, a median
   polish of log seconds by request and rows) is divided out of its rounds' seconds first; then
   ``verify_s[rows - 1]`` = median ``verify_s`` of the verify
   rounds that verified ``rows = n_drafted + 1`` tokens; ``draft_s[drafter][tokens]`` = median
   ``draft_s`` of that drafter's rounds that proposed ``tokens`` tokens (rounds where the drafter
   was called, ``draft_s > 0``); prefill = least-squares parabola (a line when it would bend
   down) through the median prefill seconds at each distinct prompt length (``turn_prompt_tokens``). Row counts or token counts
   never observed between observed ones are interpolated linearly; below the first observed
   token count a draft curve is flat. Medians pool all streams, so no stream's calibration
   depends on when it ran.
2. **Price** (:func:`modelled_seconds`): modelled_s = sum over prefill rounds of
   ``prefill(turn_prompt_tokens[turn])`` + sum over verify rounds of ``draft(drafter,
   n_drafted)`` (when called) + ``verify(n_drafted + 1)``. Each round's price is rounded to a
   whole nanosecond and summed as an integer, so two requests with the same rounds get
   bit-identical modelled seconds whatever their order or stream.

Assumptions (docs/metrics.md): a round's cost depends only on its rows, its drafter and its
drafted tokens (not on the context length, which grows within a request); per-round Python
overhead (sampling, bookkeeping) is left out, so modelled seconds sit below the wall clock and
their ratio is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from specviz.cost import CostModel
from specviz.errors import SpecvizError
from specviz.metrics.degradation import CONFIG, label_streams
from specviz.metrics.frames import Frame, events_frame, requests_frame
from specviz.rundir import CO_DECODED_KEY

NS = 1_000_000_000
ROUND_COLUMNS = ("run_id", "request_id", "target", "drafter", "turn", "round", "prefill", "kind")
ROUND_COLUMNS += ("n_drafted", "draft_s", "verify_s")
MODELLED = ("modelled_s", "modelled_prefill_s", "modelled_draft_s", "modelled_verify_s")


class CalibrationError(SpecvizError):
    """The rounds given cannot calibrate a cost model (no verify round of a target)."""


def round_table(events: Frame, requests: Frame) -> pl.DataFrame:
    """One row per unbatched round: run_id, request_id, target, drafter, turn, prefill,
    n_drafted, rows (= n_drafted + 1), called (the drafter ran: ``draft_s > 0``), draft_s,
    verify_s, batch_rows (rows of the forward that verified it: > 1 for a co-decoded round, 1
    when verified alone) and prompt_tokens (the turn's ``turn_prompt_tokens``; the request's
    ``prompt_tokens`` where that list is null). Every round is priced
    (:func:`modelled_seconds`); only :func:`verified_alone` rounds calibrate."""
    lazy = events_frame(events, ROUND_COLUMNS)
    schema = lazy.collect_schema()
    if "batch_size" in schema:
        lazy = lazy.filter(pl.col("batch_size").fill_null(1) == 1)
    # a co-decoded round (verified beside other runs' rows) is a batch-size-1 round with a
    # shared clock: priced like any other, but never calibrated from (verified_alone)
    shared = pl.col("batch_rows").fill_null(1) if "batch_rows" in schema else pl.lit(1)
    lazy = lazy.with_columns(shared.cast(pl.Int64).alias("batch_rows"))
    reqs = requests_frame(requests, ["run_id", "request_id", "prompt_tokens"])
    if "turn_prompt_tokens" not in reqs.collect_schema():
        reqs = reqs.with_columns(pl.lit(None, dtype=pl.List(pl.Int32)).alias("turn_prompt_tokens"))
    reqs = reqs.select("run_id", "request_id", "prompt_tokens", "turn_prompt_tokens")
    return (
        lazy.filter(pl.col("kind") != "draft")
        .select(
            "run_id",
            "request_id",
            "target",
            "drafter",
            "turn",
            "round",
            "prefill",
            pl.col("n_drafted").cast(pl.Int64),
            (pl.col("n_drafted").cast(pl.Int64) + 1).alias("rows"),
            (pl.col("draft_s") > 0).alias("called"),
            "draft_s",
            "verify_s",
            "batch_rows",
        )
        .join(reqs, on=["run_id", "request_id"], how="left")
        .with_columns(
            pl.coalesce(
                pl.col("turn_prompt_tokens").list.get(
                    pl.col("turn").cast(pl.Int64), null_on_oob=True
                ),
                pl.col("prompt_tokens"),
            )
            .cast(pl.Int64)
            .alias("prompt_tokens")
        )
        .drop("turn_prompt_tokens")
        .sort("run_id", "request_id", "round")
        .collect()
    )


def verified_alone(rounds: pl.DataFrame) -> pl.DataFrame:
    """The rounds of a :func:`round_table` whose seconds are their own: verified in a forward
    of their run's rows only (``batch_rows == 1``). A co-decoded round's seconds are a share of
    a forward shared with other runs' rows, so cost curves and load factors never read them;
    its rounds are still priced like the same rounds decoded alone (docs/metrics.md)."""
    return rounds.filter(pl.col("batch_rows") == 1)


def wall_clocked(requests: pl.DataFrame, metas: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The ``requests`` that have a batch-size-1 wall clock: those of the runs (``metas``, their
    run.json) that were not co-decoded. A co-decoded run's requests (run.json ``co_decoded``,
    also set on a run that reused a co-decoded run's requests) spent their wall seconds in
    forwards and a process shared with other runs' rows, so their wall clock is not what a
    batch-size-1 deployment would see: they are priced (``modelled_s``) like any request, and
    every wall-clock figure is computed from the other requests only (a study keeps such a
    batch-size-1 subsample, docs/studies.md)."""
    shared = [m["run_id"] for m in metas if m.get(CO_DECODED_KEY)]
    return requests.filter(~pl.col("run_id").is_in(shared)) if shared else requests


def _filled_curve(points: Mapping[int, float], start: int) -> tuple[float, ...]:
    """Values at ``start..max(points)``: measured points, linear between them, flat below."""
    xs = sorted(points)
    ys = [points[x] for x in xs]
    grid = np.arange(start, xs[-1] + 1)
    return tuple(float(v) for v in np.interp(grid, xs, ys))


def _medians(frame: pl.DataFrame, key: str, value: str) -> dict[int, float]:
    table = frame.group_by(key).agg(pl.col(value).median()).sort(key)
    return dict(zip(table[key].to_list(), table[value].to_list(), strict=True))


def _prefill_curve(prefills: pl.DataFrame) -> tuple[float, float, float]:
    """(intercept, per token, per token squared) of the prefill seconds: least squares through
    the median at each distinct prompt length, a parabola from 3 lengths on (attention grows
    with the square of the prompt), the line when the parabola bends down (noise, not a cost),
    flat at one length."""
    points = prefills.drop_nulls("prompt_tokens")
    if points.height == 0:
        return 0.0, 0.0, 0.0
    medians = _medians(points, "prompt_tokens", "verify_s")
    xs = np.asarray(list(medians), dtype=float)
    ys = np.asarray(list(medians.values()), dtype=float)
    if len(xs) < 2:
        return float(ys[0]), 0.0, 0.0
    if len(xs) >= 3:
        square, slope, intercept = np.polyfit(xs, ys, 2)
        if square > 0:
            return float(intercept), float(slope), float(square)
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope), 0.0


def load_factors(verify: pl.DataFrame, sweeps: int = 20) -> dict[str, float]:
    """Each request's load factor: how much slower its rounds ran than the median request's.

    Keyed ``run_id/request_id``. A two-way fit by median polish of log(verify_s) = log f(request)
    + log T(rows) over the verify rounds given: requests run at different times under different
    machine load (the other worker, other jobs), so without it the curve's shape would carry
    whichever load the conditions that verify many rows happened to meet. Factors are scaled so
    the median request's is 1. No verify round timed above 0 s: no factor (an empty dict; the
    polish would otherwise fail on an empty table).
    """
    frame = verify.filter(pl.col("verify_s") > 0).select(
        pl.concat_str("run_id", "request_id", separator="/").alias("run_id"),
        "rows",
        pl.col("verify_s").log().alias("y"),
    )
    if frame.height == 0:
        return {}
    run_eff = {r: 0.0 for r in frame["run_id"].unique().to_list()}
    for _ in range(sweeps):
        with_run = frame.with_columns(
            pl.col("run_id").replace_strict(run_eff, return_dtype=pl.Float64).alias("f")
        )
        row_eff = dict(
            with_run.group_by("rows").agg((pl.col("y") - pl.col("f")).median()).iter_rows()
        )
        with_rows = frame.with_columns(
            pl.col("rows").replace_strict(row_eff, return_dtype=pl.Float64).alias("t")
        )
        run_eff = dict(
            with_rows.group_by("run_id").agg((pl.col("y") - pl.col("t")).median()).iter_rows()
        )
    center = float(np.median(list(run_eff.values())))
    return {r: float(np.exp(v - center)) for r, v in sorted(run_eff.items())}


def fit_cost_model(rounds: pl.DataFrame, source: str) -> CostModel:
    """The cost model of the rounds of one target (a :func:`round_table`; see the module).

    Every round's seconds are first divided by its request's load factor (:func:`load_factors`),
    so the curve is that of the median request's conditions whichever request met which load.
    """
    verify = rounds.filter(~pl.col("prefill"))
    if verify.height == 0:
        raise CalibrationError(f"{source}: no verify round to calibrate the verify cost from")
    factors = load_factors(verify)
    rounds = rounds.with_columns(
        pl.concat_str("run_id", "request_id", separator="/")
        .replace_strict(factors, default=1.0, return_dtype=pl.Float64)
        .alias("f")
    ).with_columns(pl.col("verify_s") / pl.col("f"), pl.col("draft_s") / pl.col("f"))
    verify = rounds.filter(~pl.col("prefill"))
    drafts = {}
    drafted = verify.filter(pl.col("called") & (pl.col("drafter") != "none"))
    for (drafter,), part in sorted(drafted.partition_by("drafter", as_dict=True).items()):
        drafts[drafter] = _filled_curve(_medians(part, "n_drafted", "draft_s"), 0)
    intercept, slope, square = _prefill_curve(rounds.filter(pl.col("prefill")))
    spread = f"{min(factors.values()):.2f}-{max(factors.values()):.2f}x" if factors else "n/a"
    return CostModel(
        verify_s=_filled_curve(_medians(verify, "rows", "verify_s"), 1),
        draft_s=drafts,
        prefill_intercept_s=intercept,
        prefill_s_per_token=slope,
        prefill_s_per_token2=square,
        source=f"{source}; request load factors {spread} removed",
        samples={
            "verify_rounds": verify.height,
            "draft_rounds": drafted.height,
            "prefill_rounds": rounds.height - verify.height,
            "runs": rounds["run_id"].n_unique(),
        },
    )


def fit_cost_models(events: Frame, requests: Frame, source: str = "pooled") -> dict[str, CostModel]:
    """One cost model per target, pooled over every unbatched round given that was verified
    alone (:func:`verified_alone`; module docstring)."""
    rounds = verified_alone(round_table(events, requests))
    if rounds.height == 0:
        raise CalibrationError("no unbatched round to calibrate a cost model from")
    return {
        target: fit_cost_model(part, f"{source}: median over {part['run_id'].n_unique()} runs")
        for (target,), part in sorted(rounds.partition_by("target", as_dict=True).items())
    }


def _price(
    model: CostModel, prefill: bool, drafter: str, drafted: int, called: bool, prompt: int
) -> tuple[float, float, float]:
    """(prefill, draft, verify) seconds of one round."""
    if prefill:
        return model.prefill(prompt), 0.0, 0.0
    draft = model.draft(drafter, drafted) if called and drafter != "none" else 0.0
    return 0.0, draft, model.verify(drafted + 1)


def modelled_seconds(
    events: Frame, requests: Frame, models: Mapping[str, CostModel]
) -> pl.DataFrame:
    """Modelled seconds of every unbatched request: run_id, request_id, modelled_s =
    modelled_prefill_s + modelled_draft_s + modelled_verify_s (module docstring)."""
    rounds = round_table(events, requests)
    keys = ["target", "prefill", "drafter", "n_drafted", "called", "prompt_tokens"]
    combos = rounds.select(keys).unique().sort(keys, nulls_last=True)
    prices = []
    for target, prefill, drafter, drafted, called, prompt in combos.iter_rows():
        if target not in models:
            raise CalibrationError(f"no cost model for target {target!r}")
        parts = _price(models[target], prefill, drafter, drafted, called, prompt or 0)
        prices.append([round(p * NS) for p in parts])
    priced = combos.with_columns(
        pl.Series("p_ns", [p[0] for p in prices], dtype=pl.Int64),
        pl.Series("d_ns", [p[1] for p in prices], dtype=pl.Int64),
        pl.Series("v_ns", [p[2] for p in prices], dtype=pl.Int64),
    )
    per_request = (
        rounds.join(priced, on=keys, how="left", nulls_equal=True)
        .group_by("run_id", "request_id")
        .agg(pl.col("p_ns").sum(), pl.col("d_ns").sum(), pl.col("v_ns").sum())
        .with_columns((pl.col("p_ns") + pl.col("d_ns") + pl.col("v_ns")).alias("t_ns"))
    )
    return per_request.select(
        "run_id",
        "request_id",
        (pl.col("t_ns") / NS).alias("modelled_s"),
        (pl.col("p_ns") / NS).alias("modelled_prefill_s"),
        (pl.col("d_ns") / NS).alias("modelled_draft_s"),
        (pl.col("v_ns") / NS).alias("modelled_verify_s"),
    ).sort("run_id", "request_id")


def with_modelled_seconds(
    requests: pl.DataFrame, events: Frame, models: Mapping[str, CostModel]
) -> pl.DataFrame:
    """``requests`` (unbatched rows) with the :data:`MODELLED` columns of :func:`modelled_seconds`.

    Batched requests are dropped: their rounds share forwards and are compared by
    :mod:`specviz.metrics.batching` instead.
    """
    unbatched = requests
    if "batch_size" in requests.columns:
        unbatched = requests.filter(pl.col("batch_size").fill_null(1) == 1)
    priced = modelled_seconds(events, unbatched, models)
    return unbatched.join(priced, on=["run_id", "request_id"], how="left")


#: each clock's seconds and the part of them spent in prefill forwards
_PREFILL_OF = {"modelled_s": "modelled_prefill_s", "wall_s": "prefill_s"}


def decode_clock(priced: pl.DataFrame) -> pl.DataFrame:
    """``priced`` (requests with ``wall_s``, and ``modelled_s`` when priced) on the decode
    clock, the clock of the degradation decomposition and its remedies:
    ``modelled_s - modelled_prefill_s`` and
    ``wall_s - prefill_s`` in place of ``modelled_s`` and ``wall_s``, each request's seconds
    without its turns' prefill forwards (the time after each turn's first token: vLLM's TPOT
    convention, summed over the request rather than averaged per token).

    Design choice: speculation changes only the decode; a prefill costs the same under every
    drafter, k and policy, and it grows with the square of the prompt (the cost model's
    parabola). Kept in, it adds to every request a cost no speculation setting touches and whose
    spread across prompts (a 30-token question beside a 1,000-token chat history) widens the
    interval of the one term that compares different prompts, composition, without saying
    anything about speculation. Speedups stay end to end (Spec-Bench's convention, prefill
    included); the prefill share is in the per-request distributions."""
    return priced.with_columns(
        (pl.col(clock) - pl.col(prefill)).alias(clock)
        for clock, prefill in _PREFILL_OF.items()
        if clock in priced.columns
    )


def request_load_factors(events: Frame, requests: Frame) -> pl.DataFrame:
    """Each unbatched request's load factor (:func:`load_factors`, per target): run_id,
    request_id, load_factor (1 = the median request's load; 2 = its rounds ran twice as slow);
    from the rounds verified alone (a co-decoded request has none, and no factor)."""
    rounds = verified_alone(round_table(events, requests))
    rows = []
    for (_target,), part in sorted(rounds.partition_by("target", as_dict=True).items()):
        for key, factor in load_factors(part.filter(~pl.col("prefill"))).items():
            run_id, request_id = key.split("/", 1)
            rows.append((run_id, request_id, factor))
    schema = {"run_id": pl.String, "request_id": pl.String, "load_factor": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def wall_clock_load(priced: pl.DataFrame) -> pl.DataFrame:
    """How much machine load alone moves each multitask stream's wall-clock extra time.

    ``priced``: requests with ``modelled_s`` and ``load_factor``. The wall clock of a request is
    about its modelled seconds times its load factor f (times per-round overhead), so a set of
    requests runs at the load L = sum(modelled_s * f) / sum(modelled_s). Per multitask stream
    (target, temperature, drafter, policy, k, mixture): ``multitask_load`` L_M over its requests,
    ``single_task_load`` L_S over the single-task requests of the same target, temperature,
    drafter and policy (every k) on the stream's tasks, and ``load_shift`` = L_M / L_S - 1: the
    relative change in the wall-clock T_M / T_ref that load alone makes (0 = both ran under the
    same load). ``min_load`` and ``max_load``: the range of the per-request factors involved.
    """
    labelled = label_streams(priced).collect()
    weighted = (pl.col("modelled_s") * pl.col("load_factor")).sum() / pl.col("modelled_s").sum()
    but_k = [c for c in CONFIG if c != "k"]
    rows = []
    multi = labelled.filter(pl.col("multitask"))
    for key, stream in multi.partition_by([*CONFIG, "mixture"], as_dict=True).items():
        config = dict(zip([*CONFIG, "mixture"], key, strict=True))
        single = labelled.filter(
            ~pl.col("multitask"),
            pl.col("category").is_in(stream["category"].unique().implode()),
            *[pl.col(c).eq_missing(config[c]) for c in but_k],
        )
        if single.height == 0:
            continue
        both = pl.concat([stream, single])
        l_m, l_s = stream.select(weighted).item(), single.select(weighted).item()
        rows.append(
            {
                **config,
                "multitask_load": l_m,
                "single_task_load": l_s,
                "load_shift": l_m / l_s - 1,
                "min_load": both["load_factor"].min(),
                "max_load": both["load_factor"].max(),
            }
        )
    return pl.DataFrame(rows) if rows else pl.DataFrame()
