"""From engine records to event rows and request counters (the run directory's tables).

The recorder only reads :class:`~specviz.engine.Round` records and the seconds the runner
measured for them; it never touches the decoding loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from specviz.records import Round, TurnEnd
from specviz.rundir import (
    EVENT_SCHEMA,
    KIND_BONUS,
    KIND_CORRECTION,
    KIND_DRAFT,
    KINDS,
    REQUEST_SCHEMA,
)

if TYPE_CHECKING:
    from specviz.config import RunConfig
    from specviz.workloads.request import Request

# what `add` keeps of each round; `event_layout` turns them into rows
_ROUND_FIELDS = (
    "turn",
    "round",
    "prefill",
    "k",
    "n_drafted",
    "n_accepted",
    "n_emitted",
    "draft_s",
    "verify_s",
)
# per-row values `add` writes (token ids and probabilities); layout columns come from event_layout
_VALUE_COLUMNS = ("draft_token", "target_token", "q", "p", "shadow_token")


def event_layout(
    turn: np.ndarray,
    round_index: np.ndarray,
    prefill: np.ndarray,
    k: np.ndarray,
    n_drafted: np.ndarray,
    n_accepted: np.ndarray,
    n_emitted: np.ndarray,
    draft_s: np.ndarray | None,
    verify_s: np.ndarray | None,
) -> pl.DataFrame:
    """The event rows of rounds given one value per round (vectorised): every column of
    :data:`~specviz.rundir.schema.EVENT_COLUMNS` that follows from the counts, in row order.

    The one writer of the row layout (:mod:`specviz.rundir.schema`): a round of ``n_drafted`` drafts
    has ``n_drafted`` draft rows (``position`` 0, 1, ...) then one target row at ``position ==
    n_accepted``, a ``correction`` when a draft was rejected, else a ``bonus`` (kind names from
    :data:`~specviz.rundir.schema.KINDS`); draft rows after the first rejection are unverified;
    ``n_emitted`` of the round's tokens reach the output. ``draft_s`` / ``verify_s`` None: the
    caller did not measure the rounds' seconds, which are then null (not NaN: nothing was
    measured, not an undefined figure). Token ids and probabilities are the caller's. Its three
    callers: :class:`EventRecorder` (engine records), :func:`specviz.metrics.synthetic.
    synthetic_events` (made up) and :func:`specviz.endpoint.run.step_events` (a server's
    per-step counts, no seconds).
    """
    rows_per_round = np.asarray(n_drafted, dtype=np.int64) + 1
    row_round = np.repeat(np.arange(rows_per_round.size), rows_per_round)
    slot = np.arange(row_round.size) - (np.cumsum(rows_per_round) - rows_per_round)[row_round]
    drafted = np.asarray(n_drafted)[row_round]
    accepted = np.asarray(n_accepted)[row_round]
    emitted = np.asarray(n_emitted)[row_round]
    is_target = slot == drafted
    kind = np.where(is_target, np.where(accepted < drafted, KINDS.index(KIND_CORRECTION),
                                        KINDS.index(KIND_BONUS)), KINDS.index(KIND_DRAFT))  # fmt: skip
    columns = {
        "turn": np.asarray(turn)[row_round],
        "round": np.asarray(round_index)[row_round],
        "prefill": np.asarray(prefill, dtype=bool)[row_round],
        "position": np.where(is_target, accepted, slot),
        "k": np.asarray(k)[row_round],
        "n_drafted": drafted,
        "kind": pl.Series(KINDS, dtype=pl.String).gather(kind),
        # null on the target row: only drafted tokens are accepted or not
        "accepted": pl.Series(slot < accepted).scatter(np.flatnonzero(is_target), None),
        "verified": is_target | (slot <= accepted),
        "emitted": np.where(is_target, emitted > accepted, slot < np.minimum(accepted, emitted)),
        "draft_s": _round_seconds(draft_s, row_round),
        "verify_s": _round_seconds(verify_s, row_round),
    }
    return pl.DataFrame(
        [pl.Series(name, values).cast(EVENT_SCHEMA[name]) for name, values in columns.items()]
    )


def _round_seconds(seconds: np.ndarray | None, row_round: np.ndarray) -> pl.Series:
    """Each row's round's seconds; nulls when they were not measured (``seconds`` None)."""
    if seconds is None:
        return pl.repeat(None, row_round.size, dtype=pl.Float64, eager=True)
    return pl.Series(np.asarray(seconds, dtype=np.float64)[row_round])


@dataclass
class RequestCounters:
    """Counters of one request, kept whether or not events are recorded."""

    new_tokens: int = 0
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    turn_new_tokens: list[int] = field(default_factory=list)
    turn_rounds: list[int] = field(default_factory=list)
    turn_wall_s: list[float] = field(default_factory=list)
    turn_prompt_tokens: list[int] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    finish: str = ""
    prompt_tokens: int = 0

    def add_round(self, r: Round, draft_s: float, verify_s: float) -> None:
        self.rounds += 1
        self.new_tokens += r.n_emitted
        self.drafted += len(r.draft)
        self.accepted += r.n_accepted
        self.draft_s += draft_s
        if r.prefill:
            self.prefill_s += verify_s
        else:
            self.verify_s += verify_s

    def end_turn(self, end: TurnEnd, rounds: int, wall_s: float) -> None:
        if end.turn == 0:
            self.prompt_tokens = end.prompt_tokens
        self.turn_new_tokens.append(len(end.tokens))
        self.turn_rounds.append(rounds)
        self.turn_prompt_tokens.append(end.prompt_tokens)
        self.turn_wall_s.append(wall_s)
        self.outputs.append(end.text)
        self.finish = end.finish


# The batch columns of a batch-size-1 run (batched runs: specviz.batch.runner). The column
# ``row`` (a name kept so that recorded runs stay readable) holds the request's *slot* in its
# batch, stable while the request is in it; it is not the row's index in the batch cache, which
# moves as rows leave (:attr:`specviz.batch.drafters.RowAsk.cache_index`).
UNBATCHED_LABELS: dict[str, Any] = {
    "batch_size": 1,
    "batch_composition": None,
    "batch_id": None,
    "row": 0,
}
UNBATCHED_EVENT_LABELS: dict[str, Any] = {
    **UNBATCHED_LABELS,
    "batch_step": None,
    "batch_rows": 1,
    "batch_tasks": 1,
}


class EventRecorder:
    """One request's rounds; ``frame`` writes their event rows (:func:`event_layout`) with the
    request's labels. ``cols`` holds per-row values (tokens, probabilities; a subclass may add
    per-row columns, one value per row of each round)."""

    def __init__(self) -> None:
        self.rounds: dict[str, list[Any]] = {c: [] for c in _ROUND_FIELDS}
        self.cols: dict[str, list[Any]] = {c: [] for c in _VALUE_COLUMNS}

    def add(self, r: Round, draft_s: float, verify_s: float) -> None:
        gamma, n = len(r.draft), r.n_accepted
        n_verified = min(n + 1, gamma)
        for name, value in zip(
            _ROUND_FIELDS,
            (r.turn, r.index, r.prefill, r.k, gamma, n, r.n_emitted, draft_s, verify_s),
            strict=True,
        ):
            self.rounds[name].append(value)
        c = self.cols
        c["draft_token"] += [*r.draft, None]
        c["target_token"] += (
            list(r.target[:n_verified]) + [None] * (gamma - n_verified) + [r.target[n]]
        )
        c["q"] += [*(r.q_tokens if r.q_tokens is not None else [None] * gamma), None]
        c["p"] += list(r.p) + [None] * (gamma - n_verified) + [r.p_next]
        c["shadow_token"] += [None] * gamma + [r.shadow]

    def frame(self, labels: dict[str, Any]) -> pl.DataFrame:
        rounds = {name: np.asarray(values) for name, values in self.rounds.items()}
        layout = event_layout(
            rounds["turn"], rounds["round"], rounds["prefill"], rounds["k"],
            rounds["n_drafted"], rounds["n_accepted"], rounds["n_emitted"],
            rounds["draft_s"], rounds["verify_s"],
        )  # fmt: skip
        n = layout.height
        given = {name: [value] * n for name, value in labels.items() if name not in layout}
        data = given | self.cols
        values = pl.DataFrame(data, schema={c: EVENT_SCHEMA[c] for c in data}, strict=False)
        return pl.concat([values, layout], how="horizontal").select(EVENT_SCHEMA.names())


def run_labels(run_id: str, config: RunConfig) -> dict[str, Any]:
    """The columns every event and request row of a run shares."""
    return {
        "run_id": run_id,
        "drafter": config.drafter.label,
        "policy": config.policy_label,
        "target": config.target.name,
    }


def request_labels(request: Request, labels: dict[str, Any]) -> dict[str, Any]:
    """The columns events and requests of one request share: run labels and the request's."""
    return {
        **labels,
        "request_id": request.id,
        "request_index": request.index,
        "repeat": request.repeat,
        "prompt_id": request.prompt.id,
        "category": request.prompt.category,
        "mixture": request.mixture,
    }


