"""Helpers for tests that start a real server in a subprocess on a loopback port."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys


def die_with_parent() -> None:
    """In the server's process before it starts: the kernel kills it when this process dies
    (Linux ``PR_SET_PDEATHSIG``), so no server outlives a killed run."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
