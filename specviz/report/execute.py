"""Execute one notebook with papermill, bounded in time, retried once after a stall.

Every notebook specviz executes (``specviz report``, the notebook tests) goes through
:func:`run_notebook`:

1. The parameters are checked against the notebook's ``parameters`` cell before any kernel
   starts (:func:`specviz.report.parameters.check_parameters`).
2. papermill runs in a worker thread under three bounds (:class:`ExecutionLimits`): the kernel
   start (``start_s``: the kernel must answer ``kernel_info`` and reach IOPub), each cell
   (``cell_s``: nbclient interrupts the cell and fails), and the whole notebook
   (``total_s``: wall clock from launching the kernel to its shutdown). The last one is what
   catches a lost request or reply (see :mod:`specviz.report.kernel`): nbclient alone would
   wait for it forever. When it expires the watchdog kills the kernel process; nbclient then
   sees a dead kernel within seconds and returns.
3. A stall (the notebook bound, or a kernel that did not start) is retried once with a fresh
   kernel, which also means fresh ports. A cell that raises or runs past ``cell_s`` is not
   retried: it would do the same again. Executing a notebook has no side effect besides its
   output file, and that is written to a temporary name and renamed at the end, so a retry
   never leaves half of an executed notebook behind.
4. Failures are :class:`NotebookTimeoutError` (naming the notebook, what timed out and the
   bound), a :class:`ReportError` for a kernel that died on its own while running a cell (not
   retried: out of memory, say, would recur), or papermill's own ``PapermillExecutionError``
   for a cell that raised.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from specviz.report.errors import ReportError
from specviz.report.kernel import KernelChoice
from specviz.report.parameters import check_parameters

#: how long to wait for papermill to return after the watchdog killed a stuck kernel
KILL_GRACE_S = 30.0


class NotebookTimeoutError(ReportError):
    """A notebook did not finish within its bounds; the message names what timed out."""


@dataclass(frozen=True)
class ExecutionLimits:
    """Time bounds of one notebook execution, in seconds; ``attempts`` counts the first try.

    ``cell_s``: the most one cell may run. ``start_s``: the kernel start, up to its first
    ``kernel_info`` reply. ``total_s``: the whole notebook, kernel start to shutdown.
    """

    cell_s: int = 600
    start_s: int = 60
    total_s: int = 1800
    attempts: int = 2

    def __post_init__(self) -> None:
        for name in ("cell_s", "start_s", "total_s", "attempts"):
            if getattr(self, name) < 1:
                raise ReportError(f"{name} must be at least 1 (got {getattr(self, name)})")


@dataclass
class _Watch:
    """What one execution is doing, for the watchdog and the timeout message."""

    name: str
    phase: str = "starting the kernel"
    kernel: AsyncKernelManager | None = None
    killed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def launched(self, manager: AsyncKernelManager) -> None:
        with self.lock:
            self.kernel = manager

    def started(self, **_: object) -> None:
        self.phase = "waiting for the first cell"

    def cell(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        first = first if len(first) <= 40 else first[:39] + "…"
        self.phase = f"waiting for the reply to cell {cell_index} ({first!r})"

    def cell_done(self, cell: nbformat.NotebookNode, cell_index: int, **_: object) -> None:
        self.phase = f"after cell {cell_index} (waiting for the kernel to finish)"

    def kill(self) -> None:
        with self.lock:
            process = getattr(getattr(self.kernel, "provisioner", None), "process", None)
            if process is not None and process.poll() is None:
                process.kill()
                self.killed = True


def _attempt(
    nb: nbformat.NotebookNode,
    output: Path,
    watch: _Watch,
    *,
    parameters: Mapping[str, object],
    kernel: KernelChoice,
    cwd: Path,
    limits: ExecutionLimits,
    progress: bool,
) -> nbformat.NotebookNode:
    """One papermill run in a worker thread; the notebook bound kills the kernel."""
    manager = type(
        kernel.manager.__name__, (kernel.manager,), {"on_launch": staticmethod(watch.launched)}
    )
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["nb"] = papermill.execute_notebook(
                nb,
                str(output),
                parameters=dict(parameters),
                kernel_name=kernel.name,
                kernel_manager_class=manager,
                progress_bar=progress,
                request_save_on_cell_execute=False,
                cwd=str(cwd),
                start_timeout=limits.start_s,
                execution_timeout=limits.cell_s,
                on_notebook_start=watch.started,
                on_cell_execute=watch.cell,
                on_cell_executed=watch.cell_done,
            )
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name=f"specviz-notebook-{watch.name}", daemon=True)
    worker.start()
    try:
        worker.join(limits.total_s)
    except BaseException:  # Ctrl-C: the kernel must not outlive us
        watch.kill()
        raise
    if worker.is_alive():
        phase = watch.phase
        watch.kill()
        worker.join(KILL_GRACE_S)
        raise NotebookTimeoutError(
            f"notebook {watch.name!r} did not finish within {limits.total_s} s (the notebook "
            f"bound) while {phase}; the kernel was "
            + ("killed" if watch.killed else "not started yet")
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["nb"]


def _stall(err: BaseException, name: str, limits: ExecutionLimits) -> NotebookTimeoutError | None:
    """The error to retry after, or None when retrying would not help."""
    if isinstance(err, NotebookTimeoutError):
        return err
    if isinstance(err, RuntimeError) and not isinstance(err, DeadKernelError):
        text = str(err)
        if "didn't respond" in text:
            return NotebookTimeoutError(
                f"notebook {name!r}: the kernel did not start within {limits.start_s} s "
                f"(the kernel start bound): {text}"
            )
        if "before replying to kernel_info" in text:  # e.g. a port taken by another process
            return NotebookTimeoutError(f"notebook {name!r}: the kernel died while starting")
    return None


def run_notebook(
    nb: nbformat.NotebookNode,
    output: Path,
    *,
    name: str,
    parameters: Mapping[str, object],
    kernel: KernelChoice,
    cwd: Path,
    limits: ExecutionLimits = ExecutionLimits(),
    progress: bool = False,
    on_retry: Callable[[NotebookTimeoutError], None] | None = None,
) -> nbformat.NotebookNode:
    """Execute ``nb`` with ``parameters`` and write it to ``output``; return the executed notebook.

    ``name`` names the notebook in messages. ``on_retry`` is told about each stall that is
    retried. Raises :class:`specviz.report.parameters.ParameterError` before starting a kernel,
    :class:`NotebookTimeoutError` when the last attempt stalls or a cell runs past
    ``limits.cell_s``, and papermill's ``PapermillExecutionError`` when a cell raises.
    """
    check_parameters(nb, parameters, name=name)
    output = Path(output)
    for attempt in range(1, limits.attempts + 1):
        partial = output.with_name(f".{output.stem}.{os.getpid()}-{attempt}.partial.ipynb")
        watch = _Watch(name)
        started = time.monotonic()
        try:
            executed = _attempt(
                nb,
                partial,
                watch,
                parameters=parameters,
                kernel=kernel,
                cwd=cwd,
                limits=limits,
                progress=progress,
            )
            os.replace(partial, output)  # papermill wrote it when the last cell finished
            return executed
        except CellTimeoutError:
            raise NotebookTimeoutError(
                f"notebook {name!r}: {watch.phase.replace('waiting for the reply to ', '')} "
                f"ran past {limits.cell_s} s (the cell bound)"
            ) from None
        except DeadKernelError:
            raise ReportError(
                f"notebook {name!r}: the kernel died while {watch.phase} (out of memory?)"
            ) from None
        except BaseException as err:
            stall = _stall(err, name, limits)
            if stall is None:
                raise
            if attempt == limits.attempts:
                raise NotebookTimeoutError(
                    f"{stall} (tried {attempt} time{'s' if attempt > 1 else ''}, "
                    f"{time.monotonic() - started:.0f} s the last); "
                    "raise the bound if the notebook is only slow"
                ) from None
            if on_retry is not None:
                on_retry(stall)
        finally:
            partial.unlink(missing_ok=True)
    raise AssertionError("unreachable: every attempt returns or raises")
