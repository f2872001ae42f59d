"""Executing notebooks back to back on a loaded machine never hangs (issue #13).

Two busy-loop processes keep the CPUs saturated while fresh kernels start and execute, one
after another: first a short notebook many times (every execution is a kernel start, a
``kernel_info`` handshake and a few execute requests, where messages went missing), then the
report's analysis notebooks on a synthetic study. Each execution runs under
:func:`specviz.report.execute.run_notebook`'s bounds, so a lost message would show up as a
retry (counted here) or a :class:`NotebookTimeoutError`, never as a hang.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jupytext
import nbformat
import pytest
from report_fixtures import default_conditions, isolate_jupyter, write_study

from specviz.report import read_published
from specviz.report.builder import REPORT_NOTEBOOKS, default_notebooks_dir
from specviz.report.execute import ExecutionLimits, NotebookTimeoutError, run_notebook
from specviz.report.kernel import choose_kernel
from specviz.report.parameters import declared_parameters

BURNERS = 2
SHORT_RUNS = 12
REPORT_ROUNDS = 1
# generous for a loaded 2-core machine, far below "forever"
LIMITS = ExecutionLimits(cell_s=120, start_s=45, total_s=120)

SHORT = ("import os\n", "total = sum(range(n))\n", "print(total, os.getpid())\n")


@pytest.fixture
def cpu_burners() -> Iterator[list[subprocess.Popen]]:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BURNERS)]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def short_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    params = nbformat.v4.new_code_cell("n = 10", metadata={"tags": ["parameters"]})
    nb.cells = [params, *(nbformat.v4.new_code_cell(source) for source in SHORT)]
    return nb


@pytest.mark.slow
def test_notebooks_run_back_to_back_under_cpu_load_without_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_burners: list[subprocess.Popen]
) -> None:
    isolate_jupyter(monkeypatch, tmp_path / "home")
    study = write_study(tmp_path / "study", default_conditions(categories=("coding", "writing")))
    kernel = choose_kernel()
    retries: list[NotebookTimeoutError] = []
    seconds: list[float] = []

    def execute(
        nb: nbformat.NotebookNode, name: str, **parameters: object
    ) -> nbformat.NotebookNode:
        start = time.monotonic()
        executed = run_notebook(
            nb,
            tmp_path / f"{name}-{len(seconds)}.ipynb",
            name=name,
            parameters=parameters,
            kernel=kernel,
            cwd=tmp_path,
            limits=LIMITS,
            on_retry=retries.append,
        )
        seconds.append(time.monotonic() - start)
        return executed

    kernels = set()
    for n in range(SHORT_RUNS):
        total, pid = execute(short_notebook(), "short", n=n).cells[-1].outputs[0]["text"].split()
        assert int(total) == sum(range(n))
        kernels.add(pid)
    assert len(kernels) == SHORT_RUNS  # a fresh kernel each time
    for _ in range(REPORT_ROUNDS):
        for name in REPORT_NOTEBOOKS:
            nb = jupytext.read(default_notebooks_dir() / f"{name}.py")
            parameters = {"source": str(study), "n_boot": 100}
            takes = {k: v for k, v in parameters.items() if k in declared_parameters(nb)}
            assert read_published(execute(nb, name, **takes))  # it published its numbers
    assert all(burner.poll() is None for burner in cpu_burners)  # the load lasted throughout
    assert len(seconds) == SHORT_RUNS + REPORT_ROUNDS * len(REPORT_NOTEBOOKS)
    print(
        f"{len(seconds)} executions under {BURNERS} CPU burners: total {sum(seconds):.1f} s, "
        f"slowest {max(seconds):.1f} s, retries {len(retries)}: {[str(r) for r in retries]}; "
        f"each: {' '.join(f'{s:.1f}' for s in seconds)}"
    )
