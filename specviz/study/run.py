"""Running a study: plan, check the output directory, run this shard's units, keep the manifest.

``run_study`` is what ``specviz study FILE [--out DIR] [--shard i/n] [--resume] [--executor
local|ray]`` calls. The output directory holds ``study.json`` (the manifest, see
:mod:`specviz.study.manifest`) and ``runs/<condition-id>/`` run directories, one per unit.

Resuming: without ``resume`` a directory that already holds any run of this shard is refused, so
nothing is silently mixed or overwritten; with ``resume`` finished units are skipped and an
interrupted unit continues where it stopped (the runner skips its finished requests and replays
a persistent policy's state). Shards may share one output directory or use one each: the run
directories are disjoint either way, and reading all of them merges the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from specviz.study.local import run_local
from specviz.study.manifest import (
    DONE,
    MANIFEST_FILE,
    PENDING,
    fingerprint,
    read_manifest,
    unit_status,
    write_manifest,
)
from specviz.study.spec import Study, StudyError
from specviz.study.units import Unit, plan_study, shard_units
from specviz.study.work import UnitResult

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class StudyOutcome:
    """What one invocation did."""

    out_dir: Path
    manifest: Path
    units_total: int  # in the whole study
    units_in_shard: int
    units_run: int
    units_already_done: int
    complete: bool  # every unit of the whole study is done


def default_out_dir(study: Study) -> Path:
    """Where a study's output goes when no directory is given: ``results/<study name>``."""
    return Path("results") / study.name


def run_study(
    study: Study,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    resume: bool = False,
    executor: str = "local",
    progress: bool = True,
) -> StudyOutcome:
    """Run every unit of ``study`` (or of one shard ``(i, n)``) into ``out_dir``."""
    if executor not in EXECUTORS:
        raise StudyError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    out = Path(out_dir)
    plan = plan_study(study)
    existing = read_manifest(out)
    if existing is not None and existing.get("fingerprint") != fingerprint(plan):
        raise StudyError(
            f"{out / MANIFEST_FILE} belongs to another study (study file, settings or prompts "
            "differ): pass another --out directory"
        )
    mine = shard_units(plan.units, shard)
    statuses = {u.id: unit_status(out, u) for u in mine}
    started = [u for u in mine if statuses[u.id] != PENDING]
    stray = [u for u in mine if statuses[u.id] == PENDING and (out / u.run_dir).exists()]
    if started and not resume:
        raise StudyError(
            f"{out} already holds {len(started)} run(s) of this study "
            f"(e.g. {started[0].run_dir}): pass --resume to continue, or another --out"
        )
    if stray:
        raise StudyError(
            f"{out / stray[0].run_dir} exists but holds no run: remove it or pass another --out"
        )
    todo = [u for u in mine if statuses[u.id] != DONE]
    write_manifest(study, plan, out)

    def on_done(unit: Unit, result: UnitResult) -> None:
        write_manifest(study, plan, out)

    try:
        if executor == "ray":
            from specviz.study.ray_executor import run_ray

            run_ray(todo, out, gpu=study.uses_cuda, progress=progress, on_done=on_done)
        else:
            run_local(todo, out, workers=study.workers, progress=progress, on_done=on_done)
    finally:
        manifest = write_manifest(study, plan, out)
    return StudyOutcome(
        out_dir=out,
        manifest=out / MANIFEST_FILE,
        units_total=len(plan.units),
        units_in_shard=len(mine),
        units_run=len(todo),
        units_already_done=len(mine) - len(todo),
        complete=manifest["status"] == "complete",
    )
