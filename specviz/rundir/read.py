"""A run directory and its ``run.json``: finding run directories at or below a path, reading
their metadata (a schema version this specviz reads; an older one noted once), and writing
JSON atomically. The tables are :mod:`specviz.rundir.tables`; the format is :mod:`specviz.rundir.schema`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specviz.errors import SpecvizError
from specviz.rundir.outdir import atomic_write_bytes
from specviz.rundir.schema import (
    ADDED_SINCE,
    READABLE_VERSIONS,
    RUN_FILE,
    SCHEMA_VERSION,
    SchemaError,
)


class RunDirError(SpecvizError):
    """A path is not a usable run directory (missing, empty, or of another configuration)."""


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def find_run_dirs(path: str | Path) -> list[Path]:
    """Run directories at or below ``path`` (a run directory or a study directory), sorted."""
    root = Path(path)
    if not root.exists():
        raise RunDirError(f"{root} does not exist: pass a run or study directory.")
    if is_run_dir(root):
        return [root]
    found = sorted(p.parent for p in root.rglob(RUN_FILE))
    if not found:
        raise RunDirError(
            f"{root} holds no run: no {RUN_FILE} at or below it. "
            "Create one with `specviz run` or `specviz study`."
        )
    return found


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise RunDirError(f"{path} is missing: {run_dir} is not a run directory.") from err
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON ({err}).") from err


def read_run_meta(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run directory of a version this specviz reads (an older one noted
    once on stderr)."""
    path = Path(run_dir) / RUN_FILE
    meta = read_run_json(run_dir)
    version = meta.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise SchemaError(
            f"{path} has schema_version {version!r}; this specviz reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Re-run it with this version of specviz."
        )
    if version != SCHEMA_VERSION:
        _note_old_schema(Path(run_dir), version)
    return meta


_NOTED: set[int] = set()


def _note_old_schema(run_dir: Path, version: int) -> None:
    """Say once per process and version that an older run directory is read with nulls."""
    if version in _NOTED:
        return
    _NOTED.add(version)
    added = [c for table in ADDED_SINCE[version].values() for c in table]
    print(
        f"specviz: note: {run_dir} (and any other run of schema {version}) is read as schema "
        f"{SCHEMA_VERSION} with {', '.join(added)} null (added since)",
        file=sys.stderr,
    )


def version_of(run_dir: Path) -> int:
    return int(read_run_meta(run_dir)["schema_version"])


def memory_partitions(run_dirs: Sequence[Path]) -> dict[str, str]:
    """Each suffix drafter's memory partition (``shared`` or ``task``) by its label, from the
    runs' configs (the request table does not carry it; the summary and study planning read
    it, :mod:`specviz.report.answer`, :mod:`specviz.study.planning`)."""
    out = {}
    for run_dir in run_dirs:
        drafter = read_run_meta(run_dir).get("config", {}).get("drafter", {})
        if drafter.get("kind") == "suffix":
            out[drafter.get("name") or "suffix"] = drafter.get("partition") or "shared"
    return out


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
