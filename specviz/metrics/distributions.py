"""Per-request distributions: the statistics NVIDIA AIPerf reports, per method, task and stream.

The pooled metrics of :mod:`specviz.metrics.summary` are ratios of totals; serving tools also
report how the *requests* spread. Every request r of a group gets four values, each the
existing metric applied to that request alone (never a second definition):

- ``acceptance_length`` = :func:`~specviz.metrics.expressions.mean_accepted_length` over the
  request's events: tokens emitted per verify step, **the bonus or correction token included**
  (Spec-Bench's "#mean accepted tokens", vLLM's mean acceptance length; plain decoding 1.00).
  From a server's counts: :func:`~specviz.metrics.expressions.spec_step_acceptance_length`,
  1 + accepted draft tokens / spec steps (vLLM's per-request field; bonus included too, but
  counting spec steps only, so the two agree when every verify round drafts);
- ``acceptance_rate`` = accepted draft tokens / drafted tokens (vLLM's draft acceptance rate;
  null for a request that drafted nothing, such as the baseline's);
- ``tokens_per_s`` = :func:`~specviz.metrics.expressions.request_tokens_per_s`, new tokens /
  the request's wall seconds (Spec-Bench's per-request throughput);
- ``latency_s``: seconds from the request's admission to its last token (the request table's
  ``latency_s``; the client's clock for a server).

Per group and value, over the requests with a value (n_r = the request's new tokens):

- ``mean`` (request-weighted): (1/R) sum_r x_r, every request weighs the same (AIPerf's avg);
- ``token_weighted_mean``: sum_r n_r x_r / sum_r n_r, every output token weighs the same. The
  two differ when long outputs accept more (or less): a long copy-heavy answer lifts the
  token-weighted mean above the request-weighted one (vLLM issue #42690). The pooled ratio of
  :func:`~specviz.metrics.summary.summary` is a third weighting (each request by its verify
  rounds, about n_r / x_r, so low-acceptance requests weigh more);
- ``p50``, ``p90``, ``p99``: percentiles with linear interpolation between order statistics
  (numpy's default, which AIPerf uses); ``min``, ``max``; ``requests``: how many had a value.

The **accepted-length histogram** (:func:`accepted_histogram`) counts spec steps (verify rounds
that drafted at least one token; vLLM's ``num_spec_steps``) by accepted draft tokens 0..k, with
each bin's ``share`` of the group's steps: vLLM's and AIPerf's ``acceptance_histogram``. A step's
acceptance length is its bin + 1 (unless the turn ended inside the step).

The **time split** (:func:`time_shares`) is the share of recorded forward time in drafting,
verifying and prefill (:func:`~specviz.metrics.expressions.draft_share` and its siblings),
SPEED-Bench's and arXiv 2601.11580's draft-versus-verify split; a server reports no such times.

Groups: ``drafter``, ``policy``, ``k`` (the configured k), ``category`` and ``stream``
(``single-task`` or ``multitask``, :func:`stream_kind`), over unbatched requests, as the
multitask decomposition (:func:`~specviz.metrics.degradation.label_streams`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from specviz.metrics import expressions as ex
from specviz.metrics.degradation import label_streams
from specviz.metrics.frames import Frame, collect, events_frame, group_list, requests_frame

SINGLE_TASK = "single-task"
MULTITASK = "multitask"
#: Groups of the per-request statistics and the time split.
KEYS = ("drafter", "policy", "k", "category", "stream")
#: Groups of the accepted-length histogram (per method and task).
HISTOGRAM_KEYS = ("drafter", "policy", "k", "category")
VALUES = ("acceptance_length", "acceptance_rate", "tokens_per_s", "latency_s")
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
STATISTICS = ("requests", "mean", "token_weighted_mean", *PERCENTILES, "min", "max")
TOKENS = "new_tokens"
CONVENTION = (
    "per request: acceptance_length = tokens per verify step, bonus/correction token included "
    "(Spec-Bench #mean accepted tokens, vLLM mean acceptance length; plain decoding 1.00); "
    "acceptance_rate = accepted / drafted tokens (vLLM); tokens_per_s = new tokens / the "
    "request's wall seconds; latency_s = admission to last token. mean: request-weighted; "
    "token_weighted_mean: weighted by each request's new tokens; p50/p90/p99: linear "
    "interpolation. accepted_histogram: spec steps (verify rounds that drafted) by accepted "
    "draft tokens (vLLM's acceptance_histogram). time_shares: of draft + verify + prefill seconds"
)


def stream_kind() -> pl.Expr:
    """``stream``: ``multitask`` where the request's stream holds more than one task (the
    ``multitask`` flag of :func:`~specviz.metrics.degradation.label_streams`), else
    ``single-task``."""
    return (
        pl.when(pl.col("multitask"))
        .then(pl.lit(MULTITASK))
        .otherwise(pl.lit(SINGLE_TASK))
        .alias("stream")
    )


def with_stream_kind(requests: Frame) -> pl.LazyFrame:
    """The unbatched requests with ``multitask`` and ``stream`` (:func:`stream_kind`)."""
    return label_streams(requests).with_columns(stream_kind())


def request_mean(value: pl.Expr) -> pl.Expr:
    """Request-weighted mean = (1/R) sum_r x_r over the R requests with a value."""
    return value.mean()


def token_weighted_mean(value: pl.Expr, tokens: pl.Expr) -> pl.Expr:
    """Token-weighted mean = sum_r n_r x_r / sum_r n_r over the requests with a value
    (n_r: ``tokens``, the request's new tokens); null when they hold no token."""
    weight = pl.when(value.is_not_null()).then(tokens.cast(pl.Float64))
    return ex.ratio((value * weight).sum(), weight.sum())


def percentile(value: pl.Expr, q: float) -> pl.Expr:
    """The q-quantile, linearly interpolated between order statistics (numpy's default)."""
    return value.quantile(q, interpolation="linear")


def distribution_exprs(column: str, tokens: str = TOKENS) -> list[pl.Expr]:
    """The statistics of :data:`STATISTICS` of ``column``, named ``<column>_<statistic>``; they
    compose in one ``.agg``."""
    x = pl.col(column)
    return [
        x.count().cast(pl.Int64).alias(f"{column}_requests"),
        request_mean(x).alias(f"{column}_mean"),
        token_weighted_mean(x, pl.col(tokens)).alias(f"{column}_token_weighted_mean"),
        *[percentile(x, q).alias(f"{column}_{name}") for name, q in PERCENTILES.items()],
        x.min().cast(pl.Float64).alias(f"{column}_min"),
        x.max().cast(pl.Float64).alias(f"{column}_max"),
    ]


def request_values(events: Frame, requests: Frame) -> pl.DataFrame:
    """One row per unbatched request: :data:`KEYS`, ``run_id``, ``request_id``, ``new_tokens``
    and the four values of the module docstring, from in-process runs."""
    per_request = (
        events_frame(events, [*ex.EVENT_METRIC_COLUMNS, "run_id", "request_id"])
        .group_by("run_id", "request_id")
        .agg(
            ex.mean_accepted_length().alias("acceptance_length"),
            ex.acceptance_rate().alias("acceptance_rate"),
        )
    )
    requests_frame(requests, ["latency_s"])
    rows = with_stream_kind(requests).select(
        *KEYS,
        "run_id",
        "request_id",
        pl.col(TOKENS).cast(pl.Int64),
        ex.request_tokens_per_s().alias("tokens_per_s"),
        pl.col("latency_s"),
    )
    return rows.join(per_request, on=["run_id", "request_id"], how="left").pipe(collect)


def server_request_values(table: Frame) -> pl.DataFrame:
    """The same rows from server-measured requests (the request table with the server's
    ``num_spec_steps``): acceptance length from the server's counts (vLLM's convention)."""
    requests_frame(table, ["latency_s"])
    return (
        with_stream_kind(table)
        .select(
            *KEYS,
            "run_id",
            "request_id",
            pl.col(TOKENS).cast(pl.Int64),
            ex.request_tokens_per_s().alias("tokens_per_s"),
            pl.col("latency_s"),
            ex.spec_step_acceptance_length(pl.col("accepted"), pl.col("num_spec_steps")).alias(
                "acceptance_length"
            ),
            ex.ratio(pl.col("accepted"), pl.col("drafted")).alias("acceptance_rate"),
        )
        .pipe(collect)
    )


def request_distributions(values: Frame, by: str | Sequence[str] = KEYS) -> pl.DataFrame:
    """Per group of ``by``: ``requests``, ``tokens`` and every statistic of every value
    (``<value>_<statistic>``) of :func:`request_values` rows, in one ``.agg``."""
    by = group_list(by)
    exprs = [
        pl.len().cast(pl.Int64).alias("requests"),
        pl.col(TOKENS).sum().cast(pl.Int64).alias("tokens"),
        *[e for value in VALUES for e in distribution_exprs(value)],
    ]
    lazy = values.lazy()
    if not by:
        return lazy.select(exprs).pipe(collect)
    return lazy.group_by(by).agg(exprs).sort(by, nulls_last=True).pipe(collect)


def _request_keys(requests: Frame, by: Sequence[str]) -> pl.LazyFrame:
    return with_stream_kind(requests).select("run_id", "request_id", *by)


def _with_shares(counts: pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    total = pl.col("steps").sum().over(by) if by else pl.col("steps").sum()
    return (
        counts.with_columns((pl.col("steps") / total).alias("share"))
        .sort([*by, "accepted"], nulls_last=True)
        .pipe(collect)
    )


def accepted_histogram(
    events: Frame, requests: Frame, by: str | Sequence[str] = HISTOGRAM_KEYS
) -> pl.DataFrame:
    """Per group of ``by`` (request columns, or ``stream``): spec steps by accepted draft
    tokens. Columns: ``accepted`` (0..k), ``steps`` and ``share`` of the group's steps."""
    by = group_list(by)
    lazy = events_frame(events, ["kind", "accepted", "run_id", "request_id", "turn", "round"])
    steps = (
        lazy.filter(ex.is_draft())
        .group_by("run_id", "request_id", "turn", "round")
        .agg(ex.accepted().alias("accepted"))
    )
    counts = (
        steps.join(_request_keys(requests, by), on=["run_id", "request_id"], how="inner")
        .group_by([*by, "accepted"])
        .agg(pl.len().cast(pl.Int64).alias("steps"))
    )
    return _with_shares(counts, by)


def histogram_from_counts(
    table: Frame, by: str | Sequence[str] = HISTOGRAM_KEYS, column: str = "acceptance_histogram"
) -> pl.DataFrame:
    """:func:`accepted_histogram` from per-request histograms a server reports (element i:
    spec steps that accepted i draft tokens), summed per group; empty bins left out."""
    by = group_list(by)
    hist = pl.col(column)
    counts = (
        table.lazy()
        .filter(hist.is_not_null() & (hist.list.len() > 0))
        .select(
            *by,
            hist.alias("steps"),
            pl.int_ranges(0, hist.list.len()).alias("accepted"),
        )
        .explode("steps", "accepted")
        .group_by([*by, "accepted"])
        .agg(pl.col("steps").sum().cast(pl.Int64))
        .filter(pl.col("steps") > 0)
    )
    return _with_shares(counts, by)


def time_share_exprs() -> list[pl.Expr]:
    """Draft, verify and prefill seconds and their shares of the three (the definitions of
    :mod:`specviz.metrics.expressions`)."""
    return [
        ex.draft_seconds().alias("draft_s"),
        ex.verify_seconds().alias("verify_s"),
        ex.prefill_seconds().alias("prefill_s"),
        ex.draft_share().alias("draft_share"),
        ex.verify_share().alias("verify_share"),
        ex.prefill_share().alias("prefill_share"),
    ]


def time_shares(events: Frame, requests: Frame, by: str | Sequence[str] = KEYS) -> pl.DataFrame:
    """Per group of ``by``: the time split of the module docstring (:func:`time_share_exprs`)."""
    by = group_list(by)
    order = ["run_id", "request_id", "turn", "round", "position"]
    columns = ["kind", "prefill", "draft_s", "verify_s", *order]
    lazy = events_frame(events, columns).select(columns)
    joined = lazy.join(_request_keys(requests, by), on=["run_id", "request_id"], how="inner")
    # summed in one fixed order of the events by the in-memory engine: tables read in parallel
    # arrive in any order and the streaming engine's partial float sums meet in any order, so
    # the published seconds changed in their last digit from run to run
    rows = joined.collect().sort(order)
    if not by:
        return rows.select(time_share_exprs())
    grouped = rows.group_by(by, maintain_order=True).agg(time_share_exprs())
    return grouped.sort(by, nulls_last=True)


def distributions_json(
    statistics: pl.DataFrame, histogram: pl.DataFrame, shares: pl.DataFrame | None
) -> dict[str, Any]:
    """The three tables as one JSON-able object (``time_shares`` null: no timings known)."""
    return {
        "convention": CONVENTION,
        "keys": list(KEYS),
        "histogram_keys": list(HISTOGRAM_KEYS),
        "requests": statistics.to_dicts(),
        "accepted_histogram": histogram.to_dicts(),
        "time_shares": None if shares is None else shares.to_dicts(),
    }


def study_distributions(events: Frame, requests: Frame) -> dict[str, Any]:
    """:func:`distributions_json` of in-process runs."""
    return distributions_json(
        request_distributions(request_values(events, requests)),
        accepted_histogram(events, requests),
        time_shares(events, requests),
    )


def server_distributions(table: Frame) -> dict[str, Any]:
    """:func:`distributions_json` of server-measured runs: no time split (a server reports no
    draft or verify times)."""
    labelled = with_stream_kind(table).collect()
    return distributions_json(
        request_distributions(server_request_values(labelled)),
        histogram_from_counts(labelled),
        None,
    )
