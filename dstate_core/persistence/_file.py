"""A file-per-state persistence backend and the record codec it shares (SPEC §6).

Record format (all integers big-endian)::

    offset  size  field
    0       4     magic: b"DSTS" state record, b"DSTD" delta record, b"DSTI" incarnation
    4       1     format version (1)
    5       3     reserved, zero
    8       8     payload length n
    16      n     payload: msgpack
    16+n    4     CRC-32 of bytes [0, 16+n)

A state record's payload is the map ``{"name", "storage_version", "generation":
[incarnation, age], "created_time", "modified_time", "state"}`` where ``state``
is the model's ``to_storage()`` dict. A record that is shorter or longer than
its header says, has another magic or format version, or fails the checksum is
refused with :class:`PersistError`; it is never loaded.

:class:`FilePersistence` keeps one such record per file. ``save`` writes a
temporary file in the same directory, fsyncs it, renames it over the record
with ``os.replace`` and fsyncs the directory, so a crash at any point leaves
either the old record or the new one. Temporary files left by a crash are
never read and are removed by :meth:`FilePersistence.check_writable` and by the
first save.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model._errors import ForeignRecordError, PersistError
from ..model._generation import Generation, StateObject
from ..model._msgpack import pack, unpack

if TYPE_CHECKING:
    from ..model._state import DistributedState

__all__ = ["RECORD_FORMAT_VERSION", "FilePersistence"]

#: The record format this code writes and reads.
RECORD_FORMAT_VERSION = 1

STATE_MAGIC = b"DSTS"
DELTA_MAGIC = b"DSTD"
INCARNATION_MAGIC = b"DSTI"

_HEADER = struct.Struct(">4sB3xQ")
_TRAILER = struct.Struct(">I")
_FRAME_OVERHEAD = _HEADER.size + _TRAILER.size
_TEMP_SUFFIX = ".tmp"
_temp_counter = itertools.count()

PathArg = str | os.PathLike[str]


# --- record codec -----------------------------------------------------------------


def encode_frame(magic: bytes, payload: Any, where: str) -> bytes:
    """Frame ``payload`` as msgpack with a header and a CRC-32 trailer.

    Raises:
        PersistError: the payload holds a value msgpack cannot encode.
    """
    try:
        body = pack(payload)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PersistError(f"{where}: cannot encode the record: {exc}") from exc
    head = _HEADER.pack(magic, RECORD_FORMAT_VERSION, len(body))
    crc = zlib.crc32(body, zlib.crc32(head))
    return b"".join((head, body, _TRAILER.pack(crc)))


def decode_frame(data: bytes, magic: bytes, where: str) -> Any:
    """Check a framed record and return its decoded payload.

    Raises:
        PersistError: truncated, trailing bytes, wrong magic or format version,
            checksum mismatch, or undecodable payload.
    """
    if len(data) < _FRAME_OVERHEAD:
        raise PersistError(
            f"{where}: truncated record ({len(data)} bytes, a record has at least "
            f"{_FRAME_OVERHEAD})"
        )
    found_magic, version, length = _HEADER.unpack_from(data)
    if found_magic != magic:
        raise PersistError(
            f"{where}: not a dstate record (magic {found_magic!r}, expected {magic!r})"
        )
    if version != RECORD_FORMAT_VERSION:
        raise PersistError(
            f"{where}: record format version {version} is not supported "
            f"(this code reads version {RECORD_FORMAT_VERSION})"
        )
    expected = _FRAME_OVERHEAD + length
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "trailing bytes after the"
        raise PersistError(
            f"{where}: {kind} record ({len(data)} bytes, its header says {expected})"
        )
    end = _HEADER.size + length
    (stored_crc,) = _TRAILER.unpack_from(data, end)
    if zlib.crc32(memoryview(data)[:end]) != stored_crc:
        raise PersistError(f"{where}: checksum mismatch, the record is corrupt")
    try:
        return unpack(data[_HEADER.size : end])
    except Exception as exc:
        raise PersistError(f"{where}: undecodable record payload: {exc}") from exc


def state_name_of(value: Any) -> str | None:
    """The ``NAME`` of a state model, or ``None`` for a plain dict."""
    name = getattr(type(value), "NAME", None)
    return name if isinstance(name, str) else None


def storage_dict_of(value: Any, where: str) -> dict[str, Any]:
    """The plain dict to persist for a state model (or an already plain dict).

    Raises:
        PersistError: ``to_storage()`` failed or did not return a mapping.
    """
    if isinstance(value, Mapping):
        return dict(value)
    to_storage = getattr(value, "to_storage", None)
    if not callable(to_storage):
        raise PersistError(
            f"{where}: cannot persist a {type(value).__qualname__}: it has no to_storage()"
        )
    try:
        data = to_storage()
    except Exception as exc:
        raise PersistError(
            f"{where}: {type(value).__qualname__}.to_storage() failed: {exc}"
        ) from exc
    if not isinstance(data, Mapping):
        raise PersistError(
            f"{where}: {type(value).__qualname__}.to_storage() returned a "
            f"{type(data).__qualname__}, expected a dict"
        )
    return dict(data)


def plain_delta(delta: Any) -> Any:
    """A state delta in plain form: ``model_dump()`` of a pydantic model, else as is."""
    dump = getattr(delta, "model_dump", None)
    if callable(dump):
        return dump()
    return dict(delta) if isinstance(delta, Mapping) else delta


def state_payload(name: str, state: StateObject[Any], data: dict[str, Any]) -> dict[str, Any]:
    """The payload of a state record."""
    return {
        "name": name,
        "storage_version": state.storage_version,
        "generation": [state.generation.incarnation, state.generation.age],
        "created_time": state.created_time,
        "modified_time": state.modified_time,
        "state": data,
    }


def _is_int(value: object, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def field_of(payload: Mapping[Any, Any], key: str, where: str) -> Any:
    """``payload[key]``, or a :class:`PersistError` naming the missing field."""
    if key not in payload:
        raise PersistError(f"{where}: malformed record, field {key!r} is missing")
    return payload[key]


def int_field(payload: Mapping[Any, Any], key: str, where: str, minimum: int = 0) -> int:
    """An integer field ``>= minimum`` of a record payload."""
    value = field_of(payload, key, where)
    if not _is_int(value, minimum):
        raise PersistError(f"{where}: malformed record, {key!r} is {value!r}")
    result: int = value
    return result


def generation_field(payload: Mapping[Any, Any], where: str) -> Generation:
    """The ``[incarnation, age]`` field of a record payload."""
    value = field_of(payload, "generation", where)
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(part) for part in value):
        raise PersistError(f"{where}: malformed record, 'generation' is {value!r}")
    return Generation(value[0], value[1])


def name_field(payload: Any, where: str) -> str:
    """The state name of a decoded record payload (which must be a map)."""
    if not isinstance(payload, dict):
        raise PersistError(f"{where}: malformed record, payload is a {type(payload).__name__}")
    name = field_of(payload, "name", where)
    if not isinstance(name, str) or not name:
        raise PersistError(f"{where}: malformed record, 'name' is {name!r}")
    return name


def parse_state_payload(payload: Any, where: str) -> tuple[str, StateObject[dict[str, Any]]]:
    """Validate a state record payload; return its state name and StateObject.

    Raises:
        PersistError: a field is missing or has the wrong type.
    """
    name = name_field(payload, where)
    data = field_of(payload, "state", where)
    if not isinstance(data, dict):
        raise PersistError(f"{where}: malformed record, 'state' is a {type(data).__name__}")
    return name, StateObject(
        generation=generation_field(payload, where),
        storage_version=int_field(payload, "storage_version", where, minimum=1),
        value=data,
        created_time=int_field(payload, "created_time", where),
        modified_time=int_field(payload, "modified_time", where),
    )


def check_record_name(found: str, expected: str | None, where: str) -> None:
    """Refuse a record of another state than the one a backend is bound to."""
    if expected is not None and found != expected:
        raise ForeignRecordError(
            f"{where}: the stored record belongs to state {found!r}, not {expected!r}; "
            "each state needs its own file or row"
        )


def name_of_binding(state: str | type[DistributedState]) -> str:
    """The state name to bind a backend to, from a name or a state class."""
    name = state if isinstance(state, str) else getattr(state, "NAME", None)
    if not isinstance(name, str) or not name:
        raise PersistError(f"cannot bind a persistence backend to {state!r}: it has no NAME")
    return name


# --- filesystem helpers -----------------------------------------------------------


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
        raise PersistError(
            f"{where}: directory {str(path.parent)!r} is not writable: {exc.strerror or exc}"
        ) from exc


def read_file(path: Path, where: str) -> bytes | None:
    """The bytes of ``path``, or ``None`` when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PersistError(f"{where}: cannot read {str(path)!r}: {exc.strerror or exc}") from exc


# --- the backend ------------------------------------------------------------------


class FilePersistence:
    """Stores one state's owned shard in one file, replaced atomically (SPEC §6).

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
