"""Summary tables of the field's metrics, grouped by any columns.

Grouping by ``k`` means the run's configured k (the ``k`` of the request table: the constant k,
or the initial k of an adaptive policy), not the per-round ``k`` of the event table (which is 0
on prefill rows and changes from round to round under an adaptive policy). The per-round k is
summarized by :func:`k_distribution` and the ``mean_k`` column.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from specviz.metrics import expressions as ex
from specviz.metrics.frames import Frame, collect, events_frame, group_list, requests_frame

CONFIG_K = "_config_k"


def with_config_k(events: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``_config_k``: the k of the first verify round of each run (its configured k).

    Every request of a run shares one configuration, so this equals the request table's ``k``
    (the constant k, or the initial k of an adaptive policy; 0 for a run without verify rounds
    that draft, such as the autoregressive baseline).
    """
    first = (
        events.filter(ex.is_verify_round())
        .group_by("run_id")
        .agg(pl.col("k").sort_by(["request_index", "round"]).first().alias(CONFIG_K))
    )
    return events.join(first, on="run_id", how="left").with_columns(
        pl.col(CONFIG_K).fill_null(0).cast(pl.Int16)
    )


def _keys(events: pl.LazyFrame, by: list[str]) -> tuple[pl.LazyFrame, list[pl.Expr]]:
    if "k" not in by:
        return events, [pl.col(c) for c in by]
    keys = [pl.col(CONFIG_K).alias("k") if c == "k" else pl.col(c) for c in by]
    return with_config_k(events), keys


def summary_exprs() -> list[pl.Expr]:
    """The expressions of :func:`summary`, for use in your own ``.agg``."""
    return [
        ex.n_requests().alias("requests"),
        ex.rounds().alias("rounds"),
        ex.verify_rounds().alias("verify_rounds"),
        ex.drafted().alias("drafted"),
        ex.verified_drafts().alias("verified_drafts"),
        ex.accepted().alias("accepted"),
        ex.emitted_tokens().alias("tokens"),
        ex.acceptance_rate().alias("acceptance_rate"),
        ex.conditional_acceptance().alias("alpha"),
        ex.mean_accepted_length().alias("mean_accepted_length"),
        ex.mean_k().alias("mean_k"),
        ex.mean_drafted().alias("mean_drafted"),
        ex.draft_seconds().alias("draft_s"),
        ex.verify_seconds().alias("verify_s"),
        ex.prefill_seconds().alias("prefill_s"),
        ex.tokens_per_s().alias("tokens_per_s"),
        ex.decode_seconds_per_token().alias("decode_s_per_token"),
        ex.draft_share().alias("draft_share"),
        ex.verify_share().alias("verify_share"),
        ex.prefill_share().alias("prefill_share"),
    ]


