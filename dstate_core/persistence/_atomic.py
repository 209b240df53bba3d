"""Files replaced atomically: write a temporary file, fsync it, rename it over, fsync the directory.

A crash at any point leaves either the old file or the new one. Temporary
files name their writer's pid, so one left by a crashed writer is recognised
and removed (never read).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

from ..model._errors import PersistError

__all__ = [
    "PathArg",
    "atomic_write",
    "check_location",
    "fsync_directory",
    "probe_writable",
    "read_file",
    "remove_stale_temp_files",
    "temp_path_for",
]

_TEMP_SUFFIX = ".tmp"
_temp_counter = itertools.count()

#: A path as users pass it.
PathArg = str | os.PathLike[str]


def check_location(path: Path, where: str) -> None:
    """Stat-only check: the parent directory exists and ``path`` is not a directory.

    Raises:
        PersistError: naming the path and the reason.
    """
    parent = path.parent
    try:
        if not parent.exists():
            raise PersistError(f"{where}: directory {str(parent)!r} does not exist")
        if not parent.is_dir():
            raise PersistError(f"{where}: {str(parent)!r} is not a directory")
        if path.is_dir():
            raise PersistError(f"{where}: {str(path)!r} is a directory, expected a file")
    except OSError as exc:
        raise PersistError(f"{where}: cannot access {str(path)!r}: {exc.strerror or exc}") from exc


def temp_path_for(path: Path) -> Path:
    """A fresh temporary file name beside ``path`` that records the writer's pid."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_temp_counter)}{_TEMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temp_files(path: Path) -> int:
    """Delete temporary files beside ``path`` left by a crashed writer.

    A file whose writer pid is another live process is kept; files of this
    process are removed, so call it only when this process has no save in flight
    for ``path``. Returns the number of files removed.
    """
    prefix = f".{path.name}."
    removed = 0
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    own = os.getpid()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and int(pid_text) != own and _pid_alive(int(pid_text)):
            continue
        try:
            os.unlink(path.parent / name)
            removed += 1
        except OSError:
            pass
    return removed


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk; a no-op on Windows."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: Path, data: bytes, where: str) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory.

    Raises:
        PersistError: naming the path; the old content is still in place unless
            only the final directory fsync failed.
    """
    temp = temp_path_for(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(temp, flags, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise PersistError(f"{where}: cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        fsync_directory(path.parent)
    except OSError as exc:
        raise PersistError(
            f"{where}: wrote {str(path)!r} but could not fsync its directory, the record "
            f"may not survive a power loss: {exc.strerror or exc}"
        ) from exc


def probe_writable(path: Path, where: str) -> None:
    """Create, fsync and delete a temporary file beside ``path``.

    Raises:
        PersistError: the directory cannot be written (naming path and reason).
    """
    check_location(path, where)
    temp = temp_path_for(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(temp, flags, 0o600)
        try:
            _write_all(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(temp)
    except OSError as exc:
        with contextlib.suppress(OSError):  # created but not written (say, ENOSPC)
            os.unlink(temp)
        raise PersistError(
            f"{where}: directory {str(path.parent)!r} is not writable: {exc.strerror or exc}; "
            "make it writable by this process (its owner and permissions, free space, or "
            "remount the file system read-write), or store the state in another directory"
        ) from exc


def read_file(path: Path, where: str) -> bytes | None:
    """The bytes of ``path``, or ``None`` when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PersistError(f"{where}: cannot read {str(path)!r}: {exc.strerror or exc}") from exc