def request_frame(
    request: Request,
    config: RunConfig,
    labels: dict[str, Any],
    counters: RequestCounters,
    ttft_s: float | None,
    latency_s: float,
) -> pl.DataFrame:
    """The request table row of one finished request (``labels`` from :func:`request_labels`).

    ``latency_s``: from the request's admission to its last token (its own wall time at batch
    size 1; in a batch it includes waiting for the other rows).
    """
    row = {
        **labels,
        "k": config.k_label,
        "drafter_kind": config.drafter.kind,
        "draft": config.drafter.draft.name if config.drafter.draft else None,
        "temperature": config.sampling.temperature,
        "n_turns": len(request.prompt.turns),
        "prompt_tokens": counters.prompt_tokens,
        "new_tokens": counters.new_tokens,
        "rounds": counters.rounds,
        "drafted": counters.drafted,
        "accepted": counters.accepted,
        "wall_s": sum(counters.turn_wall_s),
        "ttft_s": ttft_s,
        "prefill_s": counters.prefill_s,
        "draft_s": counters.draft_s,
        "verify_s": counters.verify_s,
        "finish_reason": counters.finish,
        "prompt_turns": list(request.prompt.turns),
        "output_text": "\n\n".join(counters.outputs),
        "output_turns": counters.outputs,
        "turn_new_tokens": counters.turn_new_tokens,
        "turn_wall_s": counters.turn_wall_s,
        "turn_rounds": counters.turn_rounds,
        "turn_prompt_tokens": counters.turn_prompt_tokens,
        "latency_s": latency_s,
    }
    return pl.DataFrame([row], schema=REQUEST_SCHEMA, strict=False)
