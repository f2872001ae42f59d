"""The run directory format: column names, types and meanings, in one place.

A run directory holds three files:

- ``events.parquet``: one row per drafted token and one row per token the target adds itself
  (the correction after a rejection, or the bonus after a fully accepted draft), for every verify
  round of every request;
- ``requests.parquet``: one row per request (a prompt with all its turns);
- ``run.json``: run metadata (models, revisions, dtype, device, versions, seed, hardware, git
  commit, the full configuration) and ``schema_version``.

Conventions (also in ``docs/schema.md``):

- A *round* is one forward pass of the target. Each turn starts with a prefill round
  (``prefill`` true, ``n_drafted == 0``, its single token a ``bonus``); every later round verifies
  ``n_drafted >= 0`` drafted tokens and adds exactly one target token (``correction`` when a
  draft was rejected, ``bonus`` when all were accepted). Plain autoregressive decoding is the
  same loop with ``n_drafted == 0`` in every round, so it emits exactly one token per round.
- ``position`` is 0-based: a draft row at position ``i`` is the ``i``-th drafted token of its
  round; the correction/bonus row sits at ``position == number of accepted drafts``.
- ``verified`` is false for drafted tokens after the first rejection: the target never judged
  them. Per-position conditional acceptance divides by verified rows only.
- ``emitted`` says whether the token made it into the output: accepted drafts and the
  correction/bonus token are emitted unless the turn already ended (end-of-sequence token or
  the ``max_new_tokens`` budget) earlier in the same round.
- Batches (``specviz.batch``, ``docs/batching.md``): a batched run decodes ``batch_size`` rows at
  once; every verify round of a row is one row of a batched target forward (``batch_step``),
  shared with ``batch_rows - 1`` other rows. Its ``draft_s`` and ``verify_s`` are the step's
  seconds divided by ``batch_rows`` (each row's share), so sums over events stay seconds of the
  run. A prefill round is the joining row's own forward (``batch_rows == 1``). A batch-size-1 run
  has ``batch_size == 1``, ``row == 0``, ``batch_rows == batch_tasks == 1`` and null
  ``batch_id``, ``batch_step`` and ``batch_composition``.
- ``drafter`` is the drafter's label (its name in a study, or ``--drafter-name``; else its
  kind), so two variants of one kind stay apart in metrics; ``requests.drafter_kind`` keeps the
  kind.

Versions: 1 (first release); 2 adds the batch columns, ``requests.drafter_kind`` and
``requests.prompt_turns``; 3 adds ``requests.turn_prompt_tokens`` (what cost accounting prices
each prefill by); 4 adds ``shadow_token`` (what a shadowing cost-aware policy learned from in
rounds it did not draft). Versions 2 and 3 are read as they are, the columns they lack
(:data:`ADDED_SINCE`) as nulls: cost accounting prices a prefill by ``prompt_tokens`` where
``turn_prompt_tokens`` is null, and ``shadow_token`` is only read to resume a run. Version 1 is
refused (its files lack ``drafter_kind`` and ``prompt_turns``, and its earliest ones the batch
columns, so one cannot tell what they hold), with a message saying to re-run it.
``tests/data/schema-N/`` holds a small run directory of each past version, written by that
version.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

import polars as pl

from specviz.errors import SpecvizError

SCHEMA_VERSION = 4

# every earlier version this one reads: table -> the columns it lacks, read as nulls
ADDED_SINCE: dict[int, dict[str, tuple[str, ...]]] = {
    2: {"events": ("shadow_token",), "requests": ("turn_prompt_tokens",)},
    3: {"events": ("shadow_token",), "requests": ()},
}
READABLE_VERSIONS = (*sorted(ADDED_SINCE), SCHEMA_VERSION)

EVENTS_FILE = "events.parquet"
REQUESTS_FILE = "requests.parquet"
RUN_FILE = "run.json"
# run.json: {"lanes": N} for a run decoded beside other runs (specviz.codecode), or one that
# reused requests of such a run (specviz.reuse): its requests have no batch-size-1 wall clock
CO_DECODED_KEY = "co_decoded"

KIND_DRAFT = "draft"
KIND_CORRECTION = "correction"
KIND_BONUS = "bonus"
# the kind names, in the order the layout writer (specviz.recorder.event_layout) indexes them
KINDS = (KIND_DRAFT, KIND_CORRECTION, KIND_BONUS)

# column -> (polars dtype, meaning). The docs tables are generated from these dicts.
# a request's labels, shared by both tables
LABEL_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "run_id": (pl.String(), "Run identifier (also in run.json)."),
    "request_id": (pl.String(), "Request identifier, unique within the run."),
    "request_index": (pl.Int32(), "0-based order of the request in the run's stream."),
    "repeat": (pl.Int16(), "Repeat index of the condition (0 for single runs)."),
    "prompt_id": (pl.String(), "Identifier of the prompt in its workload."),
    "category": (pl.String(), "Task category of the prompt (writing, coding, ...)."),
    "mixture": (pl.String(), "Name of the workload mixture the request came from."),
    "drafter": (
        pl.String(),
        "Drafter label: its name in the study (or --drafter-name), else its kind (model, prompt-lookup, layer-skip, ...); none for the baseline.",
    ),
    "policy": (pl.String(), "Draft-length policy name: constant, heuristic, ..."),
    "target": (pl.String(), "Target model name as given by the user."),
}

# how the request was batched (shared by both tables)
BATCH_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "batch_size": (pl.Int16(), "Configured batch size of the run (1: unbatched)."),
    "batch_composition": (
        pl.String(),
        "How requests were grouped into batches: stream | single-task | mixed (null: unbatched).",
    ),
    "batch_id": (pl.Int32(), "Batch the composition put the request in (null: unbatched)."),
    "row": (pl.Int16(), "Row slot of the request in its batch (0 when unbatched)."),
}

EVENT_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    **LABEL_COLUMNS,
    "turn": (pl.Int16(), "0-based turn of a multi-turn prompt."),
    "round": (pl.Int32(), "0-based index of the target forward pass within the request."),
    "prefill": (pl.Boolean(), "The round is a turn's prefill forward (not a verify round)."),
    "position": (pl.Int16(), "0-based slot in the round's draft (correction/bonus: #accepted)."),
    "k": (
        pl.Int16(),
        "Draft length the policy asked for in this round (0 for prefill/no drafter); the drafter is asked for at most the tokens left in the budget.",
    ),
    "n_drafted": (pl.Int16(), "Tokens the drafter actually proposed in this round (<= k)."),
    "kind": (pl.String(), "draft | correction | bonus."),
    "draft_token": (pl.Int32(), "Drafted token id (null on correction/bonus rows)."),
    "target_token": (pl.Int32(), "Token the target put at this position (null if unverified)."),
    "accepted": (pl.Boolean(), "Drafted token accepted by verification (null on target rows)."),
    "verified": (pl.Boolean(), "The target judged this token (false after the first rejection)."),
    "emitted": (pl.Boolean(), "The token is part of the output."),
    "q": (pl.Float32(), "Draft probability of the drafted token (null without a distribution)."),
    "p": (pl.Float32(), "Target probability of the token at this position (null if unverified)."),
    "shadow_token": (
        pl.Int32(),
        "On the target row of a round at k = 0 of a shadowing policy (cost-aware with a free drafter): the token the drafter would have drafted first, never verified; compare with target_token. Null elsewhere.",
    ),
    "draft_s": (pl.Float64(), "Seconds spent drafting in this round (same on every row of it)."),
    "verify_s": (pl.Float64(), "Seconds of the target forward + verification of this round."),
    **BATCH_COLUMNS,
    "batch_step": (
        pl.Int32(),
        "0-based index of the target forward pass in the run; rows of one batched verify pass share it (null: unbatched).",
    ),
    "batch_rows": (pl.Int16(), "Rows in this round's target forward pass (1 for prefill rounds)."),
    "batch_tasks": (pl.Int16(), "Distinct categories among those rows."),
}

REQUEST_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    **LABEL_COLUMNS,
    "drafter_kind": (
        pl.String(),
        "Drafter kind: none, model, prompt-lookup, layer-skip or component-skip.",
    ),
    "k": (pl.Int16(), "Initial/constant draft length of the policy (0 for the baseline)."),
    "draft": (pl.String(), "Draft model name (null unless drafter == model)."),
    "temperature": (pl.Float64(), "Sampling temperature (0 = greedy)."),
    "n_turns": (pl.Int16(), "Number of turns in the prompt."),
    "prompt_tokens": (pl.Int32(), "Prompt tokens of the first turn (chat template applied)."),
    "new_tokens": (pl.Int32(), "Tokens generated over all turns."),
    "rounds": (pl.Int32(), "Target forward passes over all turns (prefills included)."),
    "drafted": (pl.Int32(), "Drafted tokens over all turns."),
    "accepted": (pl.Int32(), "Accepted drafted tokens over all turns."),
    "wall_s": (pl.Float64(), "Wall seconds of generation over all turns (prefills included)."),
    "ttft_s": (pl.Float64(), "Seconds to the first token of the first turn."),
    "prefill_s": (pl.Float64(), "Seconds spent in prefill forwards."),
    "draft_s": (pl.Float64(), "Seconds spent drafting."),
    "verify_s": (pl.Float64(), "Seconds spent in verify forwards (prefill excluded)."),
    "finish_reason": (pl.String(), "Why the last turn stopped: eos | length."),
    "prompt_turns": (pl.List(pl.String()), "The user turns of the prompt, as sent."),
    "output_text": (pl.String(), "Output of all turns, joined by a blank line."),
    "output_turns": (pl.List(pl.String()), "Output text per turn."),
    "turn_new_tokens": (pl.List(pl.Int32()), "New tokens per turn."),
    "turn_wall_s": (pl.List(pl.Float64()), "Wall seconds per turn."),
    "turn_rounds": (pl.List(pl.Int32()), "Target forward passes per turn."),
    "turn_prompt_tokens": (
        pl.List(pl.Int32()),
        "Tokens fed to each turn's prefill (chat template and earlier turns included).",
    ),
    **BATCH_COLUMNS,
    "latency_s": (
        pl.Float64(),
        "Wall seconds from the request's admission (its first prefill) to its end; = wall_s unbatched. In a batch wall_s is the request's share of the batch's time.",
    ),
}


def polars_schema(columns: dict[str, tuple[pl.DataType, str]]) -> pl.Schema:
    """The polars schema of a column table."""
    return pl.Schema({name: dtype for name, (dtype, _) in columns.items()})


EVENT_SCHEMA = polars_schema(EVENT_COLUMNS)
REQUEST_SCHEMA = polars_schema(REQUEST_COLUMNS)


class SchemaError(SpecvizError):
    """An event or request table does not have the columns or types this version expects."""


def check_columns(
    schema: pl.Schema,
    expected: pl.Schema,
    what: str,
    source: str = "input",
    *,
    columns: Iterable[str] | None = None,
    same_type: Callable[[pl.DataType, pl.DataType], bool] = operator.eq,
    remedy: str = "Re-create it with this specviz version.",
) -> None:
    """Raise SchemaError naming the missing columns and type mismatches of ``schema``.

    ``columns``: check only these (default: every column of ``expected``); ``same_type``: when
    an actual dtype counts as the expected one; ``remedy``: the fix the message suggests.
    """
    names = list(dict.fromkeys(expected if columns is None else columns))
    missing = [c for c in names if c not in schema]
    wrong = [
        f"{c} is {schema[c]}, expected {expected[c]}"
        for c in names
        if c in schema and c in expected and not same_type(schema[c], expected[c])
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if wrong:
            parts.append("wrong types: " + "; ".join(wrong))
        raise SchemaError(
            f"{source} is not a specviz {what} table of schema version {SCHEMA_VERSION} "
            f"({'; '.join(parts)}). {remedy}"
        )
