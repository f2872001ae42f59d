"""Running a request stream in batches and writing the same run directory as batch size 1.

``run_batched(config, batch, requests, out_dir)`` composes the requests into batches
(:mod:`specviz.batch.composition`), decodes them with :class:`~specviz.batch.decoder.BatchDecoder`,
times every record it yields, and writes ``events.parquet``, ``requests.parquet`` and ``run.json``
(the configuration plus the :class:`~specviz.batch.config.BatchConfig` under ``batch``).

Time attribution. A batched forward pass serves several requests at once, so its seconds are
split equally among its rows: each row's event rows carry ``draft_s`` and ``verify_s`` = the
step's seconds / ``batch_rows``, and a request's ``wall_s`` is the sum of its shares (plus its
own prefills and turn ends). Sums over requests therefore add up to the run's wall time, and
``sum(new_tokens) / sum(wall_s)`` is the batch's throughput, comparable with a batch-size-1
run's. ``latency_s`` is what the request's user waits: from its admission (the start of its
first prefill) to its end. ``ttft_s`` is its first prefill (time in the queue is not counted).

Resuming skips finished requests; the others are decoded in the batches the composition gave
them (without the finished rows), so their neighbours, and thus their timings, can differ from an
uninterrupted run's. A batch-level adaptive policy restarts from its initial k.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm.auto import tqdm

from specviz.batch.composition import compose
from specviz.batch.config import BatchConfig, BatchConfigError
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
from specviz.config import RunConfig
from specviz.engine import Round
from specviz.forward import new_cache
from specviz.hybrid.state import is_hybrid
from specviz.models import LoadedModel, ModelCache
from specviz.outdir import locked
from specviz.recorder import (
    EventRecorder,
    RequestCounters,
    request_frame,
    request_labels,
    run_labels,
)
from specviz.runlog import RunDirError, RunWriter, write_json
from specviz.runner import (
    Request,
    RunSummary,
    begin_run,
    open_run_dir,
    request_seed,
    timed,
    workload_fingerprint,
)
from specviz.schema import EVENT_SCHEMA, RUN_FILE, SCHEMA_VERSION

_BATCH_ROUND_COLUMNS = ("batch_step", "batch_rows", "batch_tasks")


class BatchEventRecorder(EventRecorder):
    """Event rows of one request in a batched run: per round also the batched forward's step,
    row count and task count."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_cols: dict[str, list[Any]] = {c: [] for c in _BATCH_ROUND_COLUMNS}

    def add_step(
        self, r: Round, draft_s: float, verify_s: float, step: int, rows: int, tasks: int
    ) -> None:
        self.add(r, draft_s, verify_s)
        n = len(r.draft) + 1
        self.batch_cols["batch_step"] += [step] * n
        self.batch_cols["batch_rows"] += [rows] * n
        self.batch_cols["batch_tasks"] += [tasks] * n

    def frame(self, labels: dict[str, Any]) -> pl.DataFrame:
        n = len(self.cols["turn"])
        data = {name: [value] * n for name, value in labels.items()} | self.cols | self.batch_cols
        return pl.DataFrame(data, schema=EVENT_SCHEMA, strict=False)


@dataclass
class _Tally:
    """What is measured of one request while it is in the batch."""

    request: Request
    batch_id: int
    slot: int = -1
    counters: RequestCounters = field(default_factory=RequestCounters)
    events: BatchEventRecorder = field(default_factory=BatchEventRecorder)
    admitted: float | None = None
    ttft: float | None = None
    turn_s: float = 0.0
    turn_rounds: int = 0

    def add(
        self, r: Round, draft_s: float, verify_s: float, step: int, rows: int, tasks: int
    ) -> None:
        self.counters.add_round(r, draft_s, verify_s)
        self.events.add_step(r, draft_s, verify_s, step, rows, tasks)
        self.turn_s += draft_s + verify_s
        self.turn_rounds += 1


TASK_POLICIES = ("heuristic-per-task", "cost-aware")  # batch size 1 only


def _refuse_recurrent(model: LoadedModel, name: str, role: str) -> None:
    """Batched rollback crops attention KV only; SSM state needs the batch-size-1 hybrid path."""
    if is_hybrid(new_cache(model.model)):
        raise BatchConfigError(
            f"the {role} {name} keeps recurrent (SSM) state, which batched decoding cannot roll "
            "back: run it with batch size 1 (specviz.hybrid restores that state), or pick an "
            "attention-only model"
        )


