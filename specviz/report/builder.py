"""``build_report``: run directory or study in, one self-contained HTML report out.

Steps:

1. :func:`specviz.report.data.load_runs` checks the input before any kernel starts (missing or
   empty directory, damaged table, unknown category, only baselines, no baseline:
   :class:`ReportError`), as are ``out`` (writable) and completeness: an unfinished run or study
   is refused unless ``allow_incomplete``, and then the page opens with a "Partial data" banner.
2. The analysis notebooks (jupytext ``.py`` files in ``notebooks/``) are joined into one
   notebook: their ``parameters`` cells merge into one, and papermill executes the whole in one
   kernel. One kernel start (~2.5 s) instead of one per notebook, and one page with one Vega
   bundle for every chart. The parameters are checked against that cell before the kernel
   starts, and the execution is bounded in time and retried once after a stall
   (:func:`specviz.report.execute.run_notebook`).
3. The summary (:mod:`specviz.report.summary`) is built from the numbers the notebooks published
   and put at the top; nbconvert renders the page with the ``specviz`` template.
4. The HTML goes to a temporary file beside ``out`` and is renamed onto ``out`` at the end: a
   failed build leaves no half-written report (and an existing report untouched).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import jupytext
import nbformat
from papermill.exceptions import PapermillExecutionError

from specviz.outdir import check_out_file, write_out_file
from specviz.report.data import load_runs
from specviz.report.errors import ReportError
from specviz.report.execute import ExecutionLimits, run_notebook
from specviz.report.export import notebook_to_html
from specviz.report.html import esc
from specviz.report.kernel import choose_kernel
from specviz.report.parameters import PARAMETERS_TAG, check_parameters
from specviz.report.publish import read_published
from specviz.report.summary import summary_html
from specviz.resources import shipped_dir
from specviz.runlog import RunDirError, refuse_unfinished

#: The analysis notebooks of a report, in page order (``run_study`` runs studies, not analyses).
REPORT_NOTEBOOKS = ("mixture_collapse", "acceptance_by_task", "token_explorer")
REPORT_NAME = "report"


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout, or its copy in the installed wheel."""
    return shipped_dir("notebooks")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """A jupytext ``.py`` (or ``.ipynb``) notebook; it must have exactly one parameters cell."""
    if not path.is_file():
        raise ReportError(f"notebook {path} is missing: pass notebooks_dir=<the repo's notebooks/>")
    nb = jupytext.read(path)
    tagged = [c for c in nb.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ReportError(f"{path} has {len(tagged)} cells tagged {PARAMETERS_TAG!r}; it needs one")
    return nb


def combine(
    notebooks: Sequence[tuple[str, nbformat.NotebookNode]], heading: str
) -> nbformat.NotebookNode:
    """One notebook: a heading, one merged parameters cell, then every notebook's other cells."""
    combined = nbformat.v4.new_notebook()
    combined.metadata["kernelspec"] = notebooks[0][1].metadata.get("kernelspec", {})
    combined.metadata["language_info"] = {"name": "python"}
    params = []
    body = []
    for name, nb in notebooks:
        for index, cell in enumerate(nb.cells):
            cell = nbformat.from_dict(cell)
            cell["id"] = f"{name}-{index}"
            if PARAMETERS_TAG in cell.metadata.get("tags", []):
                params.append(f"# {name}\n{cell.source}")
            else:
                body.append(cell)
    merged = nbformat.v4.new_code_cell("\n\n".join(params), metadata={"tags": [PARAMETERS_TAG]})
    merged["id"] = "parameters"
    title = nbformat.v4.new_markdown_cell(f"# {esc(heading)}")
    title["id"] = "title"
    combined.cells = [title, merged, *body]
    return combined


def _summary_cell(published: dict) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("# summary (built by specviz.report.summary)")
    cell["id"] = "summary"
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": summary_html(published)})
    ]
    return cell


def _partial_cell(unfinished: Sequence[str]) -> nbformat.NotebookNode:
    """The banner of a report built with ``allow_incomplete`` from unfinished runs."""
    shown = ", ".join(unfinished[:10]) + (" ..." if len(unfinished) > 10 else "")
    cell = nbformat.v4.new_markdown_cell(
        f"**Partial data:** {len(unfinished)} run(s) of this study are unfinished "
        f"({esc(shown)}). The numbers below cover the finished requests only."
    )
    cell["id"] = "partial"
    return cell


def _failure(err: PapermillExecutionError) -> ReportError:
    lines = [line for line in (err.traceback or []) if line.strip()]
    return ReportError(
        f"the report notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue}"
        + (f"\n{lines[-1]}" if lines and err.ename not in ("ReportError",) else "")
    )


def build_report(
    source: str | Path,
    out: str | Path,
    *,
    categories: Sequence[str] = (),
    notebooks_dir: Path | None = None,
    kernel: str | None = None,
    n_boot: int = 1000,
    limits: ExecutionLimits = ExecutionLimits(),
    progress: bool = True,
    allow_incomplete: bool = False,
    force: bool = False,
) -> Path:
    """Execute the analysis notebooks on ``source`` and write one offline HTML report to ``out``.

    ``source``: a run directory or a study directory. ``categories``: analyse only these task
    categories (empty: all). ``kernel``: a registered Jupyter kernel name; by default the
    ``specviz`` kernel when registered, else the current interpreter
    (:mod:`specviz.report.kernel`). ``n_boot``: bootstrap resamples of every interval.
    ``limits``: time bounds of one cell, the kernel start and the whole execution
    (:class:`specviz.report.execute.ExecutionLimits`). An unfinished run or study is refused
    unless ``allow_incomplete``; then the page says at the top that its data is partial.
    ``out`` may be a new file, a report specviz wrote, a character device or a pipe; any other
    existing file is refused unless ``force`` (:func:`specviz.outdir.check_out_file`).
    Returns the report's path.
    """
    source = Path(source).resolve()
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"{out} is a directory: pass the report's file name, e.g. report.html")
    check_out_file(out, force=force, ours=is_specviz_report)
    data = load_runs(source, categories)
    try:
        unfinished = refuse_unfinished(source, allow_incomplete)
    except RunDirError as err:
        raise ReportError(str(err)) from None
    choice = choose_kernel(kernel)
    nb_dir = notebooks_dir or default_notebooks_dir()
    notebooks = [(name, read_notebook(nb_dir / f"{name}.py")) for name in REPORT_NOTEBOOKS]
    heading = f"specviz report: {source.name}"
    combined = combine(notebooks, heading)
    parameters = {
        "source": str(source),
        "categories": list(data.categories if categories else []),
        "n_boot": n_boot,
    }
    check_parameters(combined, parameters, name=REPORT_NAME)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="specviz-report-") as tmp:
        try:
            executed = run_notebook(
                combined,
                Path(tmp) / "report.ipynb",
                name=REPORT_NAME,
                parameters=parameters,
                kernel=choice,
                cwd=Path(tmp),
                limits=limits,
                progress=progress,
            )
        except PapermillExecutionError as err:
            raise _failure(err) from None
    published = read_published(executed)
    executed.cells.insert(1, _summary_cell(published))
    if unfinished:
        executed.cells.insert(1, _partial_cell(unfinished))
    html = notebook_to_html(executed, heading)
    write_out_file(out, html)
    return out


def is_specviz_report(head: bytes) -> bool:
    """The start of a file is a report specviz wrote (the generator tag of its template), so
    building the report again may replace it."""
    return b'<meta name="generator" content="specviz ' in head
