"""Shared fixtures: tiny random models built once per test session, and an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import build_tiny_pair


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(target_dir, draft_dir): tiny random Qwen2 models with unequal vocabulary rows."""
    return build_tiny_pair(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pair: tuple[Path, Path]) -> Path:
    return tiny_pair[0]


@pytest.fixture(scope="session")
def tiny_draft_dir(tiny_pair: tuple[Path, Path]) -> Path:
    return tiny_pair[1]
