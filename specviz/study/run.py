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

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specviz.rundir import LOCK_FILE, RUN_FILE, check_out_dir, entries, locked
from specviz.study.calibrate import COST_MODEL_FILE, write_cost_models
from specviz.study.local import lane_split, run_co_decoded, run_local
from specviz.study.manifest import (
    DONE,
    MANIFEST_FILE,
    PENDING,
    fingerprint,
    read_manifest,
    unit_status,
    write_manifest,
)
from specviz.study.reuse import settle, waves
from specviz.study.spec import Study, StudyError
from specviz.study.units import Plan, Unit, plan_study, shard_units
from specviz.study.work import UnitResult

if TYPE_CHECKING:
    from specviz.endpoint.client import EndpointConfig

EXECUTORS = ("local", "ray")
RUNS_DIR = "runs"  # every unit's run directory is runs/<condition-id> (units.run_dir_name)


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
    plan: Plan | None = None,
    endpoints: Mapping[str, EndpointConfig] | None = None,
) -> StudyOutcome:
    """Run every unit of ``study`` (or of one shard ``(i, n)``) into ``out_dir``.

    Before anything runs, ``out_dir`` must be writable and hold nothing but this study, and no
    run directory may resolve outside it. The directory is then locked for this shard: a second
    process running the same shard (or any process running the whole study) is refused, while
    shards ``i/n`` and ``j/n`` may share one directory. ``plan``: the study's
    :func:`~specviz.study.units.plan_study`, when the caller already made it.

    With ``endpoints`` (drafter label, ``baseline`` or ``""`` for any, to an endpoint) the units
    are sent to OpenAI-compatible servers instead (:mod:`specviz.study.endpoints`); every endpoint
    is checked before anything is written.
    """
    if executor not in EXECUTORS:
        raise StudyError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    out = Path(out_dir)
    check_out_dir(out)
    refuse_foreign(out)
    plan = plan or plan_study(study)
    refuse_escaping(out, plan.units)
    mine = shard_units(plan.units, shard)
    check_resumable(out, plan, mine, resume)
    assigned = None
    if endpoints is not None:
        from specviz.study.endpoints import assign_endpoints, check_endpoints

        if executor != "local":
            raise StudyError("--endpoint studies run with the local executor")
        assigned = assign_endpoints(mine, endpoints)
        check_endpoints(mine, assigned)
    with contextlib.ExitStack() as stack:
        for name, shared in study_locks(shard):
            stack.enter_context(locked(out, name, shared=shared))
        check_resumable(out, plan, mine, resume)  # again under the lock: nobody wrote meanwhile
        todo = [u for u in mine if unit_status(out, u) != DONE]
        finished = {u.run_dir for u in plan.units if unit_status(out, u) == DONE}
        todo = settle(todo, finished)
        manifest = _run_units(study, plan, todo, out, executor, progress, assigned)
    return StudyOutcome(
        out_dir=out,
        manifest=out / MANIFEST_FILE,
        units_total=len(plan.units),
        units_in_shard=len(mine),
        units_run=len(todo),
        units_already_done=len(mine) - len(todo),
        complete=manifest["status"] == "complete",
    )


def study_locks(shard: tuple[int, int] | None) -> list[tuple[str, bool]]:
    """(lock file, shared) a process takes on the study directory: the whole study exclusively,
    or the study shared plus its own shard exclusively."""
    if shard is None:
        return [(LOCK_FILE, False)]
    i, n = shard
    return [(LOCK_FILE, True), (f".specviz-shard-{i}-of-{n}.lock", False)]


def refuse_foreign(out: Path) -> None:
    """Refuse a directory holding a run, or anything but a study's manifest and runs."""
    if (out / RUN_FILE).is_file():
        raise StudyError(
            f"{out} holds a run ({RUN_FILE}), not a study: pass another --out directory"
        )
    ours = {MANIFEST_FILE, RUNS_DIR, COST_MODEL_FILE}
    foreign = [p.name for p in entries(out) if p.name not in ours and not _manifest_tmp(p)]
    if foreign or ((out / RUNS_DIR).exists() and not (out / MANIFEST_FILE).is_file()):
        shown = foreign[0] if foreign else RUNS_DIR
        raise StudyError(
            f"{out} is not empty and holds no specviz study (it holds {shown!r}): pass another "
            "--out directory"
        )


