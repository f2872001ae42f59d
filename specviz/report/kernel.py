"""Which Jupyter kernel executes the report's notebooks, and how it is started.

``specviz`` is the kernel the Makefile registers inside the virtual environment
(``python -m ipykernel install --sys-prefix --name specviz``): its kernel.json holds the venv's
interpreter by absolute path, so papermill and JupyterLab run the notebooks there without
activating anything. When it is not registered (a plain ``pip install``), the report uses the
interpreter running specviz itself, through a kernel manager whose kernel spec is built on the
fly: the report never depends on what kernels happen to be installed.

Transport. Both talk to the kernel over IPC (Unix domain sockets) in a private directory made
for each kernel (``mkdtemp``, mode 0700, removed at shutdown). TCP on loopback was used before
and lost messages under load (below): its ports are picked by the client and bound later by the
kernel, so another process could take one in between or answer on it. A socket file in a
directory of its own cannot be taken or shared by any other kernel. (IPC had been tried before
with jupyter_client's default socket prefix, ``kernel-ipc`` in the working directory, where kernels
started one after another did race for the same names; the private directory removes that.)
ipykernel's "Kernel is running over TCP without encryption" warning is not printed either: it
concerns TCP only.

Why notebook execution could hang (issue #13), as far as it was found:

* The hung test ran papermill without ``execution_timeout``. nbclient then waits for each
  ``execute_reply`` with no deadline, and papermill's own ``kernel_info`` request after the last
  cell has no deadline either (papermill#711, #726). The only check left is "is the kernel
  process alive", and an idle kernel is alive: a lost request or a lost reply waits forever.
* The kernel start is already bounded (nbclient's ``startup_timeout``, 60 s: a
  ``kernel_info_reply`` and one IOPub message must arrive) and the observed kernel was started
  (five channels connected), so the hang came after the start, in the execute requests.
* Where a message goes missing: ipykernel 7 moved the shell channel into its own thread and,
  up to the fix in ipykernel#1529 (reported again as ipykernel#1554), sent shell replies raw on
  the ROUTER socket that a ZMQStream reads. A raw send consumes the socket's edge-triggered
  wake-up, so a request that lands during that send stays unread: the kernel sits idle at 0 %
  CPU and never replies; which cell hangs wanders from run to run, and it is timing-dependent,
  so more likely under load. The venv here has ipykernel 7.4.0, which carries that fix, but
  ``pyproject.toml`` allows any ipykernel >= 6.29, so a fresh clone can get a 7.x without it.
* A port picked then bound later: jupyter_client chooses free ports by binding port 0 and
  closing the socket; the kernel binds them a second later. Another process on the machine can
  take one in between. The kernel then fails to bind and dies (nbclient reports a dead kernel or
  "Kernel didn't respond"), or the client connects to the other process's socket, which drops
  our messages (wrong HMAC key): a lost request again. Seen here in 200 executions two at a time
  under CPU load: one kernel died with "Address already in use", and two kernels logged
  "Invalid Signature" for control messages that were not theirs.

It recurred once after the bounds landed, in a full test run while other engineers' test
runs started kernels on the same machine: papermill waited in ``execute_cell`` on an idle, connected
kernel until pytest-timeout stopped the test at 600 s. That is the port cross-talk above, and the
reason the transport is now IPC in a private directory. Beyond that, the fix covers every cause: :mod:`specviz.report.execute` bounds the kernel start, every cell and
the notebook as a whole, kills a kernel that overruns, and retries once with a fresh kernel and
fresh ports.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, ClassVar

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import CaselessStrEnum

from specviz.report.errors import ReportError

KERNEL_NAME = "specviz"
CURRENT_INTERPRETER = "specviz-current-python"
#: ipykernel's warning for a kernel on TCP without CurveZMQ keys (a report's kernel uses IPC)
UNENCRYPTED_TCP_WARNING = b"Kernel is running over TCP without encryption"
#: the prefix of a kernel's socket files inside its private directory (``<dir>/kernel-<n>``)
SOCKET_PREFIX = "kernel"


class LocalKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel listens on IPC sockets in a directory of its own.

    ``on_launch`` (a class attribute, set on a per-execution subclass by
    :mod:`specviz.report.execute`) is called with the manager once the kernel process exists,
    so a watchdog can kill a kernel that overruns its bound.
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    on_launch: ClassVar[Any] = None
    _socket_dir: str | None = None

    def _ip_default(self) -> str:
        """The socket-file prefix: in a fresh 0700 directory, so no other kernel can share it."""
        self._socket_dir = tempfile.mkdtemp(prefix="specviz-kernel-")
        return os.path.join(self._socket_dir, SOCKET_PREFIX)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self.transport != "ipc" or self._socket_dir is None:
            raise ReportError(
                f"the report's kernel must listen on IPC sockets in a private directory, "
                f"not {self.transport}://{self.ip}"
            )
        await super()._async_launch_kernel(kernel_cmd, **kw)
        if type(self).on_launch is not None:
            type(self).on_launch(self)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)


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
