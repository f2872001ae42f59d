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
3. The page is arranged to answer in its first screen (:func:`arrange`): the cells tagged
   ``first-screen`` (the finding, the decomposition chart, acceptance single-task vs multitask;
   :mod:`specviz.report.first_screen`) come first, then the summary's tables
   (:mod:`specviz.report.summary`, built from the numbers the notebooks published) folded in a
   ``<details>``, then the notebooks; a contents bar links the sections. nbconvert renders the
   page with the ``specviz`` template. A line under the title says who measured the page's
   figures: specviz's own events, or a server (``specviz run/study --endpoint``), whose study
   runs the ``served`` notebook instead (:mod:`specviz.report.served`: no per-round events, so
   no decomposition; every figure marked with where its numbers came from).
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

from specviz.config import N_BOOT
from specviz.report.data import check_source, load_runs
from specviz.report.errors import ReportError
from specviz.report.execute import ExecutionLimits, run_notebook
from specviz.report.export import notebook_to_html
from specviz.report.first_screen import ANSWER_ID, FIRST_SCREEN_TAG
from specviz.report.html import element, esc, text_element
from specviz.report.kernel import choose_kernel
from specviz.report.parameters import PARAMETERS_TAG, check_parameters
from specviz.report.publish import read_published
from specviz.report.served import load_served
from specviz.report.summary import summary_html
from specviz.report.write import is_specviz_report, partial_cell, write_page
from specviz.resources import shipped_dir
from specviz.rundir import RunDirError, check_out_file, find_run_dirs, refuse_unfinished

#: The analysis notebooks of a report, in page order (``run_study`` runs studies, not analyses).
REPORT_NOTEBOOKS = ("workload", "mixture_collapse", "acceptance_by_task", "token_explorer")
#: The report of a server-measured study (:mod:`specviz.report.served`): no per-round events.
SERVED_NOTEBOOKS = ("served",)
#: Under the title: who measured every figure of the page (a served page marks each figure too).
MEASURED_LINES = {
    False: "<strong>Specviz-measured</strong>: every figure and table comes from specviz's own "
    "per-round events (draft and verify times, token ids), recorded in process.",
    True: "<strong>Server-measured</strong>: acceptance from the server's per-request counts, "
    "timings from the client's clock; each figure and table says which of its numbers are which.",
}
REPORT_NAME = "report"
NUMBERS_ID = "specviz-numbers"
NUMBERS_TITLE = (
    "The numbers: every term, the decomposition table, remedies, speedups, every stream and "
    "the cost curve (click to open)"
)


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
        anchored = False
        for index, cell in enumerate(nb.cells):
            cell = nbformat.from_dict(cell)
            cell["id"] = f"{name}-{index}"
            if cell.cell_type == "markdown" and not anchored:
                cell.source = f'<a id="{section_id(name)}"></a>\n\n{cell.source}'
                anchored = True
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


def section_id(name: str) -> str:
    """The anchor of a notebook's section in the report."""
    return f"section-{name}"


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first ``# heading`` of a notebook's markdown cells."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _summary_cell(published: dict) -> nbformat.NotebookNode:
    """The summary's tables, folded: the first screen already says what they establish."""
    cell = nbformat.v4.new_code_cell("# summary (built by specviz.report.summary)")
    cell["id"] = "summary"
    folded = element(
        "details",
        text_element("summary", NUMBERS_TITLE) + summary_html(published),
        class_="specviz-details",
        id=NUMBERS_ID,
    )
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": folded})]
    return cell


def arrange(
    executed: nbformat.NotebookNode,
    published: dict,
    unfinished: Sequence[str],
    served: bool = False,
) -> nbformat.NotebookNode:
    """The page's order: title, partial-data banner, the first-screen cells, the summary's
    tables (folded; a ``served`` page has none: they are built on per-round events), then every
    other cell in notebook order."""
    title, *rest = executed.cells
    first = [c for c in rest if FIRST_SCREEN_TAG in c.metadata.get("tags", [])]
    others = [c for c in rest if FIRST_SCREEN_TAG not in c.metadata.get("tags", [])]
    banner = [partial_cell(unfinished)] if unfinished else []
    summary = [] if served else [_summary_cell(published)]
    executed.cells = [title, *banner, *first, *summary, *others]
    return executed


def _served(source: Path) -> bool:
    """Whether ``source`` holds server-measured runs (ReportError for a missing source or one
    holding both kinds)."""
    from specviz.endpoint.summary import is_server_measured

    check_source(source)
    try:
        find_run_dirs(source)
    except RunDirError:
        return False  # load_runs names the problem
    try:
        return is_server_measured(source)
    except RunDirError as err:
        raise ReportError(str(err)) from None


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
    n_boot: int = N_BOOT,
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
    existing file is refused unless ``force`` (:func:`specviz.rundir.outdir.check_out_file`).
    Returns the report's path.
    """
    source = Path(source).resolve()
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"{out} is a directory: pass the report's file name, e.g. report.html")
    check_out_file(out, force=force, ours=is_specviz_report)
    served = _served(source)
    data = load_served(source, categories) if served else load_runs(source, categories)
    try:
        unfinished = refuse_unfinished(source, allow_incomplete)
    except RunDirError as err:
        raise ReportError(str(err)) from None
    choice = choose_kernel(kernel)
    nb_dir = notebooks_dir or default_notebooks_dir()
    names = SERVED_NOTEBOOKS if served else REPORT_NOTEBOOKS
    notebooks = [(name, read_notebook(nb_dir / f"{name}.py")) for name in names]
    heading = f"specviz report: {source.name}"
    combined = combine(notebooks, heading)
    combined.cells[0].source += f'\n\n<p class="specviz-note">{MEASURED_LINES[served]}</p>'
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
    executed = arrange(executed, published, unfinished, served)
    contents = [
        (ANSWER_ID, "Answer"),
        *([] if served else [(NUMBERS_ID, "The numbers")]),
        *[(section_id(name), notebook_title(nb, name)) for name, nb in notebooks],
    ]
    return write_page(out, notebook_to_html(executed, heading, contents))
