"""Helpers for tests of refusals: ``specviz ARGS`` run in this process, and what a refusal of bad
input must be (exit status 2, one line naming the problem, no traceback)."""

from __future__ import annotations

import pytest

from specviz.cli import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``specviz ARGS`` in this process: (exit status, stderr)."""
    status = main(list(args))
    return status, capsys.readouterr().err


def assert_one_line_refusal(status: int, err: str, fragment: str) -> None:
    """Exit status 2 and a one-line stderr, no traceback, that contains ``fragment``."""
    assert status == 2, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
