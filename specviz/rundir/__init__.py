"""The run directory: everything specviz writes and reads back for a run and a study.

One public face: import run-directory names from here (``from specviz.rundir import
scan_events``). The package's modules, one concept each:

- :mod:`~specviz.rundir.identity`: a run's identity and ``run.json`` (:func:`start_run`,
  :func:`begin_run`, :func:`open_run_dir`), the refusal to mix another run into a directory;
- :mod:`~specviz.rundir.read`: finding run directories and reading ``run.json``, atomically
  writing JSON;
- :mod:`~specviz.rundir.tables`: the event and request tables (``parts/`` while a run is going,
  consolidated when it finishes), scanned lazily (:func:`scan_events`, :func:`scan_requests`);
- :mod:`~specviz.rundir.scan`: what in a study is unfinished, the study manifest;
- :mod:`~specviz.rundir.outdir`: the output guards (never overwrite a file specviz did not write,
  atomic writes, one writer at a time);
- :mod:`~specviz.rundir.schema` (and :mod:`~specviz.rundir.schema_doc`): the tables' columns,
  versions and their documentation;
- :mod:`~specviz.rundir.scaffold`: the one run scaffold (:func:`opened_run`,
  :func:`record_run`) that in-process and server-measured runs share, and their totals;
- :mod:`~specviz.rundir.provenance`: where and with what a run was decoded.

Inside the package, modules import their siblings directly, never this face.
"""

from __future__ import annotations

from specviz.rundir.identity import (
    begin_run,
    open_run_dir,
    run_identity,
    start_run,
    workload_fingerprint,
)
from specviz.rundir.outdir import (
    LOCK_FILE,
    OutPathError,
    check_out_dir,
    check_out_file,
    disk_error,
    entries,
    is_lock_file,
    locked,
    write_out_file,
    writes_through,
)
from specviz.rundir.provenance import (
    model_info,
)
from specviz.rundir.read import (
    RunDirError,
    find_run_dirs,
    is_run_dir,
    memory_partitions,
    read_run_meta,
    write_json,
)
from specviz.rundir.scaffold import (
    EndpointSummary,
    RunSummary,
    Session,
    complete_run,
    opened_run,
    record_run,
)
from specviz.rundir.scan import (
    refuse_unfinished,
    unfinished_runs,
)
from specviz.rundir.schema import (
    ADDED_SINCE,
    CO_DECODED_KEY,
    EVENT_SCHEMA,
    EVENTS_FILE,
    KIND_BONUS,
    KIND_CORRECTION,
    KIND_DRAFT,
    KINDS,
    REQUEST_SCHEMA,
    REQUESTS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    SchemaError,
    check_columns,
)
from specviz.rundir.tables import (
    PARTS_DIR,
    Finished,
    RunWriter,
    collect_tables,
    damaged,
    scan_events,
    scan_requests,
    table_files,
)

__all__ = [
    "ADDED_SINCE",
    "CO_DECODED_KEY",
    "EVENTS_FILE",
    "EVENT_SCHEMA",
    "KINDS",
    "KIND_BONUS",
    "KIND_CORRECTION",
    "KIND_DRAFT",
    "LOCK_FILE",
    "PARTS_DIR",
    "REQUESTS_FILE",
    "REQUEST_SCHEMA",
    "RUN_FILE",
    "SCHEMA_VERSION",
    "EndpointSummary",
    "Finished",
    "OutPathError",
    "RunDirError",
    "RunSummary",
    "RunWriter",
    "SchemaError",
    "Session",
    "begin_run",
    "check_columns",
    "check_out_dir",
    "check_out_file",
    "collect_tables",
    "complete_run",
    "damaged",
    "disk_error",
    "entries",
    "find_run_dirs",
    "is_lock_file",
    "is_run_dir",
    "locked",
    "memory_partitions",
    "model_info",
    "open_run_dir",
    "opened_run",
    "read_run_meta",
    "record_run",
    "refuse_unfinished",
    "run_identity",
    "scan_events",
    "scan_requests",
    "start_run",
    "table_files",
    "unfinished_runs",
    "workload_fingerprint",
    "write_json",
    "write_out_file",
    "writes_through",
]
