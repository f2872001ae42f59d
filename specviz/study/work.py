"""Running one unit: the function every executor calls, in-process, in a worker, or on Ray."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from specviz.config import RunConfig
from specviz.model_source import cache_root
from specviz.models import ModelCache
from specviz.runner import run
from specviz.study.units import Unit

_PROCESS_MODELS: ModelCache | None = None


@dataclass(frozen=True)
class UnitResult:
    unit_id: str
    requests_done: int
    requests_skipped: int
    new_tokens: int
    wall_s: float


def process_models() -> ModelCache:
    """One model cache per process: a worker loads each model once for all its units."""
    global _PROCESS_MODELS
    if _PROCESS_MODELS is None:
        _PROCESS_MODELS = ModelCache()
    return _PROCESS_MODELS


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """An exclusive lock shared by every process of this machine (a no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: loads are not serialized
        yield
        return
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".load.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_models(config: RunConfig, models: ModelCache) -> None:
    """Load a unit's models into ``models``, one process of this machine at a time.

    Worker processes and Ray tasks start together; the first load of a model may write a cache
    (the embedded GGUF model is dequantized once to safetensors), so concurrent first loads would
    race, and loading one model at a time also keeps peak memory down. Later loads hit the cache.
    """
    with _machine_lock():
        models.get(config.target)
        if config.drafter.draft is not None:
            models.get(config.drafter.draft, config.drafter.draft_quant)


def run_unit(
    unit: Unit, out_dir: str | Path, *, models: ModelCache | None = None, progress: bool = False
) -> UnitResult:
    """Run (or continue) a unit's stream into ``out_dir / unit.run_dir``.

    Always opens the run directory with ``resume=True``: whether resuming is allowed at all is
    decided once for the whole study before any unit starts (see :func:`specviz.study.run_study`).
    Requests in ``unit.reuse`` are copied from their source run directories (finished first).
    """
    models = models or process_models()
    load_models(unit.config, models)
    reuse = [replace(r, source=str(Path(out_dir) / r.source)) for r in unit.reuse]
    summary = run(
        unit.config,
        unit.requests,
        Path(out_dir) / unit.run_dir,
        batch=unit.batch,
        resume=True,
        models=models,
        progress=progress,
        reuse=reuse,
    )
    return UnitResult(
        unit.id, summary.requests_done, summary.requests_skipped, summary.new_tokens, summary.wall_s
    )
