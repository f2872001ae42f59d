"""Hostile outputs (issue #23): nothing a user owns is overwritten, nothing finished is unmarked,
and faults (a full disk, a file-size limit, a closed pipe) end in one line with nothing
half-written. Real files, real device nodes made here, a real tmpfs, a real RLIMIT_FSIZE, real
pipes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from engine_helpers import run_cli
from report_fixtures import SyntheticRun, default_conditions, write_run, write_study

from specviz.cli import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``specviz ARGS`` in this process: (exit status, stderr)."""
    status = main(list(args))
    return status, capsys.readouterr().err


def assert_one_line_refusal(status: int, err: str, fragment: str) -> None:
    assert status == 2, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished synthetic run directory (schema of this version)."""
    return write_run(
        tmp_path / "run", SyntheticRun("pl", "prompt-lookup", "coding", ("coding",), 2)
    )


def _no_kernel(*args: object) -> None:
    raise AssertionError("a kernel was started")


# -- 1. output paths ---------------------------------------------------------------------------


def test_export_refuses_a_file_specviz_did_not_write_unless_forced(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "P"
    precious.write_text("precious\n")
    status, err = cli(capsys, "export-specbench", str(run_dir), "--out", str(precious))
    assert_one_line_refusal(status, err, "exists and specviz did not write it: pass --force")
    assert precious.read_text() == "precious\n"
    assert main(["export-specbench", str(run_dir), "--out", str(precious), "--force"]) == 0
    assert len(precious.read_text().splitlines()) == 2
    # its own export it replaces without --force
    assert main(["export-specbench", str(run_dir), "--out", str(precious)]) == 0


def test_report_refuses_a_file_specviz_did_not_write_before_a_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import specviz.report.builder as builder

    monkeypatch.setattr(builder, "choose_kernel", _no_kernel)
    study = write_study(tmp_path / "study", default_conditions())
    precious = tmp_path / "P"
    precious.write_text("precious\n")
    status, err = cli(capsys, "report", str(study), "--out", str(precious), "--quiet")
    assert_one_line_refusal(status, err, "exists and specviz did not write it: pass --force")
    assert precious.read_text() == "precious\n"


def test_a_report_specviz_wrote_is_recognised_as_its_own() -> None:
    from specviz.report.builder import is_specviz_report

    template = Path("specviz/report/templates/specviz/index.html.j2").read_text()
    assert '<meta name="generator" content="specviz ' in template
    assert is_specviz_report(b'<html><head><meta name="generator" content="specviz 0.1.0">')
    assert not is_specviz_report(b"precious\n")


def _mknod(path: Path, kind: int, major: int, minor: int) -> Path:
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("cannot make device nodes here (not root)")
    return path


def test_export_writes_through_a_character_device_and_keeps_the_node(
    run_dir: Path, tmp_path: Path
) -> None:
    null = _mknod(tmp_path / "N", stat.S_IFCHR, 1, 3)  # /dev/null's numbers
    assert main(["export-specbench", str(run_dir), "--out", str(null)]) == 0
    assert stat.S_ISCHR(null.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["N", "run"]  # no temporary left


def test_export_to_a_full_device_is_one_line_and_keeps_the_node(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _mknod(tmp_path / "F", stat.S_IFCHR, 1, 7)  # /dev/full's numbers
    status, err = cli(capsys, "export-specbench", str(run_dir), "--out", str(full))
    assert_one_line_refusal(status, err, "No space left on device")
    assert stat.S_ISCHR(full.stat().st_mode)


def test_export_refuses_a_block_device_node(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block = _mknod(tmp_path / "B", stat.S_IFBLK, 7, 0)
    status, err = cli(capsys, "export-specbench", str(run_dir), "--out", str(block), "--force")
    assert_one_line_refusal(status, err, "is a block device, not a file")
    assert stat.S_ISBLK(block.stat(follow_symlinks=False).st_mode)


def test_export_writes_through_a_pipe(run_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert main(["export-specbench", str(run_dir), "--out", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert len(received[0].decode().splitlines()) == 2


def test_export_through_a_link_to_stdout_writes_stdout_and_keeps_the_link(
    run_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "L"
    link.symlink_to("/proc/self/fd/1")
    result = run_cli("export-specbench", str(run_dir), "--out", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert result.stdout.count('"answer_id"') == 2


def test_export_through_a_link_replaces_the_target_not_the_link(
    run_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "answers.jsonl"
    assert main(["export-specbench", str(run_dir), "--out", str(target)]) == 0
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target.name)
    assert main(["export-specbench", str(run_dir), "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == target.name
    assert len(target.read_text().splitlines()) == 2
