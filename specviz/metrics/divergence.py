"""Where a greedy speculative request parts from plain greedy decoding of the same prompt.

Speculative decoding is lossless in exact arithmetic: greedy speculation emits the target's
argmax at every position. In float32 on this project's engine it is lossless in fact (the tests
assert token-for-token equality). In reduced precision (bf16, fp16) a (k+1)-row verify forward
runs other kernels than a 1-row forward, so the logits of one position differ in their last bits
and a near-tie can resolve the other way: the output is still a greedy decode of the target, but
not the same one (docs/metrics.md, "Losslessness by dtype"). This module records, per request,
whether and where that happened, so a study never reports a speedup of an output it silently
changed.

Pairing: each greedy (``temperature == 0``) non-baseline request is compared with the greedy
baseline (``drafter == "none"``) request of the same target, prompt_id and batch size, the same
``repeat`` when there is one, else the baseline's lowest repeat. A request's output is its
emitted tokens over all turns, in order (each turn's prompt holds the previous outputs, so once
parted, the rest differs). ``first_divergence`` is the 0-based index of the first differing
token (the shorter output's length when one is a prefix of the other), null when the outputs
are equal.
"""

from __future__ import annotations

import polars as pl

from specviz.metrics.frames import Frame, events_frame, requests_frame
from specviz.metrics.speedup import BASELINE

KEYS = ("target", "prompt_id", "batch_size")
LABELS = ("drafter", "policy", "k", "category", "mixture", "repeat")
ORDER = ("turn", "round", "position")
TOKENS = ("emitted", "target_token", "draft_token")


def output_tokens(events: Frame) -> pl.DataFrame:
    """(run_id, request_id, the labels, ``tokens``): each request's emitted tokens in order."""
    lazy = events_frame(events, ["run_id", "request_id", *KEYS, *LABELS, *ORDER, *TOKENS])
    token = pl.coalesce("target_token", "draft_token")
    return (
        lazy.filter(pl.col("emitted"))
        .group_by(["run_id", "request_id", *KEYS, *[c for c in LABELS if c != "k"]])
        .agg(
            token.sort_by(list(ORDER)).alias("tokens"),
            pl.col("k").filter(pl.col("k") > 0).first().fill_null(0).alias("k"),
        )
        .collect()
    )


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first position where ``a`` and ``b`` differ (None when equal)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def greedy_divergence(events: Frame, requests: Frame) -> pl.DataFrame:
    """One row per greedy speculative request with a greedy baseline: its labels,
    ``new_tokens``, ``baseline_tokens``, ``first_divergence`` (null: identical output) and
    ``diverged``. Requests without a greedy baseline are left out (nothing to compare)."""
    greedy = (
        requests_frame(requests, ["run_id", "request_id", "temperature"])
        .filter(pl.col("temperature") == 0)
        .select("run_id", "request_id")
        .collect()
    )
    outputs = output_tokens(events).join(greedy, on=["run_id", "request_id"], how="semi")
    base = outputs.filter(pl.col("drafter") == BASELINE).sort("repeat")
    # one baseline per prompt and repeat: a prompt the baseline decoded in several streams (a
    # single-task stream and a mixture, or a copy) is compared once, with its first run's output
    exact = base.sort("repeat", "run_id", "request_id").unique(
        [*KEYS, "repeat"], keep="first", maintain_order=True
    )
    exact = exact.select(*KEYS, "repeat", pl.col("tokens").alias("baseline"))
    first = exact.group_by(KEYS, maintain_order=True).agg(
        pl.col("baseline").first().alias("baseline_any")
    )
    paired = (
        outputs.filter(pl.col("drafter") != BASELINE)
        .join(exact, on=[*KEYS, "repeat"], how="left", nulls_equal=True)
        .join(first, on=list(KEYS), how="inner", nulls_equal=True)
        .with_columns(pl.coalesce("baseline", "baseline_any").alias("baseline"))
    )
    rows = [
        {
            **{c: row[c] for c in ("run_id", "request_id", *KEYS, *LABELS)},
            "new_tokens": len(row["tokens"]),
            "baseline_tokens": len(row["baseline"]),
            "first_divergence": first_difference(row["tokens"], row["baseline"]),
        }
        for row in paired.iter_rows(named=True)
    ]
    schema = {
        **{c: outputs.schema[c] for c in ("run_id", "request_id", *KEYS, *LABELS)},
        "new_tokens": pl.Int64,
        "baseline_tokens": pl.Int64,
        "first_divergence": pl.Int64,
    }
    frame = pl.DataFrame(rows, schema=schema)
    return frame.with_columns(pl.col("first_divergence").is_not_null().alias("diverged")).sort(
        ["run_id", "request_id"]
    )
