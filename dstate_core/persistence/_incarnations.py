"""The node's last incarnation, kept on disk across restarts (``docs/protocol.md#generations``).

An incarnation must be strictly greater than any this node used before, even
when the wall clock steps back between two runs of the process.
:class:`IncarnationFile` keeps the last one in a small file, replaced
atomically like a :class:`~dstate_core.persistence.FilePersistence`
record (magic ``b"DSTI"``, payload ``{"incarnation": n}``, CRC-32), and
:meth:`IncarnationFile.source` returns an
:class:`~dstate_core.model._generation.IncarnationSource` that starts from it and
stores every new value before handing it out.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..model._errors import PersistError
from ..model._generation import IncarnationSource
from ._atomic import (
    PathArg,
    atomic_write,
    check_location,
    probe_writable,
    read_file,
    remove_stale_temp_files,
)
from ._records import INCARNATION_MAGIC, decode_frame, encode_frame, int_field

__all__ = ["IncarnationFile", "PersistentIncarnationSource"]


class IncarnationFile:
    """A node's last incarnation in ``data_dir/filename``.

    Args:
        data_dir: an existing directory (the node's data directory).
        filename: the file's name in it.

    Raises:
        PersistError: ``data_dir`` does not exist or is not a directory (a
            stat-only check; :meth:`check_writable` probes a write).

    Concurrency: thread-safe within a process; one process per file.
    """

    def __init__(self, data_dir: PathArg, filename: str = "incarnation") -> None:
        if not filename or os.sep in filename or filename in (".", ".."):
            raise ValueError(
                f"IncarnationFile filename must be a plain file name, got {filename!r}"
            )
        self._path = Path(os.fspath(data_dir)) / filename
        self._where = f"IncarnationFile({str(self._path)!r})"
        self._lock = threading.Lock()
        check_location(self._path, self._where)

    @property
    def path(self) -> Path:
        """The file holding the last incarnation."""
        return self._path

    def check_writable(self) -> None:
        """Fail early when the file cannot be written; clear crash leftovers.

        Raises:
            PersistError: naming the path and the reason.
        """
        with self._lock:
            probe_writable(self._path, self._where)
            remove_stale_temp_files(self._path)

    def load(self) -> int | None:
        """The last stored incarnation, or ``None`` when none was stored.

        Raises:
            PersistError: the file is unreadable, truncated or corrupt.
        """
        with self._lock:
            data = read_file(self._path, self._where)
            if data is None:
                return None
            payload = decode_frame(data, INCARNATION_MAGIC, self._where)
            if not isinstance(payload, dict):
                raise PersistError(f"{self._where}: malformed record")
            return int_field(payload, "incarnation", self._where)

    def store(self, incarnation: int) -> None:
        """Durably record ``incarnation`` (temp file, fsync, rename, fsync directory).

        Raises:
            PersistError: it was not stored.
            ValueError: not an int ``>= 0``.
        """
        if isinstance(incarnation, bool) or not isinstance(incarnation, int) or incarnation < 0:
            raise ValueError(f"an incarnation is an int >= 0, got {incarnation!r}")
        record = encode_frame(INCARNATION_MAGIC, {"incarnation": incarnation}, self._where)
        with self._lock:
            atomic_write(self._path, record, self._where)

    def source(self) -> PersistentIncarnationSource:
        """An :class:`IncarnationSource` starting above the stored value.

        Raises:
            PersistError: the stored value cannot be read.
        """
        return PersistentIncarnationSource(self)

    def __repr__(self) -> str:
        return f"IncarnationFile({str(self._path)!r})"


class PersistentIncarnationSource(IncarnationSource):
    """An :class:`IncarnationSource` whose values survive process restarts.

    :meth:`fresh` returns ``max(wall_ms, last + 1)`` where ``last`` includes
    every value stored by earlier runs, and stores the new value before
    returning it. :meth:`observe` stores a loaded incarnation that is higher
    than any stored one.

    Raises:
        PersistError: the file is unreadable or corrupt; the message names it
            and how to recover.

    Concurrency: thread-safe; ``fresh`` blocks for one atomic file write.
    """

    def __init__(self, store: IncarnationFile) -> None:
        try:
            stored = store.load()
        except PersistError as exc:
            raise PersistError(
                f"{exc}. The node cannot tell which incarnations it used before, so it "
                "will not start and risk repeating one: repair or restore the file, or "
                f"delete {str(store.path)!r} if this node's wall clock is past every earlier "
                "start (fresh incarnations then come from the clock and the persisted states)"
            ) from exc
        super().__init__(floor=stored or 0)
        self._store = store
        self._stored = stored or 0
        self._io_lock = threading.Lock()

    @property
    def store(self) -> IncarnationFile:
        """The file the values are kept in."""
        return self._store

    def fresh(self, wall_ms: int) -> int:
        """A new incarnation above every earlier one, stored before it is returned.

        Raises:
            PersistError: it could not be stored (the value is then not used,
                and the next call still moves past it).
        """
        with self._io_lock:
            value = super().fresh(wall_ms)
            self._store.store(value)
            self._stored = value
            return value

    def observe(self, incarnation: int) -> None:
        """Remember (and store, if higher) an incarnation used before.

        Raises:
            PersistError: a higher value could not be stored.
        """
        with self._io_lock:
            super().observe(incarnation)
            if incarnation > self._stored:
                self._store.store(incarnation)
                self._stored = incarnation
