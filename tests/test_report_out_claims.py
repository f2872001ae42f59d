"""Claims about ``specviz report A B --out FILE`` (the comparison of two studies): a file specviz
did not write is refused before any study is read, and left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from refusals import assert_one_line_refusal, cli
from report_fixtures import SyntheticRun, write_run


def _no_load(*args: object) -> None:
    raise AssertionError("a study was read before --out was checked")


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_run(tmp_path / "a", SyntheticRun("pl", "prompt-lookup", "coding", ("coding",), 2)),
        write_run(tmp_path / "b", SyntheticRun("sx", "suffix", "coding", ("coding",), 2)),
    )


def test_a_comparison_refuses_a_file_specviz_did_not_write_before_reading_a_study(
    two_runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import specviz.report.compare as compare

    monkeypatch.setattr(compare, "load_runs", _no_load)
    precious = tmp_path / "P.html"
    precious.write_text("precious\n")
    a, b = two_runs
    status, err = cli(capsys, "report", str(a), str(b), "--out", str(precious), "--quiet")
    assert_one_line_refusal(status, err, "exists and specviz did not write it: pass --force")
    assert precious.read_text() == "precious\n"


def test_a_comparison_into_a_directory_is_refused_naming_it(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs
    status, err = cli(capsys, "report", str(a), str(b), "--out", str(tmp_path), "--quiet")
    assert_one_line_refusal(status, err, "is a directory")
