"""Event tables built from a compact description of rounds: for tests, docs and the benchmark.

:func:`events_from_rounds` turns the rounds of one request, each described compactly by a
:class:`RoundSpec` (how many tokens were drafted, how many accepted, how many emitted, the
seconds), into engine records and passes them through the run's own recorder, so the event-row
layout is written in one place (:mod:`specviz.recorder`). :func:`synthetic_events` draws a large
random event table for benchmarking the aggregations, vectorized: it gives the same recorder's
layout writer (:func:`specviz.recorder.event_layout`) per-round arrays instead of records
(building a record per round would make the benchmark's ten million rows take minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from specviz.recorder import UNBATCHED_EVENT_LABELS, EventRecorder, event_layout
from specviz.records import Round
from specviz.rundir import EVENT_SCHEMA, KIND_DRAFT


@dataclass(frozen=True)
class RoundSpec:
    """A compact description of one round: ``drafted`` tokens proposed (policy asked ``k``), the first ``accepted`` accepted.

    ``emitted`` is how many of the round's tokens reach the output (default ``accepted + 1``:
    the accepted drafts and the correction/bonus); fewer when the turn ends inside the round.
    A prefill round drafts nothing and emits its one bonus token.
    """

    drafted: int = 0
    accepted: int = 0
    k: int | None = None
    prefill: bool = False
    emitted: int | None = None
    draft_s: float = 0.0
    verify_s: float = 0.0
    turn: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.accepted <= self.drafted:
            raise ValueError(f"need 0 <= accepted <= drafted, got {self.accepted}, {self.drafted}")
        if self.prefill and self.drafted:
            raise ValueError("a prefill round drafts nothing")
        if self.emitted is not None and not 0 <= self.emitted <= self.accepted + 1:
            raise ValueError(f"emitted must be in [0, accepted + 1], got {self.emitted}")


@dataclass(frozen=True)
class Labels:
    """The request-level columns of an event table."""

    run_id: str = "run"
    request_id: str = "r0"
    request_index: int = 0
    repeat: int = 0
    prompt_id: str = "p0"
    category: str = "writing"
    mixture: str = "writing"
    drafter: str = "model"
    policy: str = "constant"
    target: str = "tiny"


def prefill(verify_s: float = 0.0, turn: int = 0) -> RoundSpec:
    """The prefill round of a turn."""
    return RoundSpec(prefill=True, verify_s=verify_s, turn=turn)


def as_record(spec: RoundSpec, index: int) -> Round:
    """The engine record of ``spec`` (round ``index`` of its request), with made-up tokens.

    The draft proposes tokens 100, 101, ...; the target agrees on the accepted ones and puts
    200 + n at the first rejected position n (the correction) or 300 after a fully accepted
    draft (the bonus). Target probabilities: 1.0 where the draft was accepted, 0.0 where it was
    rejected, 1.0 for the correction/bonus token. The metrics read none of these values.
    """
    n, gamma = spec.accepted, spec.drafted
    draft = tuple(100 + i for i in range(gamma))
    next_token = 300 if n == gamma else 200 + n
    n_verified = min(n + 1, gamma)
    return Round(
        turn=spec.turn,
        index=index,
        prefill=spec.prefill,
        k=0 if spec.prefill else (gamma if spec.k is None else spec.k),
        draft=draft,
        q_tokens=None,
        target=(*draft[:n], next_token),
        p=tuple(1.0 if i < n else 0.0 for i in range(n_verified)),
        p_next=1.0,
        n_accepted=n,
        n_emitted=n + 1 if spec.emitted is None else spec.emitted,
        finish=None,
    )


def events_from_rounds(rounds: Sequence[RoundSpec], labels: Labels = Labels()) -> pl.DataFrame:
    """The event rows of one request whose rounds are ``rounds`` (in order), written by the real
    recorder (:class:`specviz.recorder.EventRecorder`) from engine records (:func:`as_record`)."""
    recorder = EventRecorder()
    for index, spec in enumerate(rounds):
        recorder.add(as_record(spec, index), spec.draft_s, spec.verify_s)
    return recorder.frame(asdict(labels) | UNBATCHED_EVENT_LABELS)


def synthetic_events(
    n_rows: int,
    *,
    seed: int = 0,
    k: int = 5,
    categories: Sequence[str] = ("writing", "coding", "math", "summarization", "translation"),
    alphas: Sequence[float] = (0.45, 0.8, 0.7, 0.85, 0.6),
    rounds_per_request: int = 60,
    drafter: str = "model",
    run_id: str = "synthetic",
) -> pl.DataFrame:
    """At least ``n_rows`` random events (whole requests), schema-conformant, vectorized.

    Each request has one prefill round and ``rounds_per_request - 1`` verify rounds drafting
    ``k`` tokens (``k = 0``: plain decoding, e.g. with ``drafter="none"``); its category's alpha is the i.i.d. acceptance probability of each draft.
    Timings: verify 50 ms + 5 ms per token verified, draft 4 ms per drafted token.
    """
    if len(alphas) != len(categories):
        raise ValueError("give one alpha per category")
    rng = np.random.default_rng(seed)
    rows_per_request = 1 + (rounds_per_request - 1) * (k + 1)
    n_requests = max(1, -(-n_rows // rows_per_request))
    n_rounds = n_requests * rounds_per_request
    request = np.arange(n_rounds) // rounds_per_request
    round_in_request = np.arange(n_rounds) % rounds_per_request
    is_prefill = round_in_request == 0
    req_cat = rng.integers(0, len(categories), n_requests)
    alpha = np.asarray(alphas)[req_cat][request]
    # accepted drafts: number of leading successes, capped at k
    trials = rng.random((n_rounds, k)) < alpha[:, None]
    acc = (
        np.where(trials.all(axis=1), k, np.argmin(trials, axis=1)) if k else np.zeros(n_rounds, int)
    )
    n_drafted = np.where(is_prefill, 0, k)
    acc = np.where(is_prefill, 0, acc)
    layout = event_layout(
        turn=np.zeros(n_rounds, dtype=np.int16),
        round_index=round_in_request,
        prefill=is_prefill,
        k=n_drafted,
        n_drafted=n_drafted,
        n_accepted=acc,
        n_emitted=acc + 1,
        draft_s=0.004 * n_drafted,
        verify_s=0.05 + 0.005 * (n_drafted + 1),
    )
    rows = np.repeat(np.arange(n_rounds), n_drafted + 1)
    req = request[rows]
    labels = {
        "run_id": run_id,
        "repeat": 0,
        "mixture": "mix",
        "drafter": drafter,
        "policy": "constant",
        "target": "synthetic-target",
        "q": None,
        "p": None,
        "shadow_token": None,  # constant k: never shadows
        **UNBATCHED_EVENT_LABELS,
    }
    frame = layout.with_columns(
        pl.Series("request_id", req).cast(pl.String),
        pl.Series("request_index", req),
        pl.Series("prompt_id", req).cast(pl.String),
        pl.Series(list(categories), dtype=pl.String).gather(req_cat[req]).alias("category"),
        # made-up tokens: 100 drafted, 100 from the target where it judged
        pl.when(pl.col("kind") == KIND_DRAFT).then(100).alias("draft_token"),
        pl.when(pl.col("verified")).then(100).alias("target_token"),
        *(pl.lit(value).alias(name) for name, value in labels.items()),
    )
    return frame.select(pl.col(name).cast(dtype) for name, dtype in EVENT_SCHEMA.items())


#: defaults for the request columns a hand-built request row may leave out
REQUEST_DEFAULTS: dict[str, object] = {
    "run_id": "run",
    "repeat": 0,
    "category": "writing",
    "mixture": "writing",
    "drafter": "model",
    "policy": "constant",
    "k": 5,
    "target": "tiny",
    "draft": None,
    "temperature": 0.0,
    "n_turns": 1,
    "prompt_tokens": 10,
    "rounds": 1,
    "drafted": 0,
    "accepted": 0,
    "ttft_s": 0.0,
    "prefill_s": 0.0,
    "draft_s": 0.0,
    "verify_s": 0.0,
    "finish_reason": "length",
    "output_text": "",
    "output_turns": None,
    "turn_new_tokens": None,
    "turn_wall_s": None,
    "turn_rounds": None,
    "turn_prompt_tokens": None,
}


def requests_from_rows(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    """A schema-conformant request table from rows giving at least prompt_id, new_tokens, wall_s.

    Missing columns take :data:`REQUEST_DEFAULTS`; request_id and request_index default to the
    row's index within its run_id.
    """
    from specviz.rundir import REQUEST_SCHEMA

    filled = []
    counters: dict[object, int] = {}
    for row in rows:
        full = {**REQUEST_DEFAULTS, **row}
        index = counters.get(full["run_id"], 0)
        counters[full["run_id"]] = index + 1
        full.setdefault("request_index", index)
        full.setdefault("request_id", f"{full['run_id']}-{index}")
        filled.append({c: full.get(c) for c in REQUEST_SCHEMA})
    return pl.DataFrame(filled, schema=REQUEST_SCHEMA, orient="row")
