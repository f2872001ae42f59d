"""Theory against measurement: the speedup Leviathan et al. predict from measured quantities.

With drafted length gamma and i.i.d. acceptance probability alpha, a verify round emits on
average E(alpha, gamma) = (1 - alpha^(gamma + 1)) / (1 - alpha) tokens (gamma + 1 when alpha = 1),
bonus or correction included (Leviathan et al. 2023, eq. 1). With constant costs (one draft step
costs c target steps) the expected speedup is E / (gamma * c + 1). On CPUs the cost of a target
forward grows with the number of tokens it verifies, so specviz uses measured costs:

- T(n): mean ``verify_s`` of the verify rounds of a target that verified n = n_drafted + 1
  tokens (all drafters and categories of that target pooled: a property of model and hardware);
  unmeasured n inside the measured range is linearly interpolated, beyond it linearly
  extrapolated by least squares over the measured points (``verify_cost_source`` says which);
- d: draft seconds per drafted token of the group = sum(draft_s) / sum(n_drafted) over its verify
  rounds;
- b: the baseline's seconds per token = sum(verify_s) / emitted tokens over the verify rounds of
  ``drafter == "none"`` (same target; same category when grouping by category).

Predicted speedup of a group at the measured condition (its own mix of drafted lengths n):
``b * mean_rounds E(alpha, n) / mean_rounds (d * n + T(n + 1))``; at a fixed gamma:
``b * E(alpha, gamma) / (d * gamma + T(gamma + 1))``. alpha is the group's conditional acceptance
(accepted / verified drafts, the maximum-likelihood alpha of the i.i.d. model). The measured
decode speedup is ``b / decode_s_per_token`` with decode_s_per_token = (draft + verify seconds of
verify rounds) / tokens they emitted: both sides exclude prefill and per-round Python overhead,
so their gap is the model's (i.i.d. acceptance, one alpha for every position) plus the tokens
cut at the end of a turn (drafted past an end-of-sequence token or the token budget).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from specviz.metrics import expressions as ex
from specviz.metrics.frames import Frame, collect, events_frame, group_list
from specviz.metrics.speedup import BASELINE, MissingBaselineError
from specviz.metrics.summary import CONFIG_K, with_config_k

_CATEGORY_LIKE = ("category", "prompt_id")


def expected_tokens(alpha: np.ndarray | float, gamma: np.ndarray | float) -> np.ndarray:
    """E(alpha, gamma) = (1 - alpha^(gamma+1)) / (1 - alpha); gamma + 1 at alpha = 1."""
    a = np.asarray(alpha, dtype=np.float64)
    g = np.asarray(gamma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = (1.0 - a ** (g + 1.0)) / (1.0 - a)
    return np.where(np.isclose(a, 1.0), g + 1.0, e)


def leviathan_speedup(
    alpha: np.ndarray | float, gamma: np.ndarray | float, c: np.ndarray | float
) -> np.ndarray:
    """Leviathan et al.'s constant-cost speedup E(alpha, gamma) / (gamma * c + 1)."""
    return expected_tokens(alpha, gamma) / (np.asarray(gamma, dtype=np.float64) * c + 1.0)


def _expected_tokens_expr(alpha: pl.Expr, gamma: pl.Expr) -> pl.Expr:
    g = gamma.cast(pl.Float64)
    return (
        pl.when(g == 0)
        .then(1.0)  # nothing drafted: one target token, whatever alpha (null when never verified)
        .when(alpha >= 1.0)
        .then(g + 1.0)
        .otherwise((1.0 - alpha.pow(g + 1.0)) / (1.0 - alpha))
    )


def verify_cost(events: Frame, by: str | Sequence[str] = ("target",)) -> pl.DataFrame:
    """Measured verify cost T(n) per group: mean ``verify_s`` of verify rounds verifying n tokens.

    Columns: the group columns, n_verified (= n_drafted + 1), rounds, verify_s (mean seconds).
    """
    by = group_list(by)
    lazy = events_frame(events, [*ex.EVENT_METRIC_COLUMNS, *by])
    return (
        lazy.filter(ex.is_verify_round())
        .group_by([*by, (pl.col("n_drafted").cast(pl.Int64) + 1).alias("n_verified")])
        .agg(pl.len().cast(pl.Int64).alias("rounds"), pl.col("verify_s").mean().alias("verify_s"))
        .sort([*by, "n_verified"])
        .pipe(collect)
    )


def cost_at(table: pl.DataFrame, n: Iterable[int]) -> tuple[np.ndarray, list[str]]:
    """T(n) from one target's :func:`verify_cost` rows: measured, interpolated or extrapolated."""
    xs = table["n_verified"].to_numpy().astype(np.float64)
    ys = table["verify_s"].to_numpy()
    ws = table["rounds"].to_numpy().astype(np.float64)
    values, sources = [], []
    for m in n:
        if m in xs:
            values.append(float(ys[xs == m][0]))
            sources.append("measured")
        elif xs.size and xs.min() < m < xs.max():
            values.append(float(np.interp(m, xs, ys)))
            sources.append("interpolated")
        elif xs.size >= 2:
            slope, intercept = np.polyfit(xs, ys, 1, w=np.sqrt(ws))
            values.append(float(intercept + slope * m))
            sources.append("extrapolated")
        else:
            values.append(float("nan"))
            sources.append("unmeasured")
    return np.asarray(values), sources


