"""Which Jupyter kernel executes the report's notebooks.

``specviz`` is the kernel the Makefile registers inside the virtual environment
(``python -m ipykernel install --sys-prefix --name specviz``): its kernel.json holds the venv's
interpreter by absolute path, so papermill and JupyterLab run the notebooks there without
activating anything. When it is not registered (a plain ``pip install``), the report uses the
interpreter running specviz itself, through a kernel manager whose kernel spec is built on the
fly: the report never depends on what kernels happen to be installed.

Both talk to the kernel over TCP on the loopback interface (Jupyter's default). IPC sockets were
tried first: their file names are numbered per working directory, and kernels started one after
another in one directory could race for the same names, leaving papermill waiting forever on a
kernel that never received its request (seen intermittently in the test suite).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import CaselessStrEnum

from specviz.report.errors import ReportError

KERNEL_NAME = "specviz"
CURRENT_INTERPRETER = "specviz-current-python"


class LocalKernelManager(AsyncKernelManager):
    """A kernel manager that connects over TCP on 127.0.0.1."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="tcp", config=True)


class CurrentInterpreterKernelManager(LocalKernelManager):
    """A kernel manager that starts ipykernel with this process's Python, whatever its name."""

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python ({sys.executable})",
            language="python",
            resource_dir="",
        )


@dataclass(frozen=True)
class KernelChoice:
    name: str
    manager: type[AsyncKernelManager]

    @property
    def description(self) -> str:
        if self.manager is CurrentInterpreterKernelManager:
            return f"the current interpreter ({sys.executable})"
        return f"the registered kernel {self.name!r}"


def choose_kernel(requested: str | None = None) -> KernelChoice:
    """The kernel to use: ``requested`` (must exist), else ``specviz``, else this interpreter."""
    specs = KernelSpecManager().find_kernel_specs()
    if requested is not None:
        if requested not in specs:
            raise ReportError(
                f"no Jupyter kernel named {requested!r} (installed: {', '.join(sorted(specs))}); "
                f"register it with `python -m ipykernel install --sys-prefix --name {requested}` "
                "or leave the kernel unset to use the current interpreter"
            )
        return KernelChoice(requested, LocalKernelManager)
    if KERNEL_NAME in specs:
        return KernelChoice(KERNEL_NAME, LocalKernelManager)
    return KernelChoice(CURRENT_INTERPRETER, CurrentInterpreterKernelManager)
