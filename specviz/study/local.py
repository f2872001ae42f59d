"""The local executor: units in this process one after another, or in N worker processes.

In-process, all units share one :class:`~specviz.models.ModelCache`, so a model is loaded once
for the whole study. With ``workers = N`` (study option ``options.workers``), N spawned processes
each run one unit at a time with their own model cache and :func:`specviz.threads.torch_threads`
threads (one core left free, the rest split between workers; at least one each). On a small CPU,
decoding is memory-bandwidth bound and one thread decodes about as fast as two (see
``docs/studies.md``), so two single-threaded workers on two cores roughly double throughput; each
worker holds its own copy of the models in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from specviz.models import ModelCache
from specviz.rundir import PARTS_DIR, RunSummary
from specviz.study.units import Unit
from specviz.study.work import UnitResult, load_models, run_unit
from specviz.threads import apply_threads

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 0.5


def _init_worker(parent: int, workers: int) -> None:
    apply_threads(workers)
    die_with_parent(parent)


def killed_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing). A ``preexec_fn`` for the servers tests and
    benchmarks start, so none outlives a killed run."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent(parent: int) -> None:
    """End this worker as soon as process ``parent`` is gone (even after ``kill -9``).

    On Linux the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``); on
    every system a daemon thread also polls the parent pid and exits the process when it changes.
    A killed worker loses at most the request in flight (parts are written atomically).
    """
    killed_with_parent()
    if os.getppid() != parent:  # died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="specviz-parent-watch", daemon=True).start()


def unit_cost(unit: Unit) -> int:
    """A unit's size in turns: the rough cost used to start the longest units first."""
    return sum(len(r.prompt.turns) for r in unit.requests)


def _flushed_requests(run_dir: Path) -> int:
    """Requests a running unit has flushed so far (its part files; no file is read)."""
    return sum(1 for _ in (run_dir / PARTS_DIR).glob("requests-*.parquet"))


def run_local(
    units: Sequence[Unit],
    out_dir: Path,
    *,
    workers: int = 1,
    progress: bool = True,
    on_done: Callable[[Unit, UnitResult], None],
    models: ModelCache | None = None,
) -> None:
    """Run every unit; ``on_done`` is called in this process after each one finishes."""
    if workers <= 1 or len(units) <= 1:
        bar = tqdm(
            total=len(units), desc="study", unit="run", disable=not progress, dynamic_ncols=True
        )
        cache = models or ModelCache()
        apply_threads(1)
        try:
            for unit in units:
                bar.set_postfix_str(unit.id, refresh=True)
                on_done(unit, run_unit(unit, out_dir, models=cache, progress=progress))
                bar.update()
        finally:
            bar.close()
        return
    _run_workers(units, out_dir, workers=workers, progress=progress, on_done=on_done)


def _run_workers(
    units: Sequence[Unit],
    out_dir: Path,
    *,
    workers: int,
    progress: bool,
    on_done: Callable[[Unit, UnitResult], None],
) -> None:
    """Units in worker processes; one progress bar over requests, polled from the run dirs."""
    total = sum(len(u.requests) for u in units)
    bar = tqdm(total=total, desc="study", unit="req", disable=not progress, dynamic_ncols=True)
    finished_requests = 0
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(units)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), min(workers, len(units))),
        ) as pool:
            # longest first, so no long unit starts last while the other workers sit idle
            ordered = sorted(units, key=unit_cost, reverse=True)
            futures = {pool.submit(run_unit, unit, out_dir): unit for unit in ordered}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is not None:
                        for other in pending:
                            other.cancel()
                        raise error
                    unit = futures[future]
                    finished_requests += len(unit.requests)
                    on_done(unit, future.result())
                running = sum(
                    _flushed_requests(out_dir / futures[f].run_dir) for f in pending if f.running()
                )
                bar.n = min(total, finished_requests + running)
                bar.set_postfix_str(f"runs {len(units) - len(pending)}/{len(units)}", refresh=False)
                bar.refresh()
    finally:
        bar.close()


def lane_split(units: Sequence[Unit], alone_mixture: str) -> tuple[list[Unit], list[Unit]]:
    """(units to co-decode, units to decode alone). Alone: the wall-clock subsample (every unit
    of ``alone_mixture``: batch-size-1 timings for the wall clock and the cost curve), batched
    units, copies (:mod:`specviz.study.reuse`) and self-drafters (:func:`specviz.codecode.
    why_alone`)."""
    from specviz.codecode import why_alone

    def lanes_ok(u: Unit) -> bool:
        mixture = u.requests[0].mixture if u.requests else ""
        return (
            u.batch is None and not u.reuse and mixture != alone_mixture and not why_alone(u.config)
        )

    return [u for u in units if lanes_ok(u)], [u for u in units if not lanes_ok(u)]


