"""Running a stream of requests through the decoder and writing a run directory.

The runner owns everything the engine must not do: it loads models, times each record the
engine yields (the gap before a ``Drafted`` is draft time, before a ``Round`` verify or prefill
time), records events, flushes every finished request, shows progress, and resumes.

A run directory is tied to one configuration and one workload: opening it with another is
refused, so nothing already written is mixed with or overwritten by a different run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm.auto import tqdm

import specviz
from specviz.config import RunConfig
from specviz.drafters import build_drafter
from specviz.engine import Decoder, Drafted, Record, Round, TurnEnd
from specviz.forward import new_cache
from specviz.limits import TurnLimits
from specviz.models import LoadedModel, ModelCache
from specviz.outdir import check_out_dir, entries, locked
from specviz.policies import CostCurve, DraftPolicy, build_policy
from specviz.recorder import (
    EventRecorder,
    RequestCounters,
    request_frame,
    request_labels,
    run_labels,
)
from specviz.replay import restore_memory, restore_policy
from specviz.runlog import RunDirError, RunWriter, check_tables, read_run_meta, write_json
from specviz.schema import RUN_FILE, SCHEMA_VERSION
from specviz.workloads.prompt import Prompt

# the batch columns of a batch-size-1 run (batched runs: specviz.batch.runner)
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


@dataclass(frozen=True)
class Request:
    """One prompt at one place in a run's stream."""

    index: int
    prompt: Prompt
    mixture: str = "custom"
    repeat: int = 0

    @property
    def id(self) -> str:
        return f"{self.repeat:02d}-{self.index:05d}-{self.prompt.id}"


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    run_id: str
    requests_done: int
    requests_skipped: int
    new_tokens: int
    wall_s: float
    drafted: int
    accepted: int

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s > 0 else 0.0


def request_seed(seed: int, request: Request) -> int:
    """Per-request seed, so a resumed run samples exactly what an uninterrupted one would."""
    return (seed * 1_000_003 + request.repeat * 7_919 + request.index) % (2**63)


