"""Output paths: checked for writability before any work, and locked while a process writes them.

``check_out_dir`` and ``check_out_file`` refuse, before a model is loaded or a kernel started, an
output that is a file where a directory is needed (or the reverse), that lies under a file, or
whose nearest existing folder cannot be written (probed by creating and removing a temporary file
there, so a read-only file system is caught too). Nothing is created.

``locked`` takes an advisory ``fcntl.flock`` on ``DIR/.specviz.lock`` (created on demand and left
in place): a second process asking for the same lock is refused at once with a one-line message,
and a lock held by a process that crashed (even ``kill -9``) is released by the kernel. Studies
take it shared per shard (see :mod:`specviz.study.run`), runs exclusively. Without ``fcntl`` (not
POSIX) nothing is locked. Lock files never count as content of a directory (:func:`entries`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from specviz.errors import SpecvizError

LOCK_FILE = ".specviz.lock"


class OutPathError(SpecvizError):
    """An output path cannot be written (a file, under a file, read-only) or is in use."""


def is_lock_file(path: Path) -> bool:
    return path.name.startswith(".specviz") and path.name.endswith(".lock")


def entries(directory: Path) -> list[Path]:
    """What a directory holds, lock files left out (an absent directory holds nothing)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if not is_lock_file(p))


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_creatable(path: Path, flag: str) -> None:
    """``path`` does not exist yet or is a directory: its nearest existing folder must be writable."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutPathError(
            f"{flag} {path} lies under {existing}, which is a file: pass a path in a directory"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".specviz-probe-", dir=existing)
    except OSError as err:
        raise OutPathError(
            f"{flag} {path}: cannot write in {existing} ({err.strerror or err}): "
            "pass a path you can write to"
        ) from err
    os.close(handle)
    os.unlink(probe)


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """Refuse an output directory that cannot be created or written; create nothing."""
    if path.exists() and not path.is_dir():
        raise OutPathError(f"{flag} {path} is a file, not a directory: pass a directory")
    _check_creatable(path, flag)


def check_out_file(path: Path, flag: str = "--out") -> None:
    """Refuse an output file that is a directory, or whose folder cannot be written."""
    if path.is_dir():
        raise OutPathError(f"{flag} {path} is a directory: pass a file name, e.g. out.html")
    _check_creatable(path.parent, flag)


@contextlib.contextmanager
def locked(directory: Path, name: str = LOCK_FILE, *, shared: bool = False) -> Iterator[None]:
    """Hold ``directory/name`` (exclusive, or ``shared``) or raise OutPathError at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / name).open("a") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise OutPathError(
                f"{directory} is in use by another specviz process (it holds "
                f"{directory / name}): wait for it to finish, or pass another --out"
            ) from err
        try:
            yield
        except BaseException:
            if created and not entries(directory):  # failed before writing: leave no empty dir
                (directory / name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
