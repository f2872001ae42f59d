"""Running a stream of requests through a decoder and writing a run directory.

``run(config, requests, out, batch=...)`` is the one entry point, at batch size 1
(``batch=None``) and batched (:mod:`specviz.batch.runner`). The runner owns everything the engine
must not do: it loads models, times each record the engine yields (the gap before a ``Drafted``
is draft time, before a ``Round`` verify or prefill time), records events, flushes every
finished request, shows progress, and resumes. Both sessions time their decoder with
:func:`specviz.clock.spans` and stamp each request on a :class:`~specviz.clock.RequestClock`,
the one definition of time to first token and latency. The run scaffold (refusals, the lock,
writer, progress, summary: :mod:`specviz.rundir.scaffold`) is the one server-measured runs use
too; here ``run.json`` is :func:`~specviz.rundir.begin_run`'s and a *session* decodes:
:class:`SingleSession` here, :class:`~specviz.batch.runner.BatchSession` for batches.

Batch size 1 is its own session, not a one-row :class:`~specviz.batch.runner.BatchSession`, for
three reasons: it decodes with :mod:`specviz.engine`, which supports every drafter and policy
(:mod:`specviz.supports` lists what a batch cannot do: the component-skip and suffix drafters,
per-task policy state) and is the reference every losslessness test compares against; it needs
none of the batch cache's row bookkeeping (:mod:`specviz.batch.kv`), which would cost it speed; and
its requests' ``wall_s`` is their own wall clock, while a batch's is a share of each step
(:class:`~specviz.clock.RequestClock` says why the two cannot share one definition). What the two
sessions must agree on is shared: the timing (:func:`~specviz.clock.spans`), the request clock, and
the policy's feedback (:func:`specviz.policies.heard`; a test holds both decoders to the same
feedback sequence).

A run directory is tied to one configuration and one workload (:func:`specviz.rundir.open_run_dir`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from specviz.batch.config import BatchConfig
from specviz.batch.runner import BatchSession, check_batchable
from specviz.clock import RequestClock, device_sync, spans
from specviz.config import RunConfig
from specviz.cost import CostModel, curve_model
from specviz.drafter_factory import build_drafter
from specviz.engine import Decoder
from specviz.forward import new_cache
from specviz.limits import TurnLimits
from specviz.models import LoadedModel, ModelCache, draft_model, on_transformers
from specviz.policies import DraftPolicy, build_policy
from specviz.recorder import (
    UNBATCHED_EVENT_LABELS,
    UNBATCHED_LABELS,
    EventRecorder,
    RequestCounters,
    request_frame,
    request_labels,
    run_labels,
)
from specviz.records import Drafted, Round, TurnEnd
from specviz.replay import restore_memory, restore_policy
from specviz.reuse import Reused, ReusingSession
from specviz.rundir import (
    RUN_FILE,
    Finished,
    RunSummary,
    RunWriter,
    Session,
    begin_run,
    opened_run,
    record_run,
    run_identity,
    write_json,
)
from specviz.workloads.request import Request, request_seed

__all__ = ["Finished", "Request", "RunSummary", "SingleSession", "request_seed", "run"]


def run(
    config: RunConfig,
    requests: Sequence[Request],
    out_dir: Path,
    *,
    batch: BatchConfig | None = None,
    resume: bool = False,
    models: ModelCache | None = None,
    progress: bool = True,
    record_events: bool = True,
    reuse: Sequence[Reused] = (),
) -> RunSummary:
    """Decode ``requests`` under ``config`` (in batches when ``batch`` is given); write
    ``out_dir``; return totals.

    With ``resume`` a run directory of the same configuration and workload is continued:
    finished requests are skipped (each is recorded exactly once) and a persistent policy's
    state is replayed from the recorded rounds. ``record_events=False`` writes requests only
    (the benchmark uses it to measure what recording costs). Batched, ``RunSummary.wall_s`` is
    the run's wall time, so ``tokens_per_s`` is the batch throughput. ``reuse``: requests copied
    from finished runs instead of decoded (batch size 1 only, :mod:`specviz.reuse`).
    """
    out_dir = Path(out_dir)
    identity = run_identity(config, requests, batch)
    check = (lambda: None) if batch is None else partial(check_batchable, config)
    with opened_run(out_dir, identity, requests, resume, check):
        models = models or ModelCache()
        session: Session
        if batch is None:
            target = models.get(config.target)
            session = SingleSession(config, target, models, record_events)
            if reuse:
                session = ReusingSession(session, reuse)
        else:  # batched decoding runs on transformers (its batch cache is transformers')
            batched = on_transformers(config)
            target = models.get(batched.target)
            session = BatchSession(batched, batch, target, models, record_events)
        for request in requests:  # fail before writing anything if a first turn cannot fit
            session.encode_turn(request.prompt, [])
        meta = begin_run(out_dir, identity, config, target, draft_model(config, models), requests)

        def decode(done: set[str]) -> Iterator[Finished]:
            session.start(out_dir, meta, done)
            return session.decode(requests, done, run_labels(meta["run_id"], config))

        return record_run(RunWriter(out_dir), meta, requests, decode, progress)


# -- batch size 1 ---------------------------------------------------------------------------


def _policy(
    config: RunConfig, models: ModelCache, out_dir: Path, meta: dict[str, Any]
) -> DraftPolicy:
    """The run's policy; a cost-aware one without a ``cost_model`` in its config gets the model
    recorded in ``run.json``, measured now (:mod:`specviz.calibrate`) when the run starts afresh.
    A run recorded before the one cost model (``cost_curve``) is read as one."""
    label = config.drafter.label
    wants_costs = config.policy.kind == "cost-aware" and config.policy.cost_model is None
    if not wants_costs or config.drafter.kind == "none":
        return build_policy(config.policy, drafter=label)
    if "cost_model" in meta:
        costs = CostModel.from_dict(meta["cost_model"])
    elif "cost_curve" in meta:
        legacy = meta["cost_curve"]
        costs = curve_model(legacy["verify"], legacy["draft"], label, "run.json cost_curve")
    else:
        from specviz.calibrate import calibrate

        costs = calibrate(config, models)
        meta["cost_model"] = costs.to_dict()
        write_json(out_dir / RUN_FILE, meta)
    return build_policy(config.policy, costs, drafter=label)


class SingleSession:
    """Batch size 1: the requests one after another through :class:`~specviz.engine.Decoder`."""

    def __init__(
        self, config: RunConfig, target: LoadedModel, models: ModelCache, record_events: bool
    ) -> None:
        self.config = config
        self.target = target
        self.models = models
        self.record_events = record_events
        self.cache = new_cache(target.model)
        self.generator = torch.Generator(device=target.device)
        self.drafter = build_drafter(
            config.drafter, target, self.cache, config.sampling, self.generator, models
        )
        self.limits = TurnLimits.of(target, config.max_new_tokens)
        self.decoder: Decoder | None = None

    def encode_turn(self, prompt: Any, answers: list[str]) -> list[int]:
        return self.limits.encode_turn(self.target, prompt, answers)

    def start(self, out_dir: Path, meta: dict[str, Any], done: set[str]) -> None:
        config = self.config
        policy = _policy(config, self.models, out_dir, meta)
        self.decoder = Decoder(
            self.target,
            self.drafter,
            policy,
            config.sampling,
            config.max_new_tokens,
            self.cache,
            self.generator,
        )
        if self.drafter is not None:
            restore_policy(out_dir, policy, done)
            restore_memory(out_dir, self.drafter, done)

    def decode(
        self, requests: Sequence[Request], done: set[str], labels: dict[str, Any]
    ) -> Iterator[Finished]:
        wall_s = 0.0
        for request in requests:
            if request.id not in done:
                finished = _decode_one(self, request, labels, wall_s)
                wall_s = finished.run_wall_s
                yield finished


def _decode_one(
    session: SingleSession, request: Request, labels: dict[str, Any], wall_before: float
) -> Finished:
    """Decode one request, timing every record; its rows and counters.

    The request has the machine alone: a turn's wall time runs from the end of the previous
    turn (the first: from admission, :class:`~specviz.clock.RequestClock`) to its own end, so
    the request's ``wall_s`` equals its latency and includes the time spent recording.
    """
    assert session.decoder is not None
    counters = RequestCounters()
    events = EventRecorder()
    clock = RequestClock()
    draft_s = 0.0
    turn_start: float | None = None  # None: the first turn, which starts at admission
    turn_rounds = 0
    records = session.decoder.decode(request.prompt, request_seed(session.config.seed, request))
    for record, span in spans(records, device_sync(session.target.device)):
        if isinstance(record, Drafted):
            draft_s = span.seconds
        elif isinstance(record, Round):
            if record.prefill:
                clock.prefilled(span)
            counters.add_round(record, draft_s, span.seconds)
            if session.record_events:
                events.add(record, draft_s, span.seconds)
            draft_s = 0.0
            turn_rounds += 1
        elif isinstance(record, TurnEnd):
            began = clock.admitted if turn_start is None else turn_start
            assert began is not None  # a turn starts with its prefill
            counters.end_turn(record, turn_rounds, span.end - began)
            turn_start, turn_rounds = span.end, 0
            clock.end(span.end)
    shared = request_labels(request, labels | UNBATCHED_LABELS)
    row = request_frame(request, session.config, shared, counters, clock.ttft_s, clock.latency_s)
    frame = events.frame(shared | UNBATCHED_EVENT_LABELS)
    return Finished(frame, row, wall_before + sum(counters.turn_wall_s))
