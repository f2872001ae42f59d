"""Reading and writing run directories (the format is defined in :mod:`specviz.schema`).

Writing is crash-safe: each finished request is flushed as its own pair of small Parquet part
files under ``DIR/parts/`` (written to a temporary name, then renamed), so a killed run loses at
most the request in flight. :meth:`RunWriter.consolidate` merges the parts into
``events.parquet`` and ``requests.parquet`` (again through an atomic rename) at the end of a run
and at the start of a resumed one. Readers see consolidated files and leftover parts alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

import specviz
from specviz.errors import SpecvizError
from specviz.outdir import (
    atomic_write_bytes,
    check_out_dir,
    entries,
    remove_leftovers,
)
from specviz.schema import (
    ADDED_SINCE,
    EVENT_SCHEMA,
    EVENTS_FILE,
    READABLE_VERSIONS,
    REQUEST_SCHEMA,
    REQUESTS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    SchemaError,
    check_columns,
)

if TYPE_CHECKING:  # the identity helpers read loaded models; reading a run directory does not
    import torch

    from specviz.batch.config import BatchConfig
    from specviz.config import RunConfig
    from specviz.models import LoadedModel, ModelCache
    from specviz.recorder import RequestCounters
    from specviz.workloads.request import Request

PARTS_DIR = "parts"


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


def _read_run_json(run_dir: str | Path) -> dict[str, Any]:
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
    meta = _read_run_json(run_dir)
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


def _version_of(run_dir: Path) -> int:
    return int(read_run_meta(run_dir)["schema_version"])


def _table_files(run_dir: Path, name: str) -> list[Path]:
    stem = name.removesuffix(".parquet")
    files = [run_dir / name] if (run_dir / name).is_file() else []
    files += sorted((run_dir / PARTS_DIR).glob(f"{stem}-*.parquet"))
    return files


def damaged(path: Path, err: BaseException) -> RunDirError:
    """The error for a table file that cannot be read (truncated, overwritten, not Parquet)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RunDirError(
        f"{path} is damaged ({first}): restore it from a copy, or delete the run directory "
        "and run it again"
    )


def _schema_of(path: Path) -> pl.Schema:
    try:
        return pl.read_parquet_schema(path)
    except Exception as err:  # polars raises several error types for unreadable files
        raise damaged(path, err) from err


def check_tables(run_dir: Path) -> None:
    """Raise RunDirError naming the first table file of ``run_dir`` that cannot be read, and
    SchemaError naming one that lacks a column of this schema version (its footer and schema
    are read, not its data)."""
    for name, schema, what in (
        (REQUESTS_FILE, REQUEST_SCHEMA, "requests"),
        (EVENTS_FILE, EVENT_SCHEMA, "events"),
    ):
        for f in _table_files(run_dir, name):
            check_columns(
                _schema_of(f),
                schema,
                what,
                source=str(f),
                remedy="Restore it from a copy, or run into another --out directory.",
            )


def _run_files_of(
    paths: str | Path | Iterable[str | Path], name: str
) -> list[tuple[Path, list[Path]]]:
    """(run directory, its files of table ``name``) for every run at or below each path."""
    roots = [paths] if isinstance(paths, str | Path) else list(paths)
    found = [(d, _table_files(d, name)) for root in roots for d in find_run_dirs(root)]
    if not any(files for _, files in found):
        raise RunDirError(
            f"no {name} under {', '.join(map(str, roots))}: the run recorded nothing yet."
        )
    return found


def _table_files_of(paths: str | Path | Iterable[str | Path], name: str) -> list[Path]:
    return [f for _, files in _run_files_of(paths, name) for f in files]


def _scan(paths: str | Path | Iterable[str | Path], name: str, schema: pl.Schema, what: str):
    """Every file of table ``name``, its footer checked against this version's columns (those
    an older run directory lacks, :data:`~specviz.schema.ADDED_SINCE`, are read as nulls)."""
    current: list[Path] = []
    older: list[pl.LazyFrame] = []
    for run_dir, files in _run_files_of(paths, name):
        lacks = ADDED_SINCE.get(_version_of(run_dir), {}).get(what, ())
        for f in files:  # every footer: a truncated or foreign file is named here
            columns = [c for c in schema if c not in lacks]
            check_columns(_schema_of(f), schema, what, source=str(f), columns=columns)
            if lacks:
                nulls = [pl.lit(None, dtype=schema[c]).alias(c) for c in lacks]
                older.append(pl.scan_parquet(f).with_columns(nulls).select(list(schema)))
            else:
                current.append(f)
    if not older:
        return pl.scan_parquet(current)
    return pl.concat([pl.scan_parquet(current).select(list(schema)), *older] if current else older)