def run_batched(
    config: RunConfig,
    batch: BatchConfig,
    requests: Sequence[Request],
    out_dir: Path,
    *,
    resume: bool = False,
    models: ModelCache | None = None,
    progress: bool = True,
    record_events: bool = True,
) -> RunSummary:
    """Decode ``requests`` in batches under ``config`` and ``batch``; write ``out_dir``.

    ``RunSummary.wall_s`` is the run's wall time, so ``tokens_per_s`` is the batch throughput.
    """
    if not requests:
        raise RunDirError("the workload is empty: nothing to run")
    out_dir = Path(out_dir)
    identity = {
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "workload": workload_fingerprint(requests),
        "batch": batch.to_dict(),
    }
    open_run_dir(out_dir, identity, resume)
    if config.policy.kind in TASK_POLICIES:
        raise BatchConfigError(
            f"policy {config.policy.kind!r} has no batched version (it keeps state per task and "
            "per round): run it with batch size 1"
        )
    with locked(out_dir):
        open_run_dir(out_dir, identity, resume)  # again under the lock: nobody wrote it meanwhile
        return _run_batched_locked(
            config, batch, requests, out_dir, identity, models or ModelCache(), progress,
            record_events,
        )  # fmt: skip


def _run_batched_locked(
    config: RunConfig,
    batch: BatchConfig,
    requests: Sequence[Request],
    out_dir: Path,
    identity: dict[str, Any],
    models: ModelCache,
    progress: bool,
    record_events: bool,
) -> RunSummary:
    target = models.get(config.target)
    _refuse_recurrent(target, config.target.name, "target")
    if config.drafter.draft is not None:
        draft = config.drafter.draft
        _refuse_recurrent(models.get(draft), draft.name, "draft model")
    drafter = build_batch_drafter(config.drafter, target, config.sampling, models)
    decoder = BatchDecoder(
        target, drafter, config.policy, config.sampling, config.max_new_tokens, batch
    )
    for request in requests:  # fail before writing anything if a first turn cannot fit
        decoder.encode_turn(request.prompt, [])

    meta = begin_run(out_dir, identity, config, target, models, requests)
    run_id = meta["run_id"]

    writer = RunWriter(out_dir)
    writer.consolidate()
    done = writer.finished_request_ids()
    batches = compose(
        list(range(len(requests))), [r.prompt for r in requests], batch.size, batch.composition
    )
    tallies: dict[int, _Tally] = {}
    jobs: list[list[Job]] = []
    for batch_id, members in enumerate(batches):
        todo = [i for i in members if requests[i].id not in done]
        for i in todo:
            tallies[i] = _Tally(requests[i], batch_id)
        jobs.append(
            [
                Job(i, requests[i].prompt, request_seed(config.seed, requests[i]), batch_id)
                for i in todo
            ]
        )
    labels = {
        **run_labels(run_id, config),
        "batch_size": batch.size,
        "batch_composition": batch.composition,
    }
    sync = torch.cuda.synchronize if target.device.type == "cuda" else (lambda: None)
    bar = tqdm(
        total=len(tallies), desc=out_dir.name, unit="req", disable=not progress, dynamic_ncols=True
    )
    tokens = drafted = accepted = 0
    wall_s = draft_s = 0.0
    for record, seconds in timed(decoder.run(jobs), sync):
        wall_s += seconds
        if isinstance(record, StepDrafted):
            draft_s = seconds
        elif isinstance(record, StepPrefill):
            tally = tallies[record.row.key]
            if tally.admitted is None:
                tally.admitted, tally.ttft = time.perf_counter() - seconds, seconds
            tally.slot = record.row.slot
            tally.add(record.row.round, 0.0, seconds, record.index, 1, 1)
        elif isinstance(record, Step):
            n = len(record.rows)
            for row in record.rows:
                tallies[row.key].add(
                    row.round, draft_s / n, seconds / n, record.index, n, record.tasks
                )
            draft_s = 0.0
        elif isinstance(record, RowTurnEnd):
            tally = tallies[record.key]
            tally.counters.end_turn(record.end, tally.turn_rounds, tally.turn_s + seconds)
            tally.turn_s, tally.turn_rounds = 0.0, 0
        elif isinstance(record, RowDone):
            tally = tallies[record.key]
            tally.counters.turn_wall_s[-1] += seconds
            _write_request(writer, tally, config, labels, record_events)
            tokens += tally.counters.new_tokens
            drafted += tally.counters.drafted
            accepted += tally.counters.accepted
            bar.update()
            bar.set_postfix(
                tok_s=f"{tokens / max(wall_s, 1e-9):.1f}",
                accept=f"{accepted / drafted:.2f}" if drafted else "-",
            )
    bar.close()
    writer.consolidate()
    write_json(out_dir / RUN_FILE, meta | {"complete": True})
    skipped = len(requests) - len(tallies)
    return RunSummary(out_dir, run_id, len(tallies), skipped, tokens, wall_s, drafted, accepted)


def _write_request(
    writer: RunWriter,
    tally: _Tally,
    config: RunConfig,
    labels: dict[str, Any],
    record_events: bool,
) -> None:
    request, counters = tally.request, tally.counters
    assert tally.admitted is not None
    shared = request_labels(request, labels | {"batch_id": tally.batch_id, "row": tally.slot})
    latency_s = time.perf_counter() - tally.admitted
    row = request_frame(request, config, shared, counters, tally.ttft, latency_s)
    events = tally.events if record_events else BatchEventRecorder()
    writer.append(events.frame(shared), row)
