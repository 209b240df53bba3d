"""The record format every shipped backend stores, and the checks on what it reads.

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
refused with :class:`~dstate_core.model.PersistError`; it is never loaded.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..model._errors import ForeignRecordError, PersistError
from ..model._generation import Generation, StateObject
from ..model._msgpack import pack, unpack

if TYPE_CHECKING:
    from ..model._state import DistributedState

__all__ = [
    "DELTA_MAGIC",
    "INCARNATION_MAGIC",
    "RECORD_FORMAT_VERSION",
    "STATE_MAGIC",
    "check_record_name",
    "decode_frame",
    "encode_frame",
    "field_of",
    "generation_field",
    "int_field",
    "name_field",
    "name_of_binding",
    "parse_state_payload",
    "plain_delta",
    "state_name_of",
    "state_payload",
    "storage_dict_of",
]

#: The record format this code writes and reads.
RECORD_FORMAT_VERSION = 1

STATE_MAGIC = b"DSTS"
DELTA_MAGIC = b"DSTD"
INCARNATION_MAGIC = b"DSTI"

_HEADER = struct.Struct(">4sB3xQ")
_TRAILER = struct.Struct(">I")
_FRAME_OVERHEAD = _HEADER.size + _TRAILER.size


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
