"""Which Jupyter kernel executes the report's notebooks, and how it is started.

``specviz`` is the kernel the Makefile registers inside the virtual environment
(``python -m ipykernel install --sys-prefix --name specviz``): its kernel.json holds the venv's
interpreter by absolute path, so papermill and JupyterLab run the notebooks there without
activating anything. When it is not registered (a plain ``pip install``), the report uses the
interpreter running specviz itself, through a kernel manager whose kernel spec is built on the
fly: the report never depends on what kernels happen to be installed.

Transport. Both talk to the kernel over TCP on the loopback interface (Jupyter's default). IPC
sockets were tried first: their file names are numbered per working directory, and kernels
started one after another in one directory could race for the same names.

The TCP warning. ipykernel 7 logs "Kernel is running over TCP without encryption ..." at every
start. It does not apply here: the kernel binds 127.0.0.1 only (``ip`` is never changed), so
its traffic never leaves the machine, and every message is HMAC-signed with the key in a
connection file only this user can read, so another local user can neither inject requests nor
read loopback traffic without root. :class:`LocalKernelManager` therefore reads the kernel's own
stderr and relays every line to ours except that one (:func:`relay_kernel_stderr`): other
warnings and any crash output of the kernel still show. CurveZMQ encryption would also silence
it, but adds a key exchange to every start for no protection on loopback.

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

The hang itself did not recur (docs/reports.md says what was tried), so the fix covers every
cause above: :mod:`specviz.report.execute` bounds the kernel start, every cell and
the notebook as a whole, kills a kernel that overruns, and retries once with a fresh kernel and
fresh ports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import CaselessStrEnum

from specviz.report.errors import ReportError

KERNEL_NAME = "specviz"
CURRENT_INTERPRETER = "specviz-current-python"
LOOPBACK = "127.0.0.1"
#: ipykernel's warning for a kernel on TCP without CurveZMQ keys (moot on loopback, see above)
UNENCRYPTED_TCP_WARNING = b"Kernel is running over TCP without encryption"
#: where the kernel's stderr went before it was relayed: the file descriptor it inherited
STDERR_FD = 2


def relay_kernel_stderr(source: IO[bytes], fd: int) -> None:
    """Copy the kernel's stderr to ``fd`` line by line, except the unencrypted-TCP warning."""
    with source:
        for line in iter(source.readline, b""):
            if UNENCRYPTED_TCP_WARNING not in line:
                os.write(fd, line)


class LocalKernelManager(AsyncKernelManager):
    """A kernel manager that connects over TCP on 127.0.0.1 and relays the kernel's stderr.

    ``on_launch`` (a class attribute, set on a per-execution subclass by
    :mod:`specviz.report.execute`) is called with the manager once the kernel process exists,
    so a watchdog can kill a kernel that overruns its bound.
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="tcp", config=True)
    on_launch: ClassVar[Any] = None

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self.transport != "tcp" or self.ip != LOOPBACK:
            raise ReportError(f"the report's kernel must listen on tcp://{LOOPBACK}, not {self.ip}")
        kw.setdefault("stderr", subprocess.PIPE)
        await super()._async_launch_kernel(kernel_cmd, **kw)
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.stderr is not None:
            threading.Thread(
                target=relay_kernel_stderr,
                args=(process.stderr, STDERR_FD),
                name="specviz-kernel-stderr",
                daemon=True,
            ).start()
        if type(self).on_launch is not None:
            type(self).on_launch(self)


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
