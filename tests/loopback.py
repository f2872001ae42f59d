"""Helpers for tests that start a real server in a subprocess on a loopback port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(
    proc: subprocess.Popen, url: str, start_s: float, output: Callable[[], str]
) -> Iterator[str]:
    """``url`` once the server ``proc`` answers ``GET /health`` with 200 (the test fails with
    the server's ``output()`` if it exits first or takes over ``start_s`` seconds, when it is
    killed first); the server is stopped on leaving (terminated, killed if it lingers 20 s)."""
    try:
        deadline = time.monotonic() + start_s
        while True:
            assert proc.poll() is None, output()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                proc.kill()  # so that its output ends and can be read
                pytest.fail(f"the server did not start in {start_s:g} s: " + output()[-2000:])
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
