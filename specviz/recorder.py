"""From engine records to event rows and request counters (the run directory's tables).

The recorder only reads :class:`~specviz.engine.Round` records and the seconds the runner
measured for them; it never touches the decoding loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from specviz.records import Round, TurnEnd
from specviz.schema import EVENT_SCHEMA, KIND_BONUS, KIND_CORRECTION, KIND_DRAFT, REQUEST_SCHEMA

if TYPE_CHECKING:
    from specviz.config import RunConfig
    from specviz.workloads.request import Request

# per-round columns filled by `add`; request-level labels are added once per request table
_ROUND_COLUMNS = (
    "turn",
    "round",
    "prefill",
    "position",
    "k",
    "n_drafted",
    "kind",
    "draft_token",
    "target_token",
    "accepted",
    "verified",
    "emitted",
    "q",
    "p",
    "shadow_token",
    "draft_s",
    "verify_s",
)


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
# moves as rows leave (:attr:`specviz.batch.drafters.RowAsk.row`, the decoder's ``cache_index``).
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
    """Column lists of one request's events; ``frame`` adds the request's labels."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in _ROUND_COLUMNS}

    def add(self, r: Round, draft_s: float, verify_s: float) -> None:
        c = self.cols
        gamma, n = len(r.draft), r.n_accepted
        n_verified = min(n + 1, gamma)
        rows = gamma + 1
        c["turn"] += [r.turn] * rows
        c["round"] += [r.index] * rows
        c["prefill"] += [r.prefill] * rows
        c["k"] += [r.k] * rows
        c["n_drafted"] += [gamma] * rows
        c["draft_s"] += [draft_s] * rows
        c["verify_s"] += [verify_s] * rows
        c["position"] += [*range(gamma), n]
        c["kind"] += [KIND_DRAFT] * gamma + [KIND_CORRECTION if n < gamma else KIND_BONUS]
        c["draft_token"] += [*r.draft, None]
        c["target_token"] += (
            list(r.target[:n_verified]) + [None] * (gamma - n_verified) + [r.target[n]]
        )
        c["accepted"] += [i < n for i in range(gamma)] + [None]
        c["verified"] += [i <= n for i in range(gamma)] + [True]
        c["emitted"] += [i < min(n, r.n_emitted) for i in range(gamma)] + [r.n_emitted > n]
        c["q"] += [*(r.q_tokens if r.q_tokens is not None else [None] * gamma), None]
        c["p"] += list(r.p) + [None] * (gamma - n_verified) + [r.p_next]
        c["shadow_token"] += [None] * gamma + [r.shadow]

    def frame(self, labels: dict[str, Any]) -> pl.DataFrame:
        n = len(self.cols["turn"])
        data = {name: [value] * n for name, value in labels.items()} | self.cols
        return pl.DataFrame(data, schema=EVENT_SCHEMA, strict=False)


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
