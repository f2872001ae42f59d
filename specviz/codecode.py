"""Co-decoding: several batch-size-1 runs decoded at once in one process, one lane per run.

``co_decode(runs, lanes)`` writes every run's directory exactly as :func:`specviz.runner.run`
would (same ``run.json`` identity, same event and request tables, resumable the same way), but
decodes them through one :class:`~specviz.batch.lanes.LaneDecoder`: up to ``lanes`` runs at a
time, each lane decoding its run's requests in order with the run's own drafter, memory and
policy, every round's rows of all lanes verified in one batched target forward. A run's rounds
are the rounds it gets alone (:mod:`specviz.batch.lanes`, tested), so everything computed from
rounds (acceptance, modelled seconds, the decomposition) is unchanged; what changes is the
clock.

**Timings of a co-decoded run.** Its verify forwards were shared with other runs' rows, so it
has no batch-size-1 wall clock. Its rounds carry the batched convention
(``docs/batching.md``): ``batch_step`` (the shared forward's index in this co-decoding session),
``batch_rows`` (rows in that forward: 1 for a prefill, which runs alone) and ``batch_tasks``;
a shared verify's seconds are split equally among its rows and a drafting step's among the rows
that drafted; ``wall_s`` is the sum of the request's shares, ``latency_s`` admission to end.
``batch_size`` stays 1 (each run is a batch-size-1 run whose rounds were verified beside
others'), ``row`` holds the lane, and ``run.json`` says ``co_decoded: {"lanes": N}``. Read
its modelled seconds, not its wall clock; the cost curve is calibrated from rounds verified alone
(``batch_rows == 1``, :func:`specviz.metrics.accounting.round_table`), which a study keeps by
decoding a subsample alone (``docs/studies.md``).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm.auto import tqdm

from specviz.batch.decoder import Job, RowDone, RowTurnEnd, Step, StepDrafted, StepPrefill
from specviz.batch.lanes import Lane, LaneDecoder, LaneFree
from specviz.batch.runner import BatchEventRecorder
from specviz.clock import RequestClock, device_sync, spans
from specviz.config import RunConfig
from specviz.drafter_factory import build_drafter
from specviz.forward import new_cache
from specviz.hybrid.state import is_hybrid
from specviz.limits import TurnLimits
from specviz.models import LoadedModel, ModelCache, draft_model
from specviz.recorder import (
    UNBATCHED_LABELS,
    RequestCounters,
    request_frame,
    request_labels,
    run_labels,
)
from specviz.records import Round
from specviz.replay import restore_memory, restore_policy
from specviz.rundir import (
    CO_DECODED_KEY,
    RUN_FILE,
    RunSummary,
    RunWriter,
    begin_run,
    complete_run,
    opened_run,
    run_identity,
    write_json,
)
from specviz.runner import _policy
from specviz.supports import unlaned_drafter
from specviz.workloads.request import Request, request_seed


@dataclass(frozen=True)
class LaneRun:
    """One batch-size-1 run to co-decode: its configuration, requests and directory."""

    config: RunConfig
    requests: tuple[Request, ...]
    out_dir: Path


def group_key(config: RunConfig) -> tuple[str, ...]:
    """Runs co-decode together only when they share the target, sampling and token budget."""
    return (repr(config.target), repr(config.sampling), str(config.max_new_tokens))


def why_alone(config: RunConfig, target: LoadedModel | None = None) -> str | None:
    """Why a run cannot be co-decoded (None when it can): a self-drafter, or a target with
    recurrent state (the batch cache rolls back attention only)."""
    why = unlaned_drafter(config.drafter.kind)
    if why is None and target is not None and is_hybrid(new_cache(target.model)):
        why = f"the target {config.target.name} keeps recurrent (SSM) state: its runs decode alone"
    return why


@dataclass
class _Tally:
    """One request in flight: its counters, event rows and clock."""

    request: Request
    run: _OpenRun
    slot: int = 0
    counters: RequestCounters = field(default_factory=RequestCounters)
    events: BatchEventRecorder = field(default_factory=BatchEventRecorder)
    clock: RequestClock = field(default_factory=RequestClock)
    turn_s: float = 0.0
    turn_rounds: int = 0

    def add(self, r: Round, draft_s: float, verify_s: float, step: int, rows: int, tasks: int):
        self.counters.add_round(r, draft_s, verify_s)
        self.events.add_step(r, draft_s, verify_s, step, rows, tasks)
        self.turn_s += draft_s + verify_s
        self.turn_rounds += 1


@dataclass
class _OpenRun:
    """A run in a lane: its directory (locked), writer, labels, state and requests to go."""

    spec: LaneRun
    meta: dict[str, Any]
    writer: RunWriter
    lane: Lane
    labels: dict[str, Any]
    todo: deque[Request]
    lock: contextlib.ExitStack
    skipped: int
    decoded: int = 0
    tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    wall_s: float = 0.0


def _open(spec: LaneRun, target: LoadedModel, models: ModelCache, lanes: int) -> _OpenRun:
    """What :func:`specviz.runner.run` does before decoding: check, lock, ``run.json``,
    resume (finished requests skipped, policy and memory replayed), drafter and policy."""
    config, out = spec.config, spec.out_dir
    identity = run_identity(config, spec.requests, None)
    lock = contextlib.ExitStack()
    lock.enter_context(opened_run(out, identity, spec.requests, True, check=lambda: None))
    try:
        limits = TurnLimits.of(target, config.max_new_tokens)
        for request in spec.requests:  # fail before writing anything if a turn cannot fit
            limits.encode_turn(target, request.prompt, [])
        meta = begin_run(out, identity, config, target, draft_model(config, models), spec.requests)
        meta[CO_DECODED_KEY] = {"lanes": lanes}
        writer = RunWriter(out)
        writer.consolidate()
        done = writer.finished_request_ids()
        generator = torch.Generator(device=target.device)
        drafter = build_drafter(
            config.drafter, target, new_cache(target.model), config.sampling, generator, models
        )
        policy = _policy(config, models, out, meta)
        if drafter is not None:
            restore_policy(out, policy, done)
            restore_memory(out, drafter, done)
        write_json(out / RUN_FILE, meta)
    except BaseException:
        lock.close()
        raise
    todo = deque(r for r in spec.requests if r.id not in done)
    labels = run_labels(meta["run_id"], config)
    lane = Lane(drafter, policy, generator)
    return _OpenRun(spec, meta, writer, lane, labels, todo, lock, len(spec.requests) - len(todo))


def _close(run: _OpenRun) -> RunSummary:
    complete_run(run.writer, run.meta)
    run.lock.close()
    return RunSummary(
        run.spec.out_dir,
        run.meta["run_id"],
        run.decoded,
        run.skipped,
        run.tokens,
        run.wall_s,
        run.drafted,
        run.accepted,
    )


def _finish(tally: _Tally) -> None:
    """Write a finished request into its run."""
    run, request, counters = tally.run, tally.request, tally.counters
    shared = request_labels(request, run.labels | UNBATCHED_LABELS | {"row": tally.slot})
    row = request_frame(
        request, run.spec.config, shared, counters, tally.clock.ttft_s, tally.clock.latency_s
    )
    events: pl.DataFrame = tally.events.frame(shared)
    run.writer.append(events, row)
    run.decoded += 1
    run.tokens += counters.new_tokens
    run.drafted += counters.drafted
    run.accepted += counters.accepted
    run.wall_s += sum(counters.turn_wall_s)


class _Lanes:
    """Feeds the lane decoder: which run each lane holds, which request each key is."""

    def __init__(
        self,
        runs: Sequence[LaneRun],
        target: LoadedModel,
        models: ModelCache,
        decoder: LaneDecoder,
        on_done: Callable[[LaneRun, RunSummary], None],
    ) -> None:
        self.pending = deque(runs)
        self.target = target
        self.models = models
        self.decoder = decoder
        self.on_done = on_done
        self.held: dict[int, _OpenRun] = {}
        self.tallies: dict[int, _Tally] = {}
        self.keys = 0

    def free(self, slot: int) -> None:
        """Give lane ``slot`` its run's next request, or the next run's first (closing runs
        that are done); nothing when every run is taken."""
        run = self.held.pop(slot, None)
        lane = None
        while run is None or not run.todo:
            if run is not None:
                self.on_done(run.spec, _close(run))
            if not self.pending:
                return
            run = _open(self.pending.popleft(), self.target, self.models, self.decoder.batch.size)
            lane = run.lane
        self.held[slot] = run
        request = run.todo.popleft()
        key, self.keys = self.keys, self.keys + 1
        self.tallies[key] = _Tally(request, run)
        seed = request_seed(run.spec.config.seed, request)
        self.decoder.assign(slot, Job(key, request.prompt, seed, -1), lane)

    def close_all(self) -> None:
        for run in self.held.values():
            run.lock.close()


def co_decode(
    runs: Sequence[LaneRun],
    lanes: int,
    *,
    models: ModelCache | None = None,
    progress: bool = True,
    on_done: Callable[[LaneRun, RunSummary], None] | None = None,
) -> None:
    """Decode ``runs`` (sharing one :func:`group_key`) ``lanes`` at a time into their
    directories; ``on_done`` hears each run as it completes."""
    if not runs:
        return
    if len({group_key(r.config) for r in runs}) != 1:
        raise ValueError("co-decoded runs must share the target, sampling and token budget")
    models = models or ModelCache()
    first = runs[0].config
    target = models.get(first.target)
    for run in runs:
        why = why_alone(run.config, target)
        if why is not None:
            raise ValueError(why)
    decoder = LaneDecoder(target, first.sampling, first.max_new_tokens, lanes)
    feed = _Lanes(runs, target, models, decoder, on_done or (lambda _r, _s: None))
    total = sum(len(r.requests) for r in runs)
    bar = tqdm(total=total, desc="lanes", unit="req", disable=not progress, dynamic_ncols=True)
    try:
        for record in _timed(decoder, feed, device_sync(target.device)):
            if record:
                bar.update()
    finally:
        bar.close()
        feed.close_all()


def _timed(decoder: LaneDecoder, feed: _Lanes, sync: Callable[[], None]) -> Iterator[bool]:
    """Time every record and tally it into its request; True when a request finished."""
    draft_s = 0.0
    drafting: set[int] = set()
    for record, span in spans(decoder.run_lanes(), sync):
        seconds = span.seconds
        if isinstance(record, LaneFree):
            feed.free(record.slot)
        elif isinstance(record, StepDrafted):
            draft_s, drafting = seconds, {slot for slot, _, _ in record.proposals}
        elif isinstance(record, StepPrefill):
            tally = feed.tallies[record.row.key]
            tally.clock.prefilled(span)
            tally.slot = record.row.slot
            tally.add(record.row.round, 0.0, seconds, record.index, 1, 1)
        elif isinstance(record, Step):
            n = len(record.rows)
            share = draft_s / max(1, len(drafting))
            for row in record.rows:
                mine = share if row.slot in drafting else 0.0
                feed.tallies[row.key].add(
                    row.round, mine, seconds / n, record.index, n, record.tasks
                )
            draft_s, drafting = 0.0, set()
        elif isinstance(record, RowTurnEnd):
            tally = feed.tallies[record.key]
            tally.counters.end_turn(record.end, tally.turn_rounds, tally.turn_s + seconds)
            tally.turn_s, tally.turn_rounds = 0.0, 0
        elif isinstance(record, RowDone):
            tally = feed.tallies.pop(record.key)
            tally.counters.turn_wall_s[-1] += seconds
            tally.clock.end(span.end)
            _finish(tally)
            yield True