def _manifest_tmp(path: Path) -> bool:
    return path.name.startswith(f".{MANIFEST_FILE}.") and path.name.endswith(".tmp")


def refuse_escaping(out: Path, units: list[Unit] | tuple[Unit, ...]) -> None:
    """Refuse a unit whose run directory would resolve outside ``out`` (or onto it)."""
    root = out.resolve()
    for unit in units:
        target = (out / unit.run_dir).resolve()
        if target == root or not target.is_relative_to(root):
            raise StudyError(
                f"unit {unit.id!r} would write {target}, outside {out}: rename the category, "
                "mixture or drafter whose name holds a path"
            )


def check_resumable(out: Path, plan: Plan, mine: list[Unit], resume: bool) -> None:
    """Refuse another study's directory, started runs without ``resume``, and stray dirs."""
    existing = read_manifest(out)
    if existing is not None and existing.get("fingerprint") != fingerprint(plan):
        raise StudyError(
            f"{out / MANIFEST_FILE} belongs to another study (study file, settings or prompts "
            "differ): pass another --out directory"
        )
    statuses = {u.id: unit_status(out, u) for u in mine}
    started = [u for u in mine if statuses[u.id] != PENDING]
    stray = [u for u in mine if statuses[u.id] == PENDING and entries(out / u.run_dir)]
    if started and not resume:
        raise StudyError(
            f"{out} already holds {len(started)} run(s) of this study "
            f"(e.g. {started[0].run_dir}): pass --resume to continue, or another --out"
        )
    if stray:
        raise StudyError(
            f"{out / stray[0].run_dir} exists but holds no run: remove it or pass another --out"
        )


def _run_units(
    study: Study,
    plan: Plan,
    todo: list[Unit],
    out: Path,
    executor: str,
    progress: bool,
    assigned: Mapping[str, EndpointConfig] | None = None,
) -> dict[str, Any]:
    """Run ``todo`` (through their endpoints when ``assigned``); the manifest is rewritten
    before, after each unit and at the end."""
    write_manifest(study, plan, out)

    def on_done(unit: Unit, result: UnitResult | None = None) -> None:
        write_manifest(study, plan, out)

    try:
        if assigned is not None:
            from specviz.study.endpoints import run_endpoint_units

            run_endpoint_units(todo, out, assigned, progress, on_done)
        else:  # copies run after their sources (study.reuse)
            for wave in waves(todo):
                _run_wave(study, plan, wave, out, executor, progress, on_done)
    finally:
        manifest = write_manifest(study, plan, out)
    if assigned is not None:  # a server's runs carry no round timings to calibrate from
        return manifest
    if manifest["status"] == "complete" and not all(u.batch is not None for u in plan.units):
        write_cost_models(out)  # the calibration step: the study's cost curve, beside the manifest
    return manifest


def _run_wave(
    study: Study,
    plan: Plan,
    units: list[Unit],
    out: Path,
    executor: str,
    progress: bool,
    on_done: Callable[[Unit, UnitResult], None],
) -> None:
    """Run one wave; with ``options.co_decode = N`` (local executor) every unit but the first
    mixture's (the batch-size-1 subsample) is co-decoded N at a time (docs/studies.md)."""
    if executor == "local" and study.co_decode > 1:
        together, units = lane_split(units, plan.mixtures[0].name)
        run_local(units, out, workers=study.workers, progress=progress, on_done=on_done)
        run_co_decoded(
            together,
            out,
            lanes=study.co_decode,
            workers=study.workers,
            progress=progress,
            on_done=on_done,
        )
        return
    if executor == "ray":
        from specviz.study.ray_executor import run_ray

        run_ray(units, out, gpu=study.uses_cuda, progress=progress, on_done=on_done)
    else:
        run_local(units, out, workers=study.workers, progress=progress, on_done=on_done)
