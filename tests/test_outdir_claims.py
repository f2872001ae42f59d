"""Claims about :mod:`specviz.rundir.outdir` itself (the output-path guards), each written for a mutant
``make mutation`` found surviving the end-to-end tests: the exact one-line messages (the flag,
the path the user gave, the cause, the remedy), the default flag and ``force``, the probe made
in the nearest existing folder, the first MiB read to recognise specviz's own file, a socket
named as such, and missing folders created on write.

A folder nobody can write, not even root (these tests run as root in CI), is ``/proc``: creating
a file there fails with ENOENT."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import pytest

from specviz.rundir import (
    OutPathError,
    check_out_dir,
    check_out_file,
    disk_error,
    entries,
    write_out_file,
    writes_through,
)

needs_proc = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc, a folder nobody can write, is Linux's"
)
ENOENT = os.strerror(errno.ENOENT)


def refusal(call: object, *args: object, **options: object) -> str:
    """The message of the OutPathError ``call(*args, **options)`` raises."""
    with pytest.raises(OutPathError) as caught:
        call(*args, **options)  # type: ignore[operator]
    return str(caught.value)


# -- check_out_dir -----------------------------------------------------------------------------


@needs_proc
def test_an_output_directory_in_a_folder_nobody_can_write_is_refused_naming_flag_path_and_cause() -> (
    None
):
    assert refusal(check_out_dir, Path("/proc/specviz-out"), "--into") == (
        f"--into /proc/specviz-out: cannot write in /proc ({ENOENT}): pass a path you can write to"
    )


@needs_proc
def test_an_output_directory_is_named_by_the_out_flag_unless_told_otherwise() -> None:
    assert refusal(check_out_dir, Path("/proc/specviz-out")).startswith("--out /proc/specviz-out: ")


def test_an_output_directory_that_is_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    assert refusal(check_out_dir, file) == (
        f"--out {file} is a file, not a directory: pass a directory"
    )


# -- check_out_file ----------------------------------------------------------------------------


def test_an_existing_file_specviz_did_not_write_is_refused_by_default(tmp_path: Path) -> None:
    precious = tmp_path / "P.html"
    precious.write_text("precious\n")
    assert refusal(check_out_file, precious) == (
        f"--out {precious} exists and specviz did not write it: pass --force to replace it, "
        "or another path"
    )
    check_out_file(precious, force=True)  # and accepted when forced


def test_an_output_file_that_is_a_directory_is_refused_naming_it(tmp_path: Path) -> None:
    assert refusal(check_out_file, tmp_path, "--html") == (
        f"--html {tmp_path} is a directory: pass a file name, e.g. out.html"
    )


def test_a_link_to_a_missing_file_is_refused_naming_the_link(tmp_path: Path) -> None:
    link = tmp_path / "out.html"
    link.symlink_to(tmp_path / "gone.html")
    assert refusal(check_out_file, link) == (
        f"--out {link} is a symbolic link to a missing file: pass the file's own path"
    )


@needs_proc
def test_a_new_output_file_in_a_folder_nobody_can_write_is_refused_naming_the_file_given() -> None:
    assert refusal(check_out_file, Path("/proc/specviz/out.html"), "--html") == (
        f"--html /proc/specviz/out.html: cannot write in /proc ({ENOENT}): "
        "pass a path you can write to"
    )


@needs_proc
def test_an_existing_empty_file_in_a_folder_nobody_can_write_is_refused_naming_it() -> None:
    # /proc/version is a regular file whose stat size is 0: empty, so not "someone else's"
    assert refusal(check_out_file, Path("/proc/version"), "--html") == (
        f"--html /proc/version: cannot write in /proc ({ENOENT}): pass a path you can write to"
    )


def test_a_character_device_that_cannot_be_written_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # root may write /dev/null whatever its mode: the refusal is reached through os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert refusal(check_out_file, Path("/dev/null"), "--html") == (
        "--html /dev/null cannot be written: pass a path you can write to"
    )


def test_a_socket_is_refused_as_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative name: a socket's path is limited to 108 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("s.sock")
        assert refusal(check_out_file, Path("s.sock"), force=True) == (
            "--out s.sock is a socket, not a file: pass a file name"
        )


def test_specviz_recognises_its_own_file_from_its_first_mib_only(tmp_path: Path) -> None:
    big = tmp_path / "big.html"
    big.write_bytes(b"a" * (3 << 20))
    seen: list[int] = []
    check_out_file(big, ours=lambda head: seen.append(len(head)) or True)
    assert seen == [1 << 20]


def test_a_missing_path_does_not_write_through() -> None:
    assert not writes_through(Path("/nonexistent/specviz/out.html"))
    assert writes_through(Path("/dev/null"))


# -- write_out_file, disk_error ----------------------------------------------------------------


def test_writing_an_output_file_creates_its_missing_folders(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out.html"
    write_out_file(out, "é")
    assert out.read_bytes() == "é".encode()


@needs_proc
def test_a_write_that_cannot_create_its_folder_names_the_out_flag_and_path() -> None:
    assert refusal(write_out_file, Path("/proc/specviz/out.html"), "x") == (
        f"cannot write --out /proc/specviz/out.html ({ENOENT}): check the path and the disk; "
        "nothing was replaced"
    )


@needs_proc
def test_a_write_that_fails_names_the_flag_and_path_given() -> None:
    assert refusal(write_out_file, Path("/proc/specviz-out.html"), "x", "--html") == (
        f"cannot write --html /proc/specviz-out.html ({ENOENT}): check the path and the disk; "
        "nothing was replaced"
    )


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.ENOSPC, "free some space, or pass a path on another disk"),
        (errno.EDQUOT, "free some space within your quota, or pass a path on another disk"),
        (errno.EFBIG, "a file-size limit (ulimit -f) stopped it: raise the limit"),
        (errno.EIO, "check the path and the disk"),
    ],
)
def test_a_failed_write_names_its_cause_and_the_remedy_for_it(code: int, hint: str) -> None:
    err = OSError(code, os.strerror(code))
    assert str(disk_error(err, "--out x.html")) == (
        f"cannot write --out x.html ({os.strerror(code)}): {hint}; nothing was replaced"
    )


def test_a_failed_write_without_an_errno_names_the_error_itself() -> None:
    assert str(disk_error(OSError("the disk went away"), "--out x.html")) == (
        "cannot write --out x.html (the disk went away): check the path and the disk; "
        "nothing was replaced"
    )


# -- entries -----------------------------------------------------------------------------------


def test_only_specviz_lock_files_are_left_out_of_a_directorys_entries(tmp_path: Path) -> None:
    for name in (".specviz.lock", ".specviz-shard-1.lock", "notes.lock", ".specviz-notes"):
        (tmp_path / name).write_text("")
    assert [p.name for p in entries(tmp_path)] == [".specviz-notes", "notes.lock"]
