"""What is unfinished at or below a path: runs whose ``run.json`` is not marked complete, and
runs a study manifest lists that do not exist yet; the one refusal of unfinished data that
``specviz report``, ``summary`` and ``export-specbench`` share."""

from __future__ import annotations

import json
from pathlib import Path

from specviz.rundir.read import RunDirError, find_run_dirs, is_run_dir, read_run_meta
from specviz.rundir.schema import RUN_FILE

STUDY_MANIFEST = "study.json"  # written by specviz.study.manifest


def _study_run_dirs(root: Path) -> list[str]:
    """Every run directory a study manifest under ``root`` lists (relative), or none."""
    path = root / STUDY_MANIFEST
    if not path.is_file():
        return []
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is damaged ({err}): restore it from a copy") from err
    conditions = manifest.get("conditions", []) if isinstance(manifest, dict) else []
    return [d for c in conditions if isinstance(c, dict) for d in c.get("run_dirs", [])]


def unfinished_runs(path: str | Path) -> list[str]:
    """What is unfinished at or below ``path``: ``"DIR (interrupted)"`` for a run whose
    ``run.json`` is not marked complete, ``"DIR (not started)"`` for a run a study manifest lists
    that does not exist yet. Empty when everything is finished."""
    root = Path(path)
    found = find_run_dirs(root)
    out = [
        f"{d.relative_to(root) if d != root else d.name} (interrupted)"
        for d in found
        if not read_run_meta(d).get("complete")
    ]
    out += [f"{d} (not started)" for d in _study_run_dirs(root) if not is_run_dir(root / d)]
    return out


def refuse_unfinished(path: str | Path, allow: bool) -> list[str]:
    """Raise RunDirError naming what is unfinished at or below ``path``, unless ``allow``;
    returns the unfinished runs (empty when all are finished)."""
    unfinished = unfinished_runs(path)
    if unfinished and not allow and is_run_dir(Path(path)):
        raise RunDirError(
            f"{path} is an unfinished run ({RUN_FILE} says it is not complete): finish it with "
            "--resume, or pass --allow-incomplete to use the finished requests only"
        )
    if unfinished and not allow:
        shown = ", ".join(unfinished[:3]) + (
            f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else ""
        )
        raise RunDirError(
            f"{path} is incomplete: {len(unfinished)} run(s) unfinished ({shown}). Finish it "
            "with --resume, or pass --allow-incomplete to use the finished requests only"
        )
    return unfinished