def run_lanes(
    units: Sequence[Unit],
    out_dir: Path,
    *,
    lanes: int,
    progress: bool = True,
    on_done: Callable[[Unit, UnitResult], None],
    models: ModelCache | None = None,
) -> list[Unit]:
    """Co-decode ``units`` ``lanes`` at a time in this process (one group per target, sampling
    and token budget, :mod:`specviz.codecode`); return the units it could not (a target with
    recurrent state), for :func:`run_local`."""
    from specviz.codecode import LaneRun, co_decode, group_key, why_alone

    cache = models or ModelCache()
    by_dir = {Path(out_dir) / u.run_dir: u for u in units}

    def done(run: LaneRun, s: RunSummary) -> None:
        unit = by_dir[run.out_dir]
        result = UnitResult(unit.id, s.requests_done, s.requests_skipped, s.new_tokens, s.wall_s)
        on_done(unit, result)

    groups: dict[tuple[str, ...], list[Unit]] = {}
    for unit in units:
        groups.setdefault(group_key(unit.config), []).append(unit)
    left: list[Unit] = []
    for group in groups.values():
        for unit in group:
            load_models(unit.config, cache)
        if why_alone(group[0].config, cache.get(group[0].config.target)) is not None:
            left += group
            continue
        runs = [LaneRun(u.config, u.requests, Path(out_dir) / u.run_dir) for u in group]
        co_decode(runs, lanes, models=cache, progress=progress, on_done=done)
    return left


_DONE: Any = None  # a lane worker's queue to the parent: (unit id, result) as each unit ends


def _init_lane_worker(parent: int, workers: int, done: Any) -> None:
    global _DONE
    _init_worker(parent, workers)
    _DONE = done


def _lane_share(units: list[Unit], out_dir: Path, lanes: int) -> None:
    """A worker's share of the co-decoded units (then those that must decode alone); each unit's
    result goes to the parent as soon as it ends, so its progress bar moves run by run."""
    from specviz.study.work import process_models

    def done(unit: Unit, result: UnitResult) -> None:
        _DONE.put((unit.id, result))

    models = process_models()
    left = run_lanes(units, out_dir, lanes=lanes, progress=False, on_done=done, models=models)
    for unit in left:
        done(unit, run_unit(unit, out_dir, models=models))


def _budget(unit: Unit) -> int:
    """A unit's size for scheduling: its requests' turns (each decodes up to the same budget)."""
    return sum(len(r.prompt.turns) for r in unit.requests)


def balanced_shares(units: Sequence[Unit], workers: int) -> list[list[Unit]]:
    """``units`` split among ``workers``, largest first onto the least loaded (LPT): each share's
    total :func:`_budget` within one unit of the others', and each share in decreasing size, so
    a long run starts early instead of decoding alone in its worker's last lanes. Which lanes
    decode together never changes a run's rounds (:mod:`specviz.codecode`), only the clock."""
    ordered = sorted(units, key=lambda u: -_budget(u))
    shares: list[list[Unit]] = [[] for _ in range(min(workers, len(ordered)))]
    loads = [0] * len(shares)
    for unit in ordered:
        i = loads.index(min(loads))
        shares[i].append(unit)
        loads[i] += _budget(unit)
    return shares


def run_co_decoded(
    units: Sequence[Unit],
    out_dir: Path,
    *,
    lanes: int,
    workers: int = 1,
    progress: bool = True,
    on_done: Callable[[Unit, UnitResult], None],
    models: ModelCache | None = None,
) -> None:
    """Co-decode ``units`` ``lanes`` at a time: in this process, or with ``workers = N`` in N
    worker processes, each co-decoding its :func:`balanced_shares` share (one torch thread
    each, as workers run units); ``on_done`` hears each unit as it ends."""
    if not units:
        return
    if workers <= 1 or len(units) <= 1:
        apply_threads(1)
        cache = models or ModelCache()
        (largest,) = balanced_shares(units, 1)
        left = run_lanes(
            largest, out_dir, lanes=lanes, progress=progress, on_done=on_done, models=cache
        )
        run_local(left, out_dir, progress=progress, on_done=on_done, models=cache)
        return
    shares = balanced_shares(units, workers)
    by_id = {u.id: u for u in units}
    bar = tqdm(total=len(units), desc="lanes", unit="run", disable=not progress, dynamic_ncols=True)
    context = multiprocessing.get_context("spawn")
    finished = context.SimpleQueue()

    def drain() -> None:
        while not finished.empty():
            unit_id, result = finished.get()
            on_done(by_id[unit_id], result)
            bar.update()

    try:
        with ProcessPoolExecutor(
            max_workers=len(shares),
            mp_context=context,
            initializer=_init_lane_worker,
            initargs=(os.getpid(), len(shares), finished),
        ) as pool:
            pending = {pool.submit(_lane_share, share, out_dir, lanes) for share in shares}
            while pending:
                ended, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for future in ended:
                    future.result()  # a worker's error ends the study here
            drain()
    finally:
        bar.close()
