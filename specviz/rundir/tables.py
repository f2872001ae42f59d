"""A run directory's tables: reading ``events`` and ``requests`` (schema-checked, a damaged file
named) and writing them crash-safe.

Writing is crash-safe: each finished request is flushed as its own pair of small Parquet part
files under ``DIR/parts/`` (written to a temporary name, then renamed), so a killed run loses at
most the request in flight. :meth:`RunWriter.consolidate` merges the parts into
``events.parquet`` and ``requests.parquet`` (again through an atomic rename) at the end of a run
and at the start of a resumed one. Readers see consolidated files and leftover parts alike.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from specviz.rundir.outdir import atomic_write_bytes, remove_leftovers
from specviz.rundir.read import RunDirError, find_run_dirs, version_of
from specviz.rundir.schema import (
    ADDED_SINCE,
    EVENT_SCHEMA,
    EVENTS_FILE,
    REQUEST_SCHEMA,
    REQUESTS_FILE,
    check_columns,
)

PARTS_DIR = "parts"


def table_files(run_dir: Path, name: str) -> list[Path]:
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
        for f in table_files(run_dir, name):
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
    found = [(d, table_files(d, name)) for root in roots for d in find_run_dirs(root)]
    if not any(files for _, files in found):
        raise RunDirError(
            f"no {name} under {', '.join(map(str, roots))}: the run recorded nothing yet."
        )
    return found


def _table_files_of(paths: str | Path | Iterable[str | Path], name: str) -> list[Path]:
    return [f for _, files in _run_files_of(paths, name) for f in files]


def _scan(paths: str | Path | Iterable[str | Path], name: str, schema: pl.Schema, what: str):
    """Every file of table ``name``, its footer checked against this version's columns (those
    an older run directory lacks, :data:`~specviz.rundir.schema.ADDED_SINCE`, are read as nulls)."""
    current: list[Path] = []
    older: list[pl.LazyFrame] = []
    for run_dir, files in _run_files_of(paths, name):
        lacks = ADDED_SINCE.get(version_of(run_dir), {}).get(what, ())
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


@dataclass(frozen=True)
class Finished:
    """A decoded (or server-answered) request as a session hands it to the writer: its event
    and request rows, and the run's wall seconds so far. The run's totals are summed from the
    request rows (:func:`specviz.rundir.scaffold.record_run`)."""

    events: pl.DataFrame
    request: pl.DataFrame
    run_wall_s: float


class RunWriter:
    """Appends finished requests to a run directory, one flushed part per request and table.

    ``TABLES``: each table it keeps, with the columns that identify a row (parts written again
    after a crash between rename and cleanup keep one copy) and its order; a kind of run that
    keeps more (``server.parquet``, :mod:`specviz.endpoint.run`) adds its own."""

    TABLES: tuple[tuple[str, pl.Schema, tuple[str, ...], tuple[str, ...]], ...] = (
        (REQUESTS_FILE, REQUEST_SCHEMA, ("request_id",), ("request_index",)),
        (
            EVENTS_FILE,
            EVENT_SCHEMA,
            ("request_id", "round", "position", "kind"),
            ("request_index", "round", "position"),
        ),
    )

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.parts = run_dir / PARTS_DIR
        self.parts.mkdir(parents=True, exist_ok=True)

    def finished_request_ids(self) -> set[str]:
        files = table_files(self.run_dir, REQUESTS_FILE)
        if not files:
            return set()
        check_tables(self.run_dir)
        ids = pl.scan_parquet(files).select("request_id").collect()["request_id"]
        return set(ids.to_list())

    def append(self, events: pl.DataFrame, request: pl.DataFrame) -> None:
        """Flush one request: its events first, then its request row (which marks it done)."""
        index = int(request["request_index"][0])
        self.append_part(EVENTS_FILE, events, index)
        self.append_part(REQUESTS_FILE, request, index)

    def append_part(self, name: str, frame: pl.DataFrame, index: int) -> None:
        """Flush the rows of request ``index`` in table ``name`` as one part."""
        schema = next(schema for table, schema, _, _ in self.TABLES if table == name)
        part = self.parts / f"{name.removesuffix('.parquet')}-{index:06d}.parquet"
        _atomic_write_parquet(frame.match_to_schema(schema), part)

    def consolidate(self) -> None:
        """Merge the parts into each table's file; each request (each row) is kept once.

        Runs under the directory's exclusive lock, so any temporary file in it is a leftover of
        a crashed writer (a ``kill -9`` mid-write, a full disk): those are deleted first."""
        for directory in (self.run_dir, self.parts):
            remove_leftovers(directory)
        done = list(self.finished_request_ids())
        for name, schema, key, order in self.TABLES:
            files = table_files(self.run_dir, name)
            if not files:
                continue
            frame = pl.scan_parquet(files).filter(pl.col("request_id").is_in(done)).collect()
            frame = frame.unique(key, keep="first", maintain_order=True)
            # stable: a rejected draft and its round's correction share a position, and keep
            # the recorder's order (drafts, then the target's row) however the parts arrived
            frame = frame.sort(order, maintain_order=True)
            _atomic_write_parquet(frame.match_to_schema(schema), self.run_dir / name)
        for part in self.parts.glob("*.parquet"):
            part.unlink()
