"""The one run scaffold of in-process (:func:`specviz.runner.run`) and server-measured
(:func:`specviz.endpoint.run.run_endpoint`) runs: :func:`opened_run` refuses and locks, the caller
writes ``run.json`` and picks its writer, :func:`record_run` records and returns the totals."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from specviz.rundir.identity import open_run_dir
from specviz.rundir.outdir import locked
from specviz.rundir.read import RunDirError, write_json
from specviz.rundir.schema import RUN_FILE
from specviz.rundir.tables import Finished, RunWriter

if TYPE_CHECKING:
    from specviz.workloads.request import Request


@dataclass(frozen=True)
class RunSummary:
    """A run's totals over the requests decoded (or sent) by this call: ``requests_skipped``
    were already recorded (resume); ``wall_s`` is this call's wall time."""

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


@dataclass(frozen=True)
class EndpointSummary(RunSummary):
    """A server-measured run's totals and what the server reported: ``metrics_source`` vllm |
    sglang, or None when the server gave no speculative-decoding figures."""

    metrics_source: str | None


class Session(Protocol):
    """What decodes an in-process run's requests (batch size 1, batched, or reusing finished
    runs' requests) for :func:`specviz.runner.run`; a server-measured run sends instead."""

    def encode_turn(self, prompt: Any, answers: list[str]) -> list[int]: ...

    def start(self, out_dir: Path, meta: dict[str, Any], done: set[str]) -> None:
        """Set up after ``run.json`` is written; ``done``: the requests already recorded."""

    def decode(
        self, requests: Sequence[Request], done: set[str], labels: dict[str, Any]
    ) -> Iterator[Finished]:
        """Decode the requests not in ``done``; yield each as it finishes."""


@contextlib.contextmanager
def opened_run(
    out_dir: Path,
    identity: dict[str, Any],
    requests: Sequence[Request],
    resume: bool,
    check: Callable[[], None],
) -> Iterator[None]:
    """Refuse an empty workload and a directory holding another run, then ``check`` (a kind of
    run's refusals before any model or lock), then lock the directory and look at it again."""
    if not requests:
        raise RunDirError("the workload is empty: nothing to run")
    open_run_dir(out_dir, identity, resume)
    check()
    with locked(out_dir):
        open_run_dir(out_dir, identity, resume)
        yield


def record_run(
    writer: RunWriter,
    meta: dict[str, Any],
    requests: Sequence[Request],
    decode: Callable[[set[str]], Iterator[Finished]],
    progress: bool,
    finish: Callable[[], dict[str, Any]] = dict,
) -> RunSummary:
    """Record the run whose ``run.json`` is ``meta``: merge what an earlier call left, flush each
    request ``decode(done)`` yields (it runs before the bar opens, so a session may calibrate),
    merge, mark ``run.json`` complete with ``finish()``'s keys. Totals are summed from the request
    rows (a server's null counts as 0); ``wall_s`` is the last ``run_wall_s``."""
    from tqdm.auto import tqdm  # only runs show progress: readers of run directories need none

    writer.consolidate()
    done = writer.finished_request_ids()
    stream = decode(done)
    todo = sum(1 for r in requests if r.id not in done)
    tokens = drafted = accepted = 0
    wall_s = 0.0
    bar = tqdm(
        total=todo, desc=writer.run_dir.name, unit="req", disable=not progress, dynamic_ncols=True
    )
    try:
        for finished in stream:
            writer.append(finished.events, finished.request)
            row = finished.request.row(0, named=True)
            tokens += row["new_tokens"] or 0
            drafted += row["drafted"] or 0
            accepted += row["accepted"] or 0
            wall_s = finished.run_wall_s
            bar.update()
            bar.set_postfix(
                tok_s=f"{tokens / max(wall_s, 1e-9):.1f}",
                accept=f"{accepted / drafted:.2f}" if drafted else "-",
            )
    finally:
        bar.close()
    meta |= finish()
    complete_run(writer, meta)
    skipped = len(requests) - todo
    return RunSummary(
        writer.run_dir, meta["run_id"], todo, skipped, tokens, wall_s, drafted, accepted
    )


def complete_run(writer: RunWriter, meta: dict[str, Any]) -> None:
    """Merge the run's parts and mark its ``run.json`` (``meta``) complete: the last write of
    every run, decoded alone (:func:`record_run`) or in a lane beside others
    (:mod:`specviz.codecode`)."""
    writer.consolidate()
    write_json(writer.run_dir / RUN_FILE, meta | {"complete": True})