def workload_fingerprint(requests: Sequence[Request]) -> str:
    blob = json.dumps(
        [
            [r.index, r.repeat, r.mixture, r.prompt.id, r.prompt.category, list(r.prompt.turns)]
            for r in requests
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(specviz.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _model_info(loaded: LoadedModel) -> dict[str, Any]:
    return {
        "name": loaded.spec.name,
        "source": loaded.source,
        "revision": loaded.revision,
        "class": type(loaded.model).__name__,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "embedding_rows": loaded.model.get_input_embeddings().weight.shape[0],
        "tokenizer_size": len(loaded.tokenizer),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "device": str(loaded.device),
    }


def _hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _versions() -> dict[str, str]:
    import transformers

    return {
        "specviz": specviz.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "polars": pl.__version__,
    }


def open_run_dir(out_dir: Path, identity: dict[str, Any], resume: bool) -> None:
    """Refuse a directory holding anything but this very run; refuse to restart without resume.

    Also refuses, before any model is loaded, an ``out_dir`` that cannot be written."""
    check_out_dir(out_dir)
    if (out_dir / RUN_FILE).is_file():
        existing = read_run_meta(out_dir)
        mine = {k: existing.get(k) for k in identity}
        if mine != identity:
            differs = sorted(k for k in identity if mine[k] != identity[k])
            detail = ""
            if "config" in differs:
                old, new = existing.get("config", {}), identity["config"]
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                detail = f" (config keys: {', '.join(keys)})"
            raise RunDirError(
                f"{out_dir} holds a run with a different {', '.join(differs)}{detail}; "
                "pass another --out directory"
            )
        if not resume:
            raise RunDirError(f"{out_dir} already holds this run: pass --resume to continue it")
        check_tables(out_dir)  # a damaged file is named before any model loads
    elif entries(out_dir):
        raise RunDirError(f"{out_dir} is not empty and holds no specviz run: pass another --out")


def begin_run(
    out_dir: Path,
    identity: dict[str, Any],
    config: RunConfig,
    target: LoadedModel,
    models: ModelCache,
    requests: Sequence[Request],
) -> dict[str, Any]:
    """Write ``run.json`` for a run that starts (or resumes) in ``out_dir``; return it.

    ``identity`` (schema version, config, workload, ...) was already checked against the
    directory by :func:`open_run_dir`; a resumed run keeps its original metadata.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / RUN_FILE).is_file():
        meta = read_run_meta(out_dir) | {"complete": False}
    else:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
        draft = config.drafter.draft
        meta = {
            **identity,
            "run_id": f"{out_dir.name}-{digest.hexdigest()[:8]}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "models": {"target": _model_info(target)}
            | ({"draft": _model_info(models.get(draft))} if draft else {}),
            "versions": _versions(),
            "hardware": _hardware(target.device),
            "git_commit": _git_commit(),
            "seed": config.seed,
            "requests": len(requests),
            "prompt_ids": [r.prompt.id for r in requests],
            "complete": False,
        }
    write_json(out_dir / RUN_FILE, meta)
    return meta


def timed(records: Iterator[Record], sync: Callable[[], None]) -> Iterator[tuple[Record, float]]:
    """Each record with the seconds the engine spent producing it."""
    while True:
        start = time.perf_counter()
        try:
            record = next(records)
        except StopIteration:
            return
        sync()
        yield record, time.perf_counter() - start


def _policy(
    config: RunConfig, models: ModelCache, out_dir: Path, meta: dict[str, Any]
) -> DraftPolicy:
    """The run's policy; a cost-aware one without a curve in its config gets the curve recorded
    in ``run.json``, measured now (:mod:`specviz.calibrate`) when the run starts afresh."""
    wants_curve = config.policy.kind == "cost-aware" and config.policy.verify_costs is None
    if not wants_curve or config.drafter.kind == "none":
        return build_policy(config.policy)
    recorded = meta.get("cost_curve")
    if recorded is None:
        from specviz.calibrate import calibrate

        curve = calibrate(config, models)
        meta["cost_curve"] = {"verify": list(curve.verify), "draft": list(curve.draft)}
        write_json(out_dir / RUN_FILE, meta)
    else:
        curve = CostCurve(tuple(recorded["verify"]), tuple(recorded["draft"]))
    return build_policy(config.policy, curve)


def run(
    config: RunConfig,
    requests: Sequence[Request],
    out_dir: Path,
    *,
    resume: bool = False,
    models: ModelCache | None = None,
    progress: bool = True,
    record_events: bool = True,
) -> RunSummary:
    """Decode ``requests`` in order under ``config``; write ``out_dir``; return totals.

    With ``resume`` a run directory of the same configuration and workload is continued:
    finished requests are skipped (each is recorded exactly once) and a persistent policy's
    state is replayed from the recorded rounds. ``record_events=False`` writes requests only
    (the benchmark uses it to measure what recording costs).
    """
    if not requests:
        raise RunDirError("the workload is empty: nothing to run")
    out_dir = Path(out_dir)
    workload = workload_fingerprint(requests)
    identity = {"schema_version": SCHEMA_VERSION, "config": config.to_dict(), "workload": workload}
    open_run_dir(out_dir, identity, resume)
    with locked(out_dir):
        open_run_dir(out_dir, identity, resume)  # again under the lock: nobody wrote it meanwhile
        return _run_locked(
            config, requests, out_dir, identity, models or ModelCache(), progress, record_events
        )


def _run_locked(
    config: RunConfig,
    requests: Sequence[Request],
    out_dir: Path,
    identity: dict[str, Any],
    models: ModelCache,
    progress: bool,
    record_events: bool,
) -> RunSummary:
    target = models.get(config.target)
    cache = new_cache(target.model)
    generator = torch.Generator(device=target.device)
    drafter = build_drafter(config.drafter, target, cache, config.sampling, generator, models)
    limits = TurnLimits.of(target, config.max_new_tokens)
    for request in requests:  # fail before writing anything if a first turn cannot fit
        limits.encode_turn(target, request.prompt, [])

    meta = begin_run(out_dir, identity, config, target, models, requests)
    run_id = meta["run_id"]
    policy = _policy(config, models, out_dir, meta)
    decoder = Decoder(
        target, drafter, policy, config.sampling, config.max_new_tokens, cache, generator
    )

    writer = RunWriter(out_dir)
    writer.consolidate()
    done = writer.finished_request_ids()
    if drafter is not None:
        restore_policy(out_dir, policy, done)
        restore_memory(out_dir, drafter, done)
    todo = [r for r in requests if r.id not in done]
    sync = torch.cuda.synchronize if target.device.type == "cuda" else (lambda: None)
    labels = run_labels(run_id, config)

    tokens = drafted = accepted = 0
    wall_s = 0.0
    bar = tqdm(todo, desc=out_dir.name, unit="req", disable=not progress, dynamic_ncols=True)
    for request in bar:
        counters = _decode_one(decoder, request, config, labels, writer, sync, record_events)
        tokens += counters.new_tokens
        drafted += counters.drafted
        accepted += counters.accepted
        wall_s += sum(counters.turn_wall_s)
        bar.set_postfix(
            tok_s=f"{tokens / max(wall_s, 1e-9):.1f}",
            accept=f"{accepted / drafted:.2f}" if drafted else "-",
        )
    writer.consolidate()
    write_json(out_dir / RUN_FILE, meta | {"complete": True})
    return RunSummary(
        out_dir, run_id, len(todo), len(requests) - len(todo), tokens, wall_s, drafted, accepted
    )


def _decode_one(
    decoder: Decoder,
    request: Request,
    config: RunConfig,
    labels: dict[str, Any],
    writer: RunWriter,
    sync: Callable[[], None],
    record_events: bool,
) -> RequestCounters:
    counters = RequestCounters()
    events = EventRecorder()
    draft_s = 0.0
    ttft = None
    turn_start = start = time.perf_counter()
    turn_rounds = 0
    for record, seconds in timed(
        decoder.decode(request.prompt, request_seed(config.seed, request)), sync
    ):
        if isinstance(record, Drafted):
            draft_s = seconds
        elif isinstance(record, Round):
            if ttft is None:
                ttft = time.perf_counter() - start
            counters.add_round(record, draft_s, seconds)
            if record_events:
                events.add(record, draft_s, seconds)
            draft_s = 0.0
            turn_rounds += 1
        elif isinstance(record, TurnEnd):
            now = time.perf_counter()
            counters.end_turn(record, turn_rounds, now - turn_start)
            turn_start, turn_rounds = now, 0
    shared = request_labels(request, labels | UNBATCHED_LABELS)
    wall_s = sum(counters.turn_wall_s)
    request_row = request_frame(request, config, shared, counters, ttft, wall_s)
    writer.append(events.frame(shared | UNBATCHED_EVENT_LABELS), request_row)
    return counters
