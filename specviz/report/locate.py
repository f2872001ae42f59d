"""Where a notebook's ``source`` is: the demo's results, found from JupyterLab's directory.

``make demo`` writes its study to ``runs/default`` at the repository root, and ``make lab``
starts JupyterLab in ``notebooks/``, where the notebooks' kernels run. A relative ``source``
is therefore looked up from the working directory and then from each directory above it, so
the default ``runs/default`` finds the demo's results from ``notebooks/`` too. When it is not
found, the error says in one line what to set and lists the run and study directories under
``runs/`` and ``results/`` that it can see.
"""

from __future__ import annotations

from pathlib import Path

from specviz.report.errors import ReportError
from specviz.rundir import RUN_FILE

#: What ``make demo`` writes (relative to the repository root).
DEMO_SOURCE = "runs/default"
#: Folders where run and study directories are usually written.
RESULT_FOLDERS = ("runs", "results")
STUDY_FILE = "study.json"


def _candidates(cwd: Path) -> list[Path]:
    return [cwd, *cwd.parents]


def visible_runs(cwd: Path, limit: int = 10) -> list[Path]:
    """Run and study directories directly under ``runs/`` or ``results/`` of ``cwd`` and the
    directories above it (at most ``limit``)."""
    found: list[Path] = []
    for base in _candidates(cwd):
        for folder in RESULT_FOLDERS:
            root = base / folder
            if not root.is_dir():
                continue
            for child in sorted(p for p in root.iterdir() if p.is_dir()):
                if (child / RUN_FILE).is_file() or (child / STUDY_FILE).is_file():
                    found.append(child)
    return found[:limit]


def locate_source(source: str | Path, cwd: Path | None = None) -> Path:
    """``source`` if it exists; a relative ``source`` that does not is looked up from each
    directory above ``cwd`` (default: the working directory). Raises :class:`ReportError`
    saying what to set, with the run directories it can see, when it is nowhere."""
    path = Path(source)
    here = (cwd or Path.cwd()).resolve()
    if not str(source):
        raise _not_found("(empty)", here)
    if path.is_absolute():
        if path.exists():
            return path
        raise _not_found(str(path), here)
    for base in _candidates(here):
        if (base / path).exists():
            return base / path
    raise _not_found(str(path), here)


def _not_found(source: str, cwd: Path) -> ReportError:
    seen = visible_runs(cwd)
    listed = ", ".join(str(p) for p in seen) if seen else "none under runs/ or results/ here"
    return ReportError(
        f"source {source} not found from {cwd} or above: set source in the parameters cell to a "
        f"run or study directory (run `make demo` for {DEMO_SOURCE}); run directories seen: "
        f"{listed}"
    )
