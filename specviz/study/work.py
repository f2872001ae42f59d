"""Running one unit: the function every executor calls, in-process, in a worker, or on Ray."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def run_unit(
    unit: Unit, out_dir: str | Path, *, models: ModelCache | None = None, progress: bool = False
) -> UnitResult:
    """Run (or continue) a unit's stream into ``out_dir / unit.run_dir``.

    Always opens the run directory with ``resume=True``: whether resuming is allowed at all is
    decided once for the whole study before any unit starts (see :func:`specviz.study.run_study`).
    """
    summary = run(
        unit.config,
        unit.requests,
        Path(out_dir) / unit.run_dir,
        resume=True,
        models=models or process_models(),
        progress=progress,
    )
    return UnitResult(
        unit.id, summary.requests_done, summary.requests_skipped, summary.new_tokens, summary.wall_s
    )
