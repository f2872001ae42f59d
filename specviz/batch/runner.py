"""Decoding a request stream in batches and writing the same run directory as batch size 1.

``run(config, requests, out_dir, batch=batch)`` (:mod:`specviz.runner`) decodes through
:class:`BatchSession`: it composes the requests into batches
(:mod:`specviz.batch.composition`), decodes them with :class:`~specviz.batch.decoder.BatchDecoder`,
times every record it yields, and writes ``events.parquet``, ``requests.parquet`` and ``run.json``
(the configuration plus the :class:`~specviz.batch.config.BatchConfig` under ``batch``).

Time attribution. A batched forward pass serves several requests at once, so its seconds are
split equally among its rows: each row's event rows carry ``draft_s`` and ``verify_s`` = the
step's seconds / ``batch_rows``, and a request's ``wall_s`` is the sum of its shares (plus its
own prefills and turn ends). Sums over requests therefore add up to the run's wall time, and
``sum(new_tokens) / sum(wall_s)`` is the batch's throughput, comparable with a batch-size-1
run's. ``latency_s`` (from admission to the end) and ``ttft_s`` (to the first prefill's token;
time in the queue is not counted) are the batch-size-1 definitions,
:class:`~specviz.clock.RequestClock`.

Resuming skips finished requests; the others are decoded in the batches the composition gave
them (without the finished rows), so their neighbours, and thus their timings, can differ from an
uninterrupted run's. A batch-level adaptive policy restarts from its initial k.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from specviz.batch.composition import compose
from specviz.batch.config import BatchConfig, BatchConfigError, BatchDrafterError
from specviz.batch.decoder import (
    BatchDecoder,
    Job,
    RowDone,
    RowTurnEnd,
    Step,
    StepDrafted,
    StepPrefill,
)
from specviz.batch.drafters import build_batch_drafter
from specviz.clock import RequestClock, Span, device_sync, spans
from specviz.config import RunConfig
from specviz.forward import new_cache
from specviz.hybrid.state import is_hybrid
from specviz.models import LoadedModel, ModelCache
from specviz.policies import build_policy
from specviz.recorder import EventRecorder, RequestCounters, request_frame, request_labels
from specviz.records import Round
from specviz.rundir import Finished
from specviz.supports import unbatched_drafter, unbatched_policy
from specviz.workloads.prompt import Prompt
from specviz.workloads.request import Request, request_seed

_BATCH_ROUND_COLUMNS = ("batch_step", "batch_rows", "batch_tasks")


class BatchEventRecorder(EventRecorder):
    """Event rows of one request in a batched run: per round also the batched forward's step,
    row count and task count."""

    def __init__(self) -> None:
        super().__init__()
        self.cols |= {c: [] for c in _BATCH_ROUND_COLUMNS}  # the recorder's frame writes them

    def add_step(
        self, r: Round, draft_s: float, verify_s: float, step: int, rows: int, tasks: int
    ) -> None:
        self.add(r, draft_s, verify_s)
        n = len(r.draft) + 1
        self.cols["batch_step"] += [step] * n
        self.cols["batch_rows"] += [rows] * n
        self.cols["batch_tasks"] += [tasks] * n


@dataclass
class _Tally:
    """What is measured of one request while it is in the batch."""

    request: Request
    batch_id: int
    slot: int = -1
    counters: RequestCounters = field(default_factory=RequestCounters)
    events: BatchEventRecorder = field(default_factory=BatchEventRecorder)
    clock: RequestClock = field(default_factory=RequestClock)
    turn_s: float = 0.0
    turn_rounds: int = 0
    record_events: bool = True

    def add(
        self, r: Round, draft_s: float, verify_s: float, step: int, rows: int, tasks: int
    ) -> None:
        self.counters.add_round(r, draft_s, verify_s)
        if self.record_events:
            self.events.add_step(r, draft_s, verify_s, step, rows, tasks)
        self.turn_s += draft_s + verify_s
        self.turn_rounds += 1


def _refuse_recurrent(model: LoadedModel, name: str, role: str) -> None:
    """Batched rollback crops attention KV only; SSM state needs the batch-size-1 hybrid path."""
    if is_hybrid(new_cache(model.model)):
        raise BatchConfigError(
            f"the {role} {name} keeps recurrent (SSM) state, which batched decoding cannot roll "
            "back: run it with batch size 1 (specviz.hybrid restores that state), or pick an "
            "attention-only model"
        )


def check_batchable(config: RunConfig) -> None:
    """Refuse, before any model loads, a drafter or policy that has no batched version (as
    each kind declares in :mod:`specviz.supports`)."""
    why = unbatched_drafter(config.drafter.kind)
    if why is not None:
        raise BatchDrafterError(why)
    why = unbatched_policy(config.policy.kind)
    if why is not None:
        raise BatchConfigError(why)


class BatchSession:
    """Batched decoding for :func:`specviz.runner.run`: compose, decode, time, tally."""

    def __init__(
        self,
        config: RunConfig,
        batch: BatchConfig,
        target: LoadedModel,
        models: ModelCache,
        record_events: bool,
    ) -> None:
        _refuse_recurrent(target, config.target.name, "target")
        if config.drafter.draft is not None:
            draft = config.drafter.draft
            loaded = models.get(draft, config.drafter.draft_quant)
            _refuse_recurrent(loaded, draft.name, "draft model")
        drafter = build_batch_drafter(config.drafter, target, config.sampling, models)
        self.config = config
        self.batch = batch
        self.target = target
        self.record_events = record_events
        label = config.drafter.label
        self.decoder = BatchDecoder(
            target,
            drafter,
            lambda: build_policy(config.policy, drafter=label),
            config.sampling,
            config.max_new_tokens,
            batch,
        )

    def encode_turn(self, prompt: Prompt, answers: list[str]) -> list[int]:
        return self.decoder.encode_turn(prompt, answers)

    def start(self, out_dir: Path, meta: dict[str, Any], done: set[str]) -> None:
        return None  # a batch-level policy restarts from its initial k (see the module doc)

    def decode(
        self, requests: Sequence[Request], done: set[str], labels: dict[str, Any]
    ) -> Iterator[Finished]:
        tallies, jobs = self._plan(requests, done)
        labels = labels | {
            "batch_size": self.batch.size,
            "batch_composition": self.batch.composition,
        }
        wall_s = draft_s = 0.0
        for record, span in spans(self.decoder.run(jobs), device_sync(self.target.device)):
            seconds = span.seconds
            wall_s += seconds
            if isinstance(record, StepDrafted):
                draft_s = seconds
            elif isinstance(record, StepPrefill):
                _tally_prefill(tallies[record.row.key], record, span)
            elif isinstance(record, Step):
                _tally_step(tallies, record, draft_s, seconds)
                draft_s = 0.0
            elif isinstance(record, RowTurnEnd):
                tally = tallies[record.key]
                tally.counters.end_turn(record.end, tally.turn_rounds, tally.turn_s + seconds)
                tally.turn_s, tally.turn_rounds = 0.0, 0
            elif isinstance(record, RowDone):
                tally = tallies[record.key]
                tally.counters.turn_wall_s[-1] += seconds
                tally.clock.end(span.end)
                events, row = _request_rows(tally, self.config, labels)
                yield Finished(events, row, wall_s)

    def _plan(
        self, requests: Sequence[Request], done: set[str]
    ) -> tuple[dict[int, _Tally], list[list[Job]]]:
        """The unfinished requests in the batches the composition gives the whole stream."""
        prompts = [r.prompt for r in requests]
        batches = compose(
            list(range(len(requests))), prompts, self.batch.size, self.batch.composition
        )
        tallies: dict[int, _Tally] = {}
        jobs: list[list[Job]] = []
        seed = self.config.seed
        for batch_id, members in enumerate(batches):
            todo = [i for i in members if requests[i].id not in done]
            for i in todo:
                tallies[i] = _Tally(requests[i], batch_id, record_events=self.record_events)
            jobs.append(
                [
                    Job(i, requests[i].prompt, request_seed(seed, requests[i]), batch_id)
                    for i in todo
                ]
            )
        return tallies, jobs


def _tally_prefill(tally: _Tally, record: StepPrefill, span: Span) -> None:
    tally.clock.prefilled(span)
    tally.slot = record.row.slot
    tally.add(record.row.round, 0.0, span.seconds, record.index, 1, 1)


def _tally_step(tallies: dict[int, _Tally], record: Step, draft_s: float, seconds: float) -> None:
    """The step's seconds split equally among its rows (see the module doc)."""
    n = len(record.rows)
    for row in record.rows:
        tallies[row.key].add(row.round, draft_s / n, seconds / n, record.index, n, record.tasks)


def _request_rows(
    tally: _Tally, config: RunConfig, labels: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A finished request's event rows and request row."""
    request, counters, clock = tally.request, tally.counters, tally.clock
    slot = {"batch_id": tally.batch_id, "row": tally.slot}  # column row = the slot (recorder)
    shared = request_labels(request, labels | slot)
    row = request_frame(request, config, shared, counters, clock.ttft_s, clock.latency_s)
    return tally.events.frame(shared), row
