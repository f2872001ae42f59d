"""Metric expressions over the event table; they compose in one ``group_by(...).agg(...)``.

Every event row is a token: a drafted token (``kind == "draft"``) or the one token the target
adds in each round (``correction`` or ``bonus``). Each round therefore has exactly one target
row, which is where round-level values (``draft_s``, ``verify_s``, ``k``, ``n_drafted``) are
counted, so that a round is never counted once per drafted token. *Verify rounds* are the rounds
with ``prefill == false``; the prefill forward that starts each turn is not a verify round.

Example::

    events.group_by("category").agg(
        acceptance_rate().alias("acceptance_rate"),
        mean_accepted_length().alias("mean_accepted_length"),
    )

All ratios are ratios of totals over the rows of the group (pooled, not means of per-request
ratios) and are null when the denominator is zero.
"""

from __future__ import annotations

import polars as pl

from specviz.rundir import KIND_DRAFT

#: Event columns the expressions of this module read.
EVENT_METRIC_COLUMNS = (
    "kind",
    "round",
    "prefill",
    "position",
    "k",
    "n_drafted",
    "accepted",
    "verified",
    "emitted",
    "draft_s",
    "verify_s",
)


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator`` as a float, null where the denominator is zero."""
    den = denominator.cast(pl.Float64)
    return pl.when(den != 0).then(numerator.cast(pl.Float64) / den)


def is_draft() -> pl.Expr:
    """Row is a drafted token."""
    return pl.col("kind") == KIND_DRAFT


def is_round() -> pl.Expr:
    """Row is the target's token of its round: exactly one such row per round."""
    return pl.col("kind") != KIND_DRAFT


def is_verify_round() -> pl.Expr:
    """Row is the target's token of a verify round (a round that is not a prefill)."""
    return is_round() & ~pl.col("prefill")


def count_where(condition: pl.Expr) -> pl.Expr:
    """Number of rows where ``condition`` holds (as Int64)."""
    return condition.cast(pl.Int64).sum()


def _sum_where(condition: pl.Expr, column: str) -> pl.Expr:
    return pl.when(condition).then(pl.col(column)).otherwise(0).sum()


def n_requests() -> pl.Expr:
    """Requests: rows of round 0 that are target rows (round 0 is each request's first prefill)."""
    return count_where(is_round() & (pl.col("round") == 0))


def rounds() -> pl.Expr:
    """Target forward passes (prefills included)."""
    return count_where(is_round())


def verify_rounds() -> pl.Expr:
    """Verify rounds: target forward passes that are not prefills."""
    return count_where(is_verify_round())


def drafted() -> pl.Expr:
    """Drafted tokens (draft rows, verified or not)."""
    return count_where(is_draft())


def verified_drafts() -> pl.Expr:
    """Drafted tokens the target judged (draft rows with ``verified``)."""
    return count_where(is_draft() & pl.col("verified"))


def accepted() -> pl.Expr:
    """Accepted drafted tokens."""
    return count_where(is_draft() & pl.col("accepted").fill_null(False))


def emitted_tokens() -> pl.Expr:
    """Tokens in the output (``emitted`` rows, prefill tokens included) = the requests' new tokens."""
    return count_where(pl.col("emitted"))


def verify_emitted_tokens() -> pl.Expr:
    """Tokens emitted by verify rounds (the prefill token of each turn excluded)."""
    return count_where(pl.col("emitted") & ~pl.col("prefill"))


def acceptance_rate() -> pl.Expr:
    """Acceptance rate = accepted drafted tokens / drafted tokens (vLLM's draft acceptance rate).

    Depends on k: drafts after the first rejection count as not accepted.
    """
    return ratio(accepted(), drafted())


def conditional_acceptance() -> pl.Expr:
    """Conditional acceptance = accepted drafted tokens / verified drafted tokens.

    Grouped by ``position`` this is the per-position conditional acceptance (accepted at position
    i / drafts that reached position i, i.e. whose earlier drafts were all accepted). Pooled over
    positions it is the maximum-likelihood estimate of Leviathan et al.'s alpha under their
    i.i.d. model (each verified draft is one Bernoulli trial).
    """
    return ratio(accepted(), verified_drafts())


def mean_accepted_length() -> pl.Expr:
    """Mean accepted length = emitted tokens of verify rounds / verify rounds.

    The correction or bonus token is included, so plain decoding scores 1.00: Spec-Bench's
    "#Mean accepted tokens" and vLLM's "mean acceptance length" (1 + accepted / drafts). Tokens
    past the end of a turn (after an end-of-sequence token or the token budget) are not emitted
    and not counted.
    """
    return ratio(verify_emitted_tokens(), verify_rounds())


def draft_seconds() -> pl.Expr:
    """Seconds spent drafting (summed once per round)."""
    return _sum_where(is_round(), "draft_s")


def verify_seconds() -> pl.Expr:
    """Seconds of verify forwards (prefill forwards excluded)."""
    return _sum_where(is_verify_round(), "verify_s")


def prefill_seconds() -> pl.Expr:
    """Seconds of prefill forwards (``verify_s`` of prefill rounds)."""
    return _sum_where(is_round() & pl.col("prefill"), "verify_s")


def round_seconds() -> pl.Expr:
    """Seconds recorded per round: draft + verify + prefill (Python overhead between rounds excluded)."""
    return draft_seconds() + verify_seconds() + prefill_seconds()


def tokens_per_s() -> pl.Expr:
    """Forward-time throughput = emitted tokens / round seconds (draft + verify + prefill).

    Wall-clock throughput (overhead included) comes from the request table:
    :func:`specviz.metrics.request_summary`.
    """
    return ratio(emitted_tokens(), round_seconds())


def request_tokens_per_s() -> pl.Expr:
    """A request's own throughput = ``new_tokens / wall_s`` (request-table columns; Spec-Bench's
    per-request "tokens per second"; wall clock, overhead included)."""
    return ratio(pl.col("new_tokens"), pl.col("wall_s"))


def spec_step_acceptance_length(accepted: pl.Expr, spec_steps: pl.Expr) -> pl.Expr:
    """vLLM's mean acceptance length from a server's counts = 1 + accepted draft tokens / spec
    steps (the bonus or correction token included, as :func:`mean_accepted_length`); null
    where no spec step was counted."""
    return 1 + ratio(accepted, spec_steps)


def decode_seconds_per_token() -> pl.Expr:
    """Decode cost per token = (draft + verify seconds of verify rounds) / their emitted tokens."""
    return ratio(draft_seconds() + verify_seconds(), verify_emitted_tokens())


def draft_share() -> pl.Expr:
    """Share of round seconds spent drafting = draft / (draft + verify + prefill)."""
    return ratio(draft_seconds(), round_seconds())


def verify_share() -> pl.Expr:
    """Share of round seconds spent in verify forwards = verify / (draft + verify + prefill)."""
    return ratio(verify_seconds(), round_seconds())


def prefill_share() -> pl.Expr:
    """Share of round seconds spent in prefill forwards = prefill / (draft + verify + prefill)."""
    return ratio(prefill_seconds(), round_seconds())


def mean_k() -> pl.Expr:
    """Mean draft length the policy asked for, over verify rounds."""
    return pl.when(is_verify_round()).then(pl.col("k")).mean().cast(pl.Float64)


def mean_drafted() -> pl.Expr:
    """Mean tokens actually drafted per verify round (<= k: a drafter may propose fewer)."""
    return pl.when(is_verify_round()).then(pl.col("n_drafted")).mean().cast(pl.Float64)