def summary(events: Frame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """The event-table metrics per group (one row per group, sorted by the group columns).

    Columns (formulas in :mod:`specviz.metrics.expressions` and docs/metrics.md):
    requests, rounds, verify_rounds, drafted, verified_drafts, accepted, tokens;
    acceptance_rate = accepted / drafted; alpha = accepted / verified_drafts;
    mean_accepted_length = emitted tokens of verify rounds / verify rounds (bonus or correction
    included, 1.00 for plain decoding); mean_k, mean_drafted (per verify round);
    draft_s, verify_s, prefill_s (seconds summed once per round); tokens_per_s = tokens /
    (draft_s + verify_s + prefill_s); decode_s_per_token = (draft_s + verify_s) / emitted tokens
    of verify rounds; draft/verify/prefill shares of draft_s + verify_s + prefill_s.
    """
    by = group_list(by)
    lazy = events_frame(events, [*ex.EVENT_METRIC_COLUMNS, "run_id", "request_index", *by])
    lazy, keys = _keys(lazy, by)
    if not by:
        return lazy.select(summary_exprs()).pipe(collect)
    return lazy.group_by(keys).agg(summary_exprs()).sort(by).pipe(collect)


def per_position(events: Frame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """Acceptance by draft position (0-based), per group.

    Columns: drafted (draft rows at position i), verified (drafts that reached position i: all
    earlier drafts of the round accepted), accepted, conditional_acceptance = accepted / verified
    (specviz's per-position acceptance, comparable across k), drafting_rounds (verify rounds of
    the group that drafted at least one token) and vllm_acceptance = accepted / drafting_rounds
    (vLLM's per-position acceptance rate: accepted at i / drafts).
    """
    by = group_list(by)
    lazy = events_frame(events, [*ex.EVENT_METRIC_COLUMNS, "run_id", "request_index", *by])
    lazy, keys = _keys(lazy, by)
    names = [*by, "position"]
    drafts = (
        lazy.filter(ex.is_draft())
        .group_by([*keys, pl.col("position")])
        .agg(
            ex.drafted().alias("drafted"),
            ex.verified_drafts().alias("verified"),
            ex.accepted().alias("accepted"),
        )
    )
    rounds_expr = ex.count_where(ex.is_verify_round() & (pl.col("n_drafted") > 0)).alias(
        "drafting_rounds"
    )
    if by:
        rounds = lazy.group_by(keys).agg(rounds_expr)
        joined = drafts.join(rounds, on=by, how="left")
    else:
        joined = drafts.join(lazy.select(rounds_expr), how="cross")
    return (
        joined.with_columns(
            ex.ratio(pl.col("accepted"), pl.col("verified")).alias("conditional_acceptance"),
            ex.ratio(pl.col("accepted"), pl.col("drafting_rounds")).alias("vllm_acceptance"),
        )
        .sort(names)
        .pipe(collect)
    )


def k_distribution(events: Frame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """How often each per-round k was asked for, over verify rounds, per group.

    Columns: round_k (the k the policy asked for in the round), rounds, share (rounds / verify
    rounds of the group), mean_drafted (tokens actually proposed; below k when the drafter found
    fewer, e.g. prompt lookup without a match).
    """
    by = group_list(by)
    lazy = events_frame(events, [*ex.EVENT_METRIC_COLUMNS, "run_id", "request_index", *by])
    lazy, keys = _keys(lazy, by)
    counts = (
        lazy.filter(ex.is_verify_round())
        .group_by([*keys, pl.col("k").alias("round_k")])
        .agg(
            pl.len().cast(pl.Int64).alias("rounds"),
            pl.col("n_drafted").mean().alias("mean_drafted"),
        )
    )
    total = pl.col("rounds").sum().over(by) if by else pl.col("rounds").sum()
    return (
        counts.with_columns((pl.col("rounds") / total).alias("share"))
        .select([*by, "round_k", "rounds", "share", "mean_drafted"])
        .sort([*by, "round_k"])
        .pipe(collect)
    )


def request_table(events: Frame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """Per-request totals from the event table: the units a bootstrap over requests resamples.

    One row per (run_id, request_id) with the group columns ``by`` and the additive counts
    tokens, verify_tokens (emitted by verify rounds), rounds, verify_rounds, drafted,
    verified_drafts, accepted, draft_s, verify_s, prefill_s (and requests = 1), so that any
    pooled metric is a ratio of column sums (e.g. mean accepted length = sum(verify_tokens) /
    sum(verify_rounds)).
    """
    by = group_list(by)
    lazy = events_frame(
        events, [*ex.EVENT_METRIC_COLUMNS, "run_id", "request_id", "request_index", *by]
    )
    lazy, keys = _keys(lazy, by)
    ids = [c for c in ("run_id", "request_id") if c not in by]
    return (
        lazy.group_by([*keys, *[pl.col(c) for c in ids]])
        .agg(
            pl.lit(1, dtype=pl.Int64).alias("requests"),
            ex.emitted_tokens().alias("tokens"),
            ex.verify_emitted_tokens().alias("verify_tokens"),
            ex.rounds().alias("rounds"),
            ex.verify_rounds().alias("verify_rounds"),
            ex.drafted().alias("drafted"),
            ex.verified_drafts().alias("verified_drafts"),
            ex.accepted().alias("accepted"),
            ex.draft_seconds().alias("draft_s"),
            ex.verify_seconds().alias("verify_s"),
            ex.prefill_seconds().alias("prefill_s"),
        )
        .sort([*by, *ids])
        .pipe(collect)
    )


def request_summary(requests: Frame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """Wall-clock metrics from the request table, per group.

    Columns: requests, tokens (sum of new_tokens), wall_s; tokens_per_s = tokens / wall_s
    (ratio of totals); request_tokens_per_s = mean over requests of new_tokens / wall_s;
    acceptance_rate = accepted / drafted; mean_accepted_length = (tokens - turns) /
    (rounds - turns) (each turn's prefill round emits one token and is not a verify round);
    ttft_s = mean time to first token; draft_share, verify_share, prefill_share and
    other_share (Python and sampling overhead) of wall_s.
    """
    by = group_list(by)
    needed = [
        "new_tokens",
        "wall_s",
        "rounds",
        "n_turns",
        "drafted",
        "accepted",
        "ttft_s",
        "prefill_s",
        "draft_s",
        "verify_s",
        *by,
    ]
    lazy = requests_frame(requests, needed)
    wall = pl.col("wall_s").sum()
    turns = pl.col("n_turns").cast(pl.Int64).sum()
    exprs = [
        pl.len().cast(pl.Int64).alias("requests"),
        pl.col("new_tokens").cast(pl.Int64).sum().alias("tokens"),
        wall.alias("wall_s"),
        ex.ratio(pl.col("new_tokens").sum(), wall).alias("tokens_per_s"),
        ex.request_tokens_per_s().mean().alias("request_tokens_per_s"),
        ex.ratio(pl.col("accepted").sum(), pl.col("drafted").sum()).alias("acceptance_rate"),
        ex.ratio(
            pl.col("new_tokens").cast(pl.Int64).sum() - turns,
            pl.col("rounds").cast(pl.Int64).sum() - turns,
        ).alias("mean_accepted_length"),
        pl.col("ttft_s").mean().alias("ttft_s"),
        ex.ratio(pl.col("draft_s").sum(), wall).alias("draft_share"),
        ex.ratio(pl.col("verify_s").sum(), wall).alias("verify_share"),
        ex.ratio(pl.col("prefill_s").sum(), wall).alias("prefill_share"),
        ex.ratio(
            wall - pl.col("draft_s").sum() - pl.col("verify_s").sum() - pl.col("prefill_s").sum(),
            wall,
        ).alias("other_share"),
    ]
    if not by:
        return lazy.select(exprs).pipe(collect)
    return lazy.group_by(by).agg(exprs).sort(by).pipe(collect)
