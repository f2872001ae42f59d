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

Output files (``report``, ``export-specbench``) are written by :func:`write_out_file`: a regular
file is written to a temporary name beside it and renamed onto it (so a failure leaves the old
file whole); a character device or a pipe is written through (``/dev/null``, ``/dev/stdout``); a
symbolic link is followed and never replaced. :func:`check_out_file` refuses, before any work, an
existing non-empty file that specviz did not write (the caller recognises its own output) unless
``force``, and any other kind of node (block device, socket).

Temporary files are named ``.NAME.PID.tmp`` (:func:`tmp_name`): :func:`entries` does not count
them, and :func:`remove_leftovers` deletes those a crashed process left (call it under the lock).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from specviz.errors import SpecvizError

LOCK_FILE = ".specviz.lock"


class OutPathError(SpecvizError):
    """An output path cannot be written (a file, under a file, read-only) or is in use."""


def is_lock_file(path: Path) -> bool:
    return path.name.startswith(".specviz") and path.name.endswith(".lock")


_TMP_NAME = re.compile(r"^\..+\.[0-9]+\.(tmp|partial)$")


def tmp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process: shards sharing a study directory
    rewrite its manifest at the same time, and each renames only its own file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def is_tmp_file(path: Path) -> bool:
    """``path`` is a temporary file of specviz (:func:`tmp_name`, a report's ``.partial``)."""
    return bool(_TMP_NAME.match(path.name))


def remove_leftovers(directory: Path) -> list[Path]:
    """Delete the temporary files a crashed specviz process left in ``directory``; returns them.

    Only under the directory's exclusive lock: then no live process is writing one."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if is_tmp_file(p) and p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def entries(directory: Path) -> list[Path]:
    """What a directory holds, lock files and specviz's own temporary files left out (an
    absent directory holds nothing)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if not is_lock_file(p) and not is_tmp_file(p))


def disk_error(err: OSError, what: str) -> OutPathError:
    """The one-line error for a write that failed (disk full, file-size limit, ...)."""
    cause = err.strerror or str(err)
    hint = {
        errno.ENOSPC: "free some space, or pass a path on another disk",
        errno.EDQUOT: "free some space within your quota, or pass a path on another disk",
        errno.EFBIG: "a file-size limit (ulimit -f) stopped it: raise the limit",
    }.get(err.errno or 0, "check the path and the disk")
    return OutPathError(f"cannot write {what} ({cause}): {hint}; nothing was replaced")


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_creatable(path: Path, flag: str, named: Path | None = None) -> None:
    """``path`` does not exist yet or is a directory: its nearest existing folder must be
    writable. ``named``: the path the user gave, for the message (default ``path``)."""
    existing = _nearest_existing(path)
    shown = path if named is None else named
    if not existing.is_dir():
        raise OutPathError(
            f"{flag} {shown} lies under {existing}, which is a file: pass a path in a directory"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".specviz-probe-", dir=existing)
    except OSError as err:
        raise OutPathError(
            f"{flag} {shown}: cannot write in {existing} ({err.strerror or err}): "
            "pass a path you can write to"
        ) from err
    os.close(handle)
    os.unlink(probe)


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """Refuse an output directory that cannot be created or written; create nothing."""
    if path.exists() and not path.is_dir():
        raise OutPathError(f"{flag} {path} is a file, not a directory: pass a directory")
    _check_creatable(path, flag)


def _node_kind(mode: int) -> str:
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _writes_through(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)


def writes_through(path: Path) -> bool:
    """``path`` is (or links to) a character device or a pipe, written through, not replaced."""
    try:
        return _writes_through(path.stat())
    except OSError:
        return False


def _head(path: Path, size: int = 1 << 20) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def check_out_file(
    path: Path,
    flag: str = "--out",
    *,
    force: bool = False,
    ours: Callable[[bytes], bool] | None = None,
) -> None:
    """Refuse an output file that is a directory, a node other than a character device or pipe,
    an existing non-empty file that specviz did not write (``ours`` tells from the file's first
    MiB) unless ``force``, or whose folder cannot be written. Nothing is created."""
    if path.is_dir():
        raise OutPathError(f"{flag} {path} is a directory: pass a file name, e.g. out.html")
    try:
        st = path.stat()  # follows a symbolic link: what it points to is what is written
    except FileNotFoundError:
        if path.is_symlink():
            raise OutPathError(
                f"{flag} {path} is a symbolic link to a missing file: pass the file's own path"
            ) from None
        _check_creatable(path.parent, flag, path)
        return
    except NotADirectoryError:
        _check_creatable(path.parent, flag, path)  # names the file the path lies under
        return
    if _writes_through(st):
        if not os.access(path, os.W_OK):
            raise OutPathError(f"{flag} {path} cannot be written: pass a path you can write to")
        return
    if not stat.S_ISREG(st.st_mode):
        raise OutPathError(
            f"{flag} {path} is a {_node_kind(st.st_mode)}, not a file: pass a file name"
        )
    if st.st_size and not force and not (ours is not None and ours(_head(path))):
        raise OutPathError(
            f"{flag} {path} exists and specviz did not write it: pass --force to replace it, "
            "or another path"
        )
    _check_creatable(path.resolve().parent, flag, path)


def write_out_file(path: Path, text: str, flag: str = "--out") -> None:
    """Write ``text`` to ``path`` (checked by :func:`check_out_file`): through a character
    device or pipe, else atomically (a temporary file renamed onto it; a symbolic link stays a
    link and its target is replaced). A failed write raises OutPathError and changes nothing."""
    data = text.encode("utf-8")
    try:
        st: os.stat_result | None = path.stat()
    except OSError:
        st = None
    try:
        if st is not None and _writes_through(st):
            with path.open("wb") as handle:
                handle.write(data)
            return
        target = path.resolve() if path.is_symlink() else path
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise disk_error(err, f"{flag} {path}") from None
    atomic_write_bytes(target, data, f"{flag} {path}")


def atomic_write_bytes(path: Path, data: bytes, what: str | None = None) -> None:
    """``data`` to a temporary name beside ``path``, then renamed onto it. A failed write (disk
    full, file-size limit) removes the temporary file, leaves ``path`` as it was and raises
    OutPathError naming the cause and ``what`` (default: the path)."""
    tmp = tmp_name(path)
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise disk_error(err, what or str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


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
