"""A file-per-state persistence backend.

:class:`FilePersistence` keeps one record (:mod:`~._records`) per file. ``save``
writes a temporary file in the same directory, fsyncs it, renames it over the
record with ``os.replace`` and fsyncs the directory (:mod:`~._atomic`), so a
crash at any point leaves either the old record or the new one. Temporary
files left by a crash are never read and are removed by
:meth:`FilePersistence.check_writable` and by the first save.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model._errors import PersistError
from ..model._generation import StateObject
from ._atomic import (
    PathArg,
    atomic_write,
    check_location,
    probe_writable,
    read_file,
    remove_stale_temp_files,
)
from ._records import (
    STATE_MAGIC,
    check_record_name,
    decode_frame,
    encode_frame,
    name_of_binding,
    parse_state_payload,
    state_name_of,
    state_payload,
    storage_dict_of,
)

if TYPE_CHECKING:
    from ..model._state import DistributedState

__all__ = ["FilePersistence"]


class FilePersistence:
    """Stores one state's owned shard in one file, replaced atomically (``docs/persistence.md``).

    Args:
        path: the record file; its directory must exist.
        state_name: the state this file belongs to. ``None`` binds the backend
            to the first state it saves or loads; a record of another ``NAME``
            is then refused with :class:`PersistError`.

    Raises:
        PersistError: the directory is missing or ``path`` is a directory. This
            stat-only check is all the constructor does; the write probe is
            :meth:`check_writable`, which the node calls at registration.

    Concurrency: thread-safe; a save blocks its caller (the shard's mailbox)
    for a write and two fsyncs. One writer per file: two nodes must not share it.
    """

    def __init__(self, path: PathArg, state_name: str | None = None) -> None:
        self._path = Path(os.fspath(path))
        self._where = f"FilePersistence({str(self._path)!r})"
        self._name = None if state_name is None else name_of_binding(state_name)
        self._lock = threading.Lock()
        self._cleaned = False
        check_location(self._path, self._where)

    @property
    def path(self) -> Path:
        """The record file."""
        return self._path

    @property
    def state_name(self) -> str | None:
        """The state this backend is bound to, if known yet."""
        return self._name

    def bind(self, state: str | type[DistributedState]) -> None:
        """Bind to a state (a name or a state class); the node calls it at registration.

        Raises:
            PersistError: already bound to another state.
        """
        name = name_of_binding(state)
        with self._lock:
            if self._name is not None and self._name != name:
                raise PersistError(
                    f"{self._where} is bound to state {self._name!r} and cannot also store "
                    f"{name!r}; give each state its own file"
                )
            self._name = name

    def check_writable(self) -> None:
        """Fail early when the record cannot be written, and clear crash leftovers.

        Creates, fsyncs and deletes a probe file in the record's directory.

        Raises:
            PersistError: naming the path and the reason (missing directory, not
                a directory, permission denied, read-only file system...).
        """
        with self._lock:
            probe_writable(self._path, self._where)
            remove_stale_temp_files(self._path)
            self._cleaned = True

    def save(self, state: StateObject[Any], state_delta: Any) -> None:
        """Atomically replace the record with ``state`` (``state_delta`` is not used).

        Raises:
            PersistError: the record was not replaced (or, rarely, replaced but
                its directory could not be fsynced); the message names the path.
        """
        name = state_name_of(state.value)
        data = storage_dict_of(state.value, self._where)
        with self._lock:
            if name is None:
                name = self._name
                if name is None:
                    raise PersistError(
                        f"{self._where}: cannot tell which state a plain dict belongs to; "
                        "pass state_name="
                    )
            if self._name is not None and name != self._name:
                raise PersistError(
                    f"{self._where} is bound to state {self._name!r} and cannot store state "
                    f"{name!r}; give each state its own file"
                )
            record = encode_frame(STATE_MAGIC, state_payload(name, state, data), self._where)
            if not self._cleaned:
                remove_stale_temp_files(self._path)
                self._cleaned = True
            atomic_write(self._path, record, self._where)
            self._name = name

    def load(self) -> StateObject[dict[str, Any]] | None:
        """The stored state with its ``value`` as a plain dict, or ``None`` if none.

        ``storage_version`` is returned as stored; migrating or refusing a newer
        one is the state type's job (``from_storage``).

        Raises:
            PersistError: the record is unreadable, truncated, corrupt or
                belongs to another state.
        """
        with self._lock:
            data = read_file(self._path, self._where)
            if data is None:
                return None
            payload = decode_frame(data, STATE_MAGIC, self._where)
            name, state = parse_state_payload(payload, self._where)
            check_record_name(name, self._name, self._where)
            self._name = name
            return state

    def __repr__(self) -> str:
        return f"FilePersistence({str(self._path)!r}, state_name={self._name!r})"