def _baseline_cost(lazy: pl.LazyFrame, by: list[str]) -> tuple[pl.DataFrame, list[str]]:
    keys = ["target", *[c for c in by if c in _CATEGORY_LIKE]]
    base = (
        lazy.filter((pl.col("drafter") == BASELINE) & ex.is_verify_round())
        .group_by(keys)
        .agg(
            ex.ratio(
                pl.col("verify_s").sum() + pl.col("draft_s").sum(),
                pl.col("emitted").cast(pl.Int64).sum(),
            ).alias("baseline_s_per_token")
        )
        .pipe(collect)
    )
    return base, keys


def _with_baseline(frame: pl.DataFrame, base: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    out = frame.join(base, on=keys, how="left", nulls_equal=True)
    missing = out.filter(pl.col("baseline_s_per_token").is_null()).select(keys).unique().sort(keys)
    if missing.height:
        raise MissingBaselineError(
            missing,
            "Theory needs the baseline's per-token cost: run drafter none on the same target.",
        )
    return out


def _prepare(events: Frame, by: list[str]) -> tuple[pl.LazyFrame, list[str], list[pl.Expr]]:
    by = ["target", *[c for c in by if c != "target"]]
    lazy = events_frame(
        events, [*ex.EVENT_METRIC_COLUMNS, "run_id", "request_index", "drafter", *by]
    )
    if "k" in by:
        lazy = with_config_k(lazy)
    keys = [pl.col(CONFIG_K).alias("k") if c == "k" else pl.col(c) for c in by]
    return lazy, by, keys


def theory_vs_measured(
    events: Frame, by: str | Sequence[str] = ("drafter", "policy", "k", "category")
) -> pl.DataFrame:
    """Predicted against measured decode speedup per group (the baseline's own rows excluded).

    Columns: target, the group columns, verify_rounds, alpha, mean_drafted, draft_s_per_token,
    baseline_s_per_token, predicted_tokens_per_round, measured_tokens_per_round (the mean
    accepted length), predicted_s_per_round, measured_s_per_round, predicted_speedup,
    measured_speedup (formulas in the module docstring). Raises MissingBaselineError without
    baseline rounds for a target (and category).
    """
    lazy, by, keys = _prepare(events, group_list(by))
    method = lazy.filter(pl.col("drafter") != BASELINE)
    groups = (
        method.group_by(keys)
        .agg(
            ex.verify_rounds().alias("verify_rounds"),
            ex.conditional_acceptance().alias("alpha"),
            ex.mean_drafted().alias("mean_drafted"),
            ex.ratio(
                ex.draft_seconds(), pl.when(ex.is_verify_round()).then(pl.col("n_drafted")).sum()
            ).alias("draft_s_per_token"),
            ex.mean_accepted_length().alias("measured_tokens_per_round"),
            ex.ratio(ex.draft_seconds() + ex.verify_seconds(), ex.verify_rounds()).alias(
                "measured_s_per_round"
            ),
        )
        .pipe(collect)
    )
    hist = (
        method.filter(ex.is_verify_round())
        .group_by([*keys, pl.col("n_drafted").cast(pl.Int64)])
        .agg(pl.len().cast(pl.Int64).alias("rounds"), pl.col("draft_s").sum().alias("draft_sum"))
        .pipe(collect)
    )
    costs = verify_cost(lazy, "target").rename({"verify_s": "t_n", "rounds": "cost_rounds"})
    hist = (
        hist.with_columns((pl.col("n_drafted") + 1).alias("n_verified"))
        .join(costs, on=["target", "n_verified"], how="left")
        .join(groups.select([*by, "alpha"]), on=by, how="left", nulls_equal=True)
        .with_columns(_expected_tokens_expr(pl.col("alpha"), pl.col("n_drafted")).alias("e"))
        .group_by(by)
        .agg(
            ((pl.col("e") * pl.col("rounds")).sum() / pl.col("rounds").sum()).alias(
                "predicted_tokens_per_round"
            ),
            (
                (pl.col("draft_sum") + pl.col("t_n") * pl.col("rounds")).sum()
                / pl.col("rounds").sum()
            ).alias("predicted_s_per_round"),
        )
    )
    base, base_keys = _baseline_cost(lazy, by)
    out = _with_baseline(groups.join(hist, on=by, how="left", nulls_equal=True), base, base_keys)
    return (
        out.with_columns(
            (
                pl.col("baseline_s_per_token")
                * pl.col("predicted_tokens_per_round")
                / pl.col("predicted_s_per_round")
            ).alias("predicted_speedup"),
            (
                pl.col("baseline_s_per_token")
                * pl.col("measured_tokens_per_round")
                / pl.col("measured_s_per_round")
            ).alias("measured_speedup"),
        )
        .select(
            [
                *by,
                "verify_rounds",
                "alpha",
                "mean_drafted",
                "draft_s_per_token",
                "baseline_s_per_token",
                "predicted_tokens_per_round",
                "measured_tokens_per_round",
                "predicted_s_per_round",
                "measured_s_per_round",
                "predicted_speedup",
                "measured_speedup",
            ]
        )
        .sort(by)
    )


def predicted_speedup_curve(
    events: Frame,
    by: str | Sequence[str] = ("drafter", "category"),
    ks: Iterable[int] = range(1, 11),
    policy: str = "constant",
) -> pl.DataFrame:
    """Predicted speedup at each draft length k for each group (rows of ``policy`` only).

    predicted_speedup(k) = b * E(alpha, k) / (d * k + T(k + 1)), with the group's alpha and d and
    the target's T. Columns: target, the group columns, k, alpha, draft_s_per_token,
    baseline_s_per_token, verify_s (T(k+1)), verify_cost_source, expected_tokens,
    predicted_speedup.
    """
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be draft lengths >= 1, got {ks}")
    lazy, by, keys = _prepare(events, [c for c in group_list(by) if c != "k"])
    method = lazy.filter((pl.col("drafter") != BASELINE) & (pl.col("policy") == policy))
    groups = (
        method.group_by(keys)
        .agg(
            ex.conditional_acceptance().alias("alpha"),
            ex.ratio(
                ex.draft_seconds(), pl.when(ex.is_verify_round()).then(pl.col("n_drafted")).sum()
            ).alias("draft_s_per_token"),
        )
        .pipe(collect)
    )
    base, base_keys = _baseline_cost(lazy, by)
    groups = _with_baseline(groups, base, base_keys)
    costs = verify_cost(lazy, "target")
    tables = []
    for target in groups["target"].unique().sort():
        t_n, sources = cost_at(costs.filter(pl.col("target") == target), [k + 1 for k in ks])
        tables.append(
            pl.DataFrame(
                {
                    "target": [target] * len(ks),
                    "k": ks,
                    "verify_s": t_n,
                    "verify_cost_source": sources,
                },
                schema={
                    "target": groups.schema["target"],
                    "k": pl.Int16,
                    "verify_s": pl.Float64,
                    "verify_cost_source": pl.String,
                },
            )
        )
    if not tables:
        return groups.join(pl.DataFrame(schema={"k": pl.Int16}), how="cross")
    curve = groups.join(pl.concat(tables), on="target", how="left")
    return (
        curve.with_columns(
            _expected_tokens_expr(pl.col("alpha"), pl.col("k")).alias("expected_tokens")
        )
        .with_columns(
            (
                pl.col("baseline_s_per_token")
                * pl.col("expected_tokens")
                / (pl.col("draft_s_per_token") * pl.col("k") + pl.col("verify_s"))
            ).alias("predicted_speedup")
        )
        .select(
            [
                *by,
                "k",
                "alpha",
                "draft_s_per_token",
                "baseline_s_per_token",
                "verify_s",
                "verify_cost_source",
                "expected_tokens",
                "predicted_speedup",
            ]
        )
        .sort([*by, "k"])
    )


def best_k(
    events: Frame,
    by: str | Sequence[str] = ("drafter", "category"),
    ks: Iterable[int] = range(1, 11),
    policy: str = "constant",
) -> pl.DataFrame:
    """The k that would have been best per group: predicted over ``ks``, measured over the k run.

    Columns: target, the group columns, alpha, best_k_predicted, predicted_speedup (at it),
    ks_run (configured k values present for ``policy``), best_k_measured and measured_speedup
    (the highest measured decode speedup among the k run).
    """
    by_list = [c for c in group_list(by) if c != "k"]
    curve = predicted_speedup_curve(events, by_list, ks, policy)
    by_full = ["target", *[c for c in by_list if c != "target"]]
    predicted = (
        curve.filter(
            pl.col("predicted_speedup").is_not_null() & pl.col("predicted_speedup").is_not_nan()
        )
        .sort(
            [*by_full, "predicted_speedup", "k"],
            descending=[*([False] * len(by_full)), True, False],
        )
        .group_by(by_full, maintain_order=True)
        .agg(
            pl.col("alpha").first(),
            pl.col("k").first().alias("best_k_predicted"),
            pl.col("predicted_speedup").first(),
        )
    )
    lazy = events_frame(events, ["policy", "drafter"]).filter(
        (pl.col("policy") == policy) | (pl.col("drafter") == BASELINE)
    )
    measured = theory_vs_measured(lazy, [*by_full, "k"])
    measured = (
        measured.sort(
            [*by_full, "measured_speedup", "k"], descending=[*([False] * len(by_full)), True, False]
        )
        .group_by(by_full, maintain_order=True)
        .agg(
            pl.col("k").sort().alias("ks_run"),
            pl.col("k").first().alias("best_k_measured"),
            pl.col("measured_speedup").first(),
        )
    )
    return predicted.join(measured, on=by_full, how="left", nulls_equal=True).sort(by_full)
