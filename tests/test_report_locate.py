"""A notebook's default ``source`` finds the demo's results from JupyterLab's directory, or says
what to set and which run directories it can see."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import SyntheticRun, write_run

from specviz.report.errors import ReportError
from specviz.report.locate import DEMO_SOURCE, locate_source


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with ``notebooks/`` and the demo's ``runs/default`` (one run)."""
    (tmp_path / "notebooks").mkdir()
    write_run(
        tmp_path / DEMO_SOURCE / "runs" / "r", SyntheticRun("r", "none", "coding", ("coding",))
    )
    (tmp_path / DEMO_SOURCE / "study.json").write_text("{}")
    return tmp_path


def test_default_source_is_found_from_the_notebooks_directory(repo: Path) -> None:
    assert locate_source(DEMO_SOURCE, cwd=repo / "notebooks") == repo / DEMO_SOURCE


def test_a_source_relative_to_the_working_directory_wins(repo: Path) -> None:
    assert locate_source(DEMO_SOURCE, cwd=repo) == repo / DEMO_SOURCE


def test_a_missing_source_says_what_to_set_and_lists_the_runs_it_sees(repo: Path) -> None:
    with pytest.raises(ReportError) as err:
        locate_source("results/other", cwd=repo / "notebooks")
    message = str(err.value)
    assert "\n" not in message
    assert "set source in the parameters cell" in message
    assert str(repo / DEMO_SOURCE) in message


def test_without_any_run_the_message_says_so(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"make demo.*none under runs/ or results/"):
        locate_source(DEMO_SOURCE, cwd=tmp_path)
