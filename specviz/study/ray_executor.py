"""The Ray executor: each unit is a Ray task, writing the same run directories as a local run.

``ray`` is an optional extra (``pip install specviz[ray]``). When Ray is not initialized yet,
``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` or starts a local one. Each task asks for
one CPU, and for one GPU when any model of the study is placed on CUDA (``device = "cuda"``), so
Ray never puts two units on one GPU. Tasks reuse a per-worker model cache, so a Ray worker that
runs several units loads each model once.

Every task writes its run directory under the study's output directory itself, so on a cluster of
several machines that directory must be on a filesystem all of them share; the manifest is
written by the driver as tasks finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from specviz.study.spec import StudyError
from specviz.study.units import Unit
from specviz.study.work import UnitResult, run_unit


def _ray_task(unit: Unit, out_dir: str) -> UnitResult:
    return run_unit(unit, out_dir)


def run_ray(
    units: Sequence[Unit],
    out_dir: Path,
    *,
    gpu: bool,
    progress: bool = True,
    on_done: Callable[[Unit, UnitResult], None],
) -> None:
    try:
        import ray
    except ImportError as err:
        raise StudyError(
            "the ray executor needs Ray: pip install 'specviz[ray]' (or use --executor local)"
        ) from err
    if not ray.is_initialized():
        ray.init()
    task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0)(_ray_task)
    pending = {task.remote(unit, str(out_dir.resolve())): unit for unit in units}
    bar = tqdm(total=len(units), desc="study (ray)", unit="run", disable=not progress)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception:
                    for other in pending:
                        ray.cancel(other)
                    raise
                on_done(unit, result)
                bar.update()
    finally:
        bar.close()
