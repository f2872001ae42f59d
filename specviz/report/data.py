"""Loading what a report analyses: the runs at or below a path, checked and optionally filtered.

Every check raises :class:`~specviz.report.errors.ReportError` with a message naming the
problem: a missing path, a path with no run, runs that recorded nothing, a damaged table file, a
category that is not in the data, only baseline runs (nothing to compare), or method runs without
an autoregressive baseline on the same prompts (speedups need one). The report builder calls :func:`load_runs` before it starts a kernel, and each
notebook calls it again, so a notebook run on its own fails the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from specviz.metrics.speedup import BASELINE, missing_baseline
from specviz.plots.common import method_label
from specviz.report.errors import ReportError
from specviz.rundir import (
    EVENTS_FILE,
    REQUESTS_FILE,
    RunDirError,
    SchemaError,
    collect_tables,
    find_run_dirs,
    read_run_meta,
    scan_events,
    scan_requests,
)

MANIFEST_FILE = "study.json"


@dataclass(frozen=True)
class StudyData:
    """The events and requests of every run under ``source`` (of ``categories`` when given).

    Both tables gain a ``method`` column (drafter, k-policy and configured k in one label, from
    the request table, so an adaptive policy's per-round k does not split a run).
    """

    source: Path
    run_dirs: tuple[Path, ...]
    events: pl.DataFrame
    requests: pl.DataFrame
    categories: tuple[str, ...]
    manifest: dict[str, Any] | None

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(sorted(self.requests["method"].unique().to_list()))

    def run_meta(self, run_id: str) -> dict[str, Any]:
        """The ``run.json`` of the run ``run_id``."""
        for run_dir in self.run_dirs:
            meta = read_run_meta(run_dir)
            if meta.get("run_id") == run_id:
                return meta
        raise ReportError(f"no run {run_id!r} under {self.source}")


def _read_manifest(source: Path) -> dict[str, Any] | None:
    import json

    path = source / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path} is not valid JSON ({err}): re-run the study") from err


def load_runs(
    source: str | Path,
    categories: Sequence[str] | None = None,
    *,
    require_baseline: bool = True,
) -> StudyData:
    """Read and check the runs at or below ``source`` (a run or a study directory).

    ``categories``: keep only these task categories (empty or None: all). With
    ``require_baseline`` every prompt run with a drafter must also have been run by the
    baseline (``drafter == "none"``) with the same target and temperature.
    """
    path = check_source(source)
    try:
        run_dirs = find_run_dirs(path)
        events = collect_tables(scan_events(run_dirs), run_dirs, EVENTS_FILE)
        requests = collect_tables(scan_requests(run_dirs), run_dirs, REQUESTS_FILE)
    except (RunDirError, SchemaError) as err:
        raise ReportError(f"{path}: {err}") from err
    if requests.height == 0 or events.height == 0:
        raise ReportError(
            f"{path} holds runs but no finished request: run or resume the study first"
        )
    present = sorted(requests["category"].unique().to_list())
    wanted = check_categories(requests, categories, path)
    if wanted:
        events = events.filter(pl.col("category").is_in(wanted))
        requests = requests.filter(pl.col("category").is_in(wanted))
    if require_baseline:
        check_baseline(requests, path)
    requests = requests.with_columns(method_label())
    methods = requests.select("run_id", "method").unique("run_id")
    events = events.join(methods, on="run_id", how="left")
    return StudyData(
        source=path,
        run_dirs=tuple(run_dirs),
        events=events,
        requests=requests,
        categories=tuple(wanted or present),
        manifest=_read_manifest(path),
    )


def check_source(source: str | Path) -> Path:
    """``source`` as a path; ReportError unless it is an existing directory."""
    path = Path(source)
    if not path.exists():
        raise ReportError(f"{path} does not exist: pass a run or study directory")
    if not path.is_dir():
        raise ReportError(f"{path} is not a directory: pass a run or study directory")
    return path


def check_categories(
    requests: pl.DataFrame, categories: Sequence[str] | None, path: Path
) -> list[str]:
    """The categories asked for (empty: all); ReportError naming any the requests do not hold."""
    present = sorted(requests["category"].unique().to_list())
    wanted = [c for c in (categories or []) if c]
    unknown = [c for c in wanted if c not in present]
    if unknown:
        raise ReportError(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}: "
            f"the runs under {path} hold {', '.join(present)}"
        )
    return wanted


def check_baseline(requests: pl.DataFrame, source: Path) -> None:
    """Raise ReportError unless there is a drafter to compare and every drafted prompt also has
    a baseline request."""
    if (requests["drafter"] == BASELINE).all():
        raise ReportError(
            f"{source} holds only baseline runs (drafter {BASELINE!r}): nothing to compare. "
            "Add a run with a drafter (specviz run --drafter prompt-lookup ...) or [[drafters]] "
            "to the study, and report the directory holding both."
        )
    if not (requests["drafter"] == BASELINE).any():
        raise ReportError(
            f"{source} has no baseline run (drafter {BASELINE!r}): speedups need the "
            "autoregressive baseline on the same prompts. Run the study with baseline = true "
            "or add a run with --drafter none."
        )
    missing = missing_baseline(requests)
    if missing.height:
        ids = ", ".join(missing["prompt_id"].head(10).to_list())
        more = f" and {missing.height - 10} more" if missing.height > 10 else ""
        raise ReportError(
            f"{source}: {missing.height} prompt(s) run with a drafter have no baseline run "
            f"(drafter {BASELINE!r}, same target and temperature): {ids}{more}"
        )
