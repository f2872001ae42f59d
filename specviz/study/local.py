"""The local executor: units in this process one after another, or in N worker processes.

In-process, all units share one :class:`~specviz.models.ModelCache`, so a model is loaded once
for the whole study. With ``workers = N`` (study option ``options.workers``), N spawned processes
each run one unit at a time with ``torch.set_num_threads(1)`` and their own model cache. On a
small CPU, decoding is memory-bandwidth bound and one thread decodes about as fast as two (see
``docs/studies.md``), so two single-threaded workers on two cores roughly double throughput; each
worker holds its own copy of the models in memory.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from specviz.models import ModelCache
from specviz.study.units import Unit
from specviz.study.work import UnitResult, run_unit


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def unit_cost(unit: Unit) -> int:
    """A unit's size in turns: the rough cost used to start the longest units first."""
    return sum(len(r.prompt.turns) for r in unit.requests)


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
    bar = tqdm(total=len(units), desc="study", unit="run", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(units) <= 1:
            cache = models or ModelCache()
            for unit in units:
                bar.set_postfix_str(unit.id, refresh=True)
                on_done(unit, run_unit(unit, out_dir, models=cache, progress=progress))
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(units)), mp_context=context, initializer=_init_worker
        ) as pool:
            # longest first, so no long unit starts last while the other workers sit idle
            ordered = sorted(units, key=unit_cost, reverse=True)
            futures = {pool.submit(run_unit, unit, out_dir): unit for unit in ordered}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is not None:
                        for other in pending:
                            other.cancel()
                        raise error
                    on_done(futures[future], future.result())
                    bar.update()
    finally:
        bar.close()