def collect_tables(
    frame: pl.LazyFrame, paths: str | Path | Iterable[str | Path], name: str
) -> pl.DataFrame:
    """``frame.collect()``; when a file of table ``name`` under ``paths`` turns out to be
    damaged past its footer, the error names that file."""
    try:
        return frame.collect()
    except (pl.exceptions.PolarsError, OSError) as err:
        for f in _table_files_of(paths, name):
            try:
                pl.read_parquet(f)
            except Exception as bad:  # polars raises several error types for damaged files
                raise damaged(f, bad) from err
        raise


def scan_events(paths: str | Path | Iterable[str | Path]) -> pl.LazyFrame:
    """Lazy scan of the events of every run at or below each path (schema-checked)."""
    return _scan(paths, EVENTS_FILE, EVENT_SCHEMA, "events")


def scan_requests(paths: str | Path | Iterable[str | Path]) -> pl.LazyFrame:
    """Lazy scan of the requests of every run at or below each path (schema-checked)."""
    return _scan(paths, REQUESTS_FILE, REQUEST_SCHEMA, "requests")


def _atomic_write_parquet(frame: pl.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()  # serialised first: a disk error then comes from Python, with errno
    frame.write_parquet(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass(frozen=True)
class Finished:
    """A decoded request as a session hands it to the writer: its counters, its event and
    request rows, and the run's wall seconds so far."""

    counters: RequestCounters
    events: pl.DataFrame
    request: pl.DataFrame
    run_wall_s: float


class RunWriter:
    """Appends finished requests to a run directory, one flushed part per request."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.parts = run_dir / PARTS_DIR
        self.parts.mkdir(parents=True, exist_ok=True)

    def finished_request_ids(self) -> set[str]:
        files = _table_files(self.run_dir, REQUESTS_FILE)
        if not files:
            return set()
        check_tables(self.run_dir)
        ids = pl.scan_parquet(files).select("request_id").collect()["request_id"]
        return set(ids.to_list())

    def append(self, events: pl.DataFrame, request: pl.DataFrame) -> None:
        """Flush one request: its events first, then its request row (which marks it done)."""
        index = int(request["request_index"][0])
        _atomic_write_parquet(
            events.match_to_schema(EVENT_SCHEMA), self.parts / f"events-{index:06d}.parquet"
        )
        _atomic_write_parquet(
            request.match_to_schema(REQUEST_SCHEMA), self.parts / f"requests-{index:06d}.parquet"
        )

    def consolidate(self) -> None:
        """Merge parts into events.parquet / requests.parquet; each request is kept once.

        Runs under the directory's exclusive lock, so any temporary file in it is a leftover of
        a crashed writer (a ``kill -9`` mid-write, a full disk): those are deleted first."""
        for directory in (self.run_dir, self.parts):
            remove_leftovers(directory)
        done = self.finished_request_ids()
        for name, schema in ((REQUESTS_FILE, REQUEST_SCHEMA), (EVENTS_FILE, EVENT_SCHEMA)):
            files = _table_files(self.run_dir, name)
            if not files:
                continue
            frame = pl.scan_parquet(files).filter(pl.col("request_id").is_in(list(done))).collect()
            if name == REQUESTS_FILE:
                frame = frame.unique("request_id", keep="first", maintain_order=True)
            else:
                # parts written again after a crash between rename and cleanup: keep one copy
                frame = frame.unique(
                    ["request_id", "round", "position", "kind"], keep="first", maintain_order=True
                )
            sort = (
                ["request_index", "round", "position"] if name == EVENTS_FILE else ["request_index"]
            )
            # stable: a rejected draft and its round's correction share a position, and keep
            # the recorder's order (drafts, then the target's row) however the parts arrived
            frame = frame.sort(sort, maintain_order=True)
            _atomic_write_parquet(frame.match_to_schema(schema), self.run_dir / name)
        for part in self.parts.glob("*.parquet"):
            part.unlink()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def table_from_rows(rows: Sequence[dict[str, Any]], schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=schema, orient="row")


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


# -- a run directory's identity and metadata ------------------------------------------------
#
# A run directory is tied to one configuration and one workload: opening it with another is
# refused, so nothing already written is mixed with or overwritten by a different run.


def workload_fingerprint(requests: Sequence[Request]) -> str:
    def row(r: Request) -> list[Any]:
        out = [r.index, r.repeat, r.mixture, r.prompt.id, r.prompt.category, list(r.prompt.turns)]
        # recorded context enters only when present: fingerprints of older runs stay valid
        return [*out, [list(pair) for pair in r.prompt.context]] if r.prompt.context else out

    blob = json.dumps([row(r) for r in requests])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_identity(
    config: RunConfig, requests: Sequence[Request], batch: BatchConfig | None
) -> dict[str, Any]:
    """What makes a run directory this run: schema, configuration, workload (and batching)."""
    identity = {
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "workload": workload_fingerprint(requests),
    }
    return identity if batch is None else identity | {"batch": batch.to_dict()}


def open_run_dir(out_dir: Path, identity: dict[str, Any], resume: bool) -> None:
    """Refuse a directory holding anything but this very run; refuse to restart without resume.

    Also refuses, before any model is loaded, an ``out_dir`` that cannot be written."""
    check_out_dir(out_dir)
    if (out_dir / RUN_FILE).is_file():
        version = _read_run_json(out_dir).get("schema_version")
        if version in ADDED_SINCE:
            raise RunDirError(
                f"{out_dir} holds a run of schema {version}: this specviz "
                f"reads it but adds nothing to it (it writes schema {SCHEMA_VERSION}); pass "
                "another --out directory"
            )
        existing = read_run_meta(out_dir)
        mine = {k: existing.get(k) for k in identity}
        if mine != identity:
            differs = sorted(k for k in identity if mine[k] != identity[k])
            detail = ""
            if "config" in differs:
                old, new = existing.get("config", {}), identity["config"]
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                detail = f" (config keys: {', '.join(keys)})"
            raise RunDirError(
                f"{out_dir} holds a run with a different {', '.join(differs)}{detail}; "
                "pass another --out directory"
            )
        if not resume:
            raise RunDirError(f"{out_dir} already holds this run: pass --resume to continue it")
        check_tables(out_dir)  # a damaged file is named before any model loads
    elif entries(out_dir):
        raise RunDirError(f"{out_dir} is not empty and holds no specviz run: pass another --out")


def begin_run(
    out_dir: Path,
    identity: dict[str, Any],
    config: RunConfig,
    target: LoadedModel,
    models: ModelCache,
    requests: Sequence[Request],
) -> dict[str, Any]:
    """Write ``run.json`` for a run that starts (or resumes) in ``out_dir``; return it.

    ``identity`` (schema version, config, workload, ...) was already checked against the
    directory by :func:`open_run_dir`; a resumed run keeps its original metadata.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / RUN_FILE).is_file():
        # left as it is: an unfinished run stays unfinished until the runner marks it complete,
        # and a finished one is never marked unfinished, whatever happens to this resume
        meta = read_run_meta(out_dir)
        _check_same_dtype(out_dir, meta, target)
        return meta
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    draft = config.drafter.draft
    meta = {
        **identity,
        "run_id": f"{out_dir.name}-{digest.hexdigest()[:8]}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": {"target": _model_info(target)}
        | ({"draft": _model_info(models.get(draft, config.drafter.draft_quant))} if draft else {}),
        "versions": _versions(),
        "hardware": _hardware(target.device),
        "git_commit": _git_commit(),
        "seed": config.seed,
        "requests": len(requests),
        "prompt_ids": [r.prompt.id for r in requests],
        "complete": False,
    }
    write_json(out_dir / RUN_FILE, meta)
    return meta


def _check_same_dtype(out_dir: Path, meta: dict[str, Any], target: LoadedModel) -> None:
    """A resumed run keeps its target's dtype: ``auto`` may resolve otherwise on another CPU
    (specviz.precision), and one run must not mix two targets' outputs."""
    recorded = meta.get("models", {}).get("target", {}).get("dtype")
    now = str(target.dtype).removeprefix("torch.")
    if recorded is not None and recorded != now:
        raise RunDirError(
            f"{out_dir} was decoded with its target in {recorded}, but it loads in {now} here "
            f"({target.dtype_reason}): resume it on a machine where its dtype resolves to "
            f"{recorded}, or decode into another --out"
        )


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(specviz.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _model_info(loaded: LoadedModel) -> dict[str, Any]:
    from specviz.precision import greedy_equality  # torch: only where a model is loaded

    return {
        "name": loaded.spec.name,
        "source": loaded.source,
        "revision": loaded.revision,
        "class": type(loaded.model).__name__,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "embedding_rows": loaded.model.get_input_embeddings().weight.shape[0],
        "tokenizer_size": len(loaded.tokenizer),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "dtype_reason": loaded.dtype_reason,
        "greedy_equality": greedy_equality(loaded.dtype),
        "device": str(loaded.device),
    }


def _hardware(device: torch.device) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "specviz": specviz.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "polars": pl.__version__,
    }
