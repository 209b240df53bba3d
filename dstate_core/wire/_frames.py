"""The frame schema: each message type's msgpack map, built and checked field by field.

:mod:`dstate_core.wire._codec` owns the frame around it (size cap, HMAC tag,
msgpack limits, the protocol version and type dispatch); this module owns
what each type's map holds. Message types (``"t"``) and their keys:

=========  =====================  ======================================
``"t"``    message                keys besides ``"v"`` and ``"t"``
=========  =====================  ======================================
``full``   ``FullSnapshot``       ``s n g w p c m``
``delta``  ``DeltaUpdate``        ``s n g w p c m``
``run``    ``DeltaRun``           ``s n g w c d``
``pull``   ``RequestSnapshot``    ``s n r``
``reply``  ``SnapshotReply``      ``r`` + the ``full`` keys of its snapshot
``feed``   ``BatchedChangeFeed``  ``n f``
=========  =====================  ======================================

Keys: ``s`` state_name, ``n`` source_node (str, 1..256 chars); ``g``
generation as ``[incarnation, age]``; ``w`` wire_version (int >= 1); ``p``
payload (msgpack bin); ``c``/``m`` created/modified time (int >= 0); ``r``
request_id (int >= 0); ``f`` a list of notifications, each
``[state_name, source_node, [incarnation, age]]``; ``d`` a non-empty list of
deltas, each ``[payload, modified_time]``, the first of generation ``g``. Integers must be real ints
(never bools) below 2**64. A map must hold exactly its type's keys.
"""

from __future__ import annotations

import enum
import reprlib
from collections.abc import Callable
from typing import Any, NoReturn

from ..model._errors import DStateError
from ..model._generation import Generation
from ._messages import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaRun,
    DeltaUpdate,
    FullSnapshot,
    Message,
    RequestSnapshot,
    SnapshotReply,
)

__all__ = [
    "DECODERS",
    "DETAIL_CHARS",
    "ENCODERS",
    "MAX_NAME_LENGTH",
    "PROTOCOL_VERSION",
    "DecodeReason",
    "WireDecodeError",
    "bad_field",
    "describe",
    "malformed",
]

#: The version written into (and required of) every frame.
PROTOCOL_VERSION: int = 1

#: The longest state name or node id (in characters) a frame may carry.
MAX_NAME_LENGTH: int = 256

MAX_UINT = 2**64 - 1
#: The longest error detail kept (peer input can be long).
DETAIL_CHARS = 300

_T_FULL = "full"
_T_DELTA = "delta"
_T_RUN = "run"
_T_PULL = "pull"
_T_REPLY = "reply"
_T_FEED = "feed"

_SNAPSHOT_KEYS = frozenset("vtsngwpcm")
_PULL_KEYS = frozenset("vtsnr")
_REPLY_KEYS = _SNAPSHOT_KEYS | {"r"}
_FEED_KEYS = frozenset("vtnf")
_RUN_KEYS = frozenset("vtsngwcd")

_FIELD_NAMES = {
    "v": "protocol version",
    "t": "message type",
    "s": "state_name",
    "n": "source_node",
    "g": "generation",
    "w": "wire_version",
    "p": "payload",
    "c": "created_time",
    "m": "modified_time",
    "r": "request_id",
    "f": "notifications",
    "d": "deltas",
}


class DecodeReason(enum.Enum):
    """Why a frame was rejected; adapters count and log rejections by reason."""

    #: Not msgpack, truncated, extra bytes, wrong shape or an invalid field.
    MALFORMED = "malformed"
    #: Larger than the codec's ``max_message_bytes``; not parsed at all.
    OVERSIZED = "oversized"
    #: A well-formed frame of a message type this code does not know.
    UNKNOWN_TYPE = "unknown_type"
    #: A frame written under another protocol version.
    UNKNOWN_PROTOCOL_VERSION = "unknown_protocol_version"
    #: Missing or wrong HMAC tag while a cluster secret is set.
    UNAUTHENTICATED = "unauthenticated"

    def __str__(self) -> str:
        return self.name


class WireDecodeError(DStateError):
    """Peer bytes could not be turned into a message (the peer's fault).

    Attributes:
        reason: the class of failure, for metrics.
        detail: what exactly was wrong, for the log.
        claimed_source: the ``source_node`` the frame names, if it parsed far
            enough to name one; unverified, for the log only.
    """

    def __init__(
        self, reason: DecodeReason, detail: str, claimed_source: str | None = None
    ) -> None:
        super().__init__(f"rejected wire message ({reason.value}): {detail}")
        self.reason = reason
        self.detail = detail
        self.claimed_source = claimed_source

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.detail, self.claimed_source))


def describe(value: object) -> str:
    """A short description of a peer's value for an error message (never raises)."""
    if isinstance(value, str | bytes | bytearray | list | dict) and len(value) > 60:
        return f"{type(value).__name__} of length {len(value)}"
    try:
        text = _SHORT.repr(value)
    except RecursionError:  # nesting too deep even for a bounded repr
        text = "(deeply nested)"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


#: Bounded reprs: a peer's value may be nested thousands of levels deep.
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxstring = _SHORT.maxother = 60


def malformed(detail: str) -> NoReturn:
    raise WireDecodeError(DecodeReason.MALFORMED, detail[:DETAIL_CHARS])


def bad_field(key: str, want: str, value: object) -> NoReturn:
    malformed(f"field {key!r} ({_FIELD_NAMES.get(key, key)}) must be {want}, got {describe(value)}")


# --- decoding helpers: each takes the raw value and returns it typed, or raises ---


def _name(value: object, key: str) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH:
        return value
    bad_field(key, f"a non-empty str of at most {MAX_NAME_LENGTH} chars", value)


def _uint(value: object, key: str, minimum: int = 0) -> int:
    if type(value) is int and value >= minimum:
        return value
    bad_field(key, f"an int >= {minimum}", value)


def _generation(value: object, key: str) -> Generation:
    if type(value) is list and len(value) == 2:
        try:
            return Generation(value[0], value[1])
        except ValueError as exc:
            malformed(f"field {key!r} (generation) is invalid: {exc}")
    bad_field(key, "a 2-element array [incarnation, age]", value)


def _snapshot_fields(d: dict[str, Any]) -> FullSnapshot:
    payload = d["p"]
    if type(payload) is not bytes:
        bad_field("p", "bytes (msgpack bin)", payload)
    return FullSnapshot(
        state_name=_name(d["s"], "s"),
        source_node=_name(d["n"], "n"),
        generation=_generation(d["g"], "g"),
        wire_version=_uint(d["w"], "w", 1),
        payload=payload,
        created_time=_uint(d["c"], "c"),
        modified_time=_uint(d["m"], "m"),
    )


def _check_keys(d: dict[str, Any], expected: frozenset[str], kind: str) -> None:
    if d.keys() != expected:
        keys = set(d)
        missing = sorted(expected - keys)
        extra = sorted(repr(k)[:40] for k in keys - expected)
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unknown keys [{', '.join(extra[:5])}]")
        malformed(f"{kind!r} frame has {' and '.join(parts)}")


def _decode_full(d: dict[str, Any]) -> Message:
    _check_keys(d, _SNAPSHOT_KEYS, _T_FULL)
    return _snapshot_fields(d)


def _decode_delta(d: dict[str, Any]) -> Message:
    _check_keys(d, _SNAPSHOT_KEYS, _T_DELTA)
    s = _snapshot_fields(d)
    return DeltaUpdate(
        state_name=s.state_name,
        source_node=s.source_node,
        generation=s.generation,
        wire_version=s.wire_version,
        payload=s.payload,
        created_time=s.created_time,
        modified_time=s.modified_time,
    )


def _decode_run(d: dict[str, Any]) -> Message:
    _check_keys(d, _RUN_KEYS, _T_RUN)
    raw = d["d"]
    if type(raw) is not list or not raw:
        bad_field("d", "a non-empty array of [payload, modified_time]", raw)
    deltas = []
    for index, item in enumerate(raw):
        if type(item) is not list or len(item) != 2 or type(item[0]) is not bytes:
            bad_field("d", f"[payload, modified_time] arrays (item {index})", item)
        deltas.append((item[0], _uint(item[1], "d")))
    generation = _generation(d["g"], "g")
    if generation.age + len(deltas) - 1 > MAX_UINT:
        malformed(f"the run's last age is over 2**64-1 (first {generation}, {len(deltas)} deltas)")
    return DeltaRun(
        state_name=_name(d["s"], "s"),
        source_node=_name(d["n"], "n"),
        generation=generation,
        wire_version=_uint(d["w"], "w", 1),
        created_time=_uint(d["c"], "c"),
        deltas=tuple(deltas),
    )


def _decode_pull(d: dict[str, Any]) -> Message:
    _check_keys(d, _PULL_KEYS, _T_PULL)
    return RequestSnapshot(
        state_name=_name(d["s"], "s"),
        source_node=_name(d["n"], "n"),
        request_id=_uint(d["r"], "r"),
    )


def _decode_reply(d: dict[str, Any]) -> Message:
    _check_keys(d, _REPLY_KEYS, _T_REPLY)
    return SnapshotReply(request_id=_uint(d["r"], "r"), snapshot=_snapshot_fields(d))


def _bad_notification(index: int, item: object) -> NoReturn:
    if type(item) is not list or len(item) != 3:
        bad_field("f", f"[state_name, source_node, generation] arrays (item {index})", item)
    try:
        _name(item[0], "f")
        _name(item[1], "f")
        _generation(item[2], "f")
    except WireDecodeError as exc:
        malformed(f"notification {index}: {exc.detail}")
    malformed(f"notification {index} is invalid")  # pragma: no cover - checks above agree


def _decode_feed(d: dict[str, Any]) -> Message:
    _check_keys(d, _FEED_KEYS, _T_FEED)
    source = _name(d["n"], "n")
    raw = d["f"]
    if type(raw) is not list:
        bad_field("f", "an array of notifications", raw)
    notes = []
    for item in raw:
        # Fast path with the checks inlined (feeds can be long); any failure
        # falls through to _bad_notification for a precise message.
        if type(item) is list and len(item) == 3:
            state, node, gen = item
            if (
                type(state) is str
                and 0 < len(state) <= MAX_NAME_LENGTH
                and type(node) is str
                and 0 < len(node) <= MAX_NAME_LENGTH
                and type(gen) is list
                and len(gen) == 2
            ):
                inc, age = gen
                if type(inc) is int and type(age) is int and inc >= 0 and age >= 0:
                    notes.append(ChangeNotification(state, node, Generation(inc, age)))
                    continue
        _bad_notification(len(notes), item)
    return BatchedChangeFeed(source_node=source, notifications=tuple(notes))


DECODERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    _T_FULL: _decode_full,
    _T_DELTA: _decode_delta,
    _T_RUN: _decode_run,
    _T_PULL: _decode_pull,
    _T_REPLY: _decode_reply,
    _T_FEED: _decode_feed,
}


# --- encoding helpers: the same rules, raising ValueError at the sender ---


def _need_name(value: object, what: str) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH:
        return value
    raise ValueError(
        f"{what} must be a non-empty str of at most {MAX_NAME_LENGTH} chars, got {describe(value)}"
    )


def _need_uint(value: object, what: str, minimum: int = 0) -> int:
    if type(value) is int and minimum <= value <= MAX_UINT:
        return value
    raise ValueError(f"{what} must be an int in [{minimum}, 2**64-1], got {describe(value)}")


def _need_generation(value: object, what: str) -> list[int]:
    if type(value) is not Generation:
        raise ValueError(f"{what} must be a Generation, got {describe(value)}")
    return [
        _need_uint(value.incarnation, f"{what}.incarnation"),
        _need_uint(value.age, f"{what}.age"),
    ]


def _snapshot_map(msg: FullSnapshot | DeltaUpdate, kind: str) -> dict[str, Any]:
    name = type(msg).__name__
    payload = msg.payload
    if not isinstance(payload, bytes | bytearray):
        raise ValueError(f"{name}.payload must be bytes, got {type(payload).__name__}")
    return {
        "v": PROTOCOL_VERSION,
        "t": kind,
        "s": _need_name(msg.state_name, f"{name}.state_name"),
        "n": _need_name(msg.source_node, f"{name}.source_node"),
        "g": _need_generation(msg.generation, f"{name}.generation"),
        "w": _need_uint(msg.wire_version, f"{name}.wire_version", 1),
        "p": payload,
        "c": _need_uint(msg.created_time, f"{name}.created_time"),
        "m": _need_uint(msg.modified_time, f"{name}.modified_time"),
    }


def _encode_full(msg: Any) -> dict[str, Any]:
    return _snapshot_map(msg, _T_FULL)


def _encode_delta(msg: Any) -> dict[str, Any]:
    return _snapshot_map(msg, _T_DELTA)


def _encode_run(msg: Any) -> dict[str, Any]:
    deltas = msg.deltas
    if not isinstance(deltas, tuple | list) or not deltas:
        raise ValueError(f"DeltaRun.deltas must be a non-empty tuple, got {describe(deltas)}")
    items = []
    for i, item in enumerate(deltas):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(
                f"DeltaRun.deltas[{i}] must be (payload, modified_time), got {describe(item)}"
            )
        payload, modified = item
        if not isinstance(payload, bytes | bytearray):
            raise ValueError(f"DeltaRun.deltas[{i}] payload must be bytes, got {describe(payload)}")
        items.append([payload, _need_uint(modified, f"DeltaRun.deltas[{i}] modified_time")])
    generation = _need_generation(msg.generation, "DeltaRun.generation")
    if generation[1] + len(items) - 1 > MAX_UINT:
        raise ValueError("DeltaRun's last age would be over 2**64-1")
    return {
        "v": PROTOCOL_VERSION,
        "t": _T_RUN,
        "s": _need_name(msg.state_name, "DeltaRun.state_name"),
        "n": _need_name(msg.source_node, "DeltaRun.source_node"),
        "g": generation,
        "w": _need_uint(msg.wire_version, "DeltaRun.wire_version", 1),
        "c": _need_uint(msg.created_time, "DeltaRun.created_time"),
        "d": items,
    }


def _encode_pull(msg: Any) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "t": _T_PULL,
        "s": _need_name(msg.state_name, "RequestSnapshot.state_name"),
        "n": _need_name(msg.source_node, "RequestSnapshot.source_node"),
        "r": _need_uint(msg.request_id, "RequestSnapshot.request_id"),
    }


def _encode_reply(msg: Any) -> dict[str, Any]:
    snap = msg.snapshot
    if type(snap) is not FullSnapshot:
        raise ValueError(f"SnapshotReply.snapshot must be a FullSnapshot, got {describe(snap)}")
    d = _snapshot_map(snap, _T_REPLY)
    d["r"] = _need_uint(msg.request_id, "SnapshotReply.request_id")
    return d


def _encode_feed(msg: Any) -> dict[str, Any]:
    notes = msg.notifications
    if not isinstance(notes, tuple | list):
        raise ValueError(
            f"BatchedChangeFeed.notifications must be a tuple, got {type(notes).__name__}"
        )
    items = []
    for i, note in enumerate(notes):
        if type(note) is not ChangeNotification:
            raise ValueError(
                f"BatchedChangeFeed.notifications[{i}] must be a ChangeNotification, "
                f"got {describe(note)}"
            )
        what = f"BatchedChangeFeed.notifications[{i}]"
        items.append(
            [
                _need_name(note.state_name, f"{what}.state_name"),
                _need_name(note.source_node, f"{what}.source_node"),
                _need_generation(note.generation, f"{what}.generation"),
            ]
        )
    return {
        "v": PROTOCOL_VERSION,
        "t": _T_FEED,
        "n": _need_name(msg.source_node, "BatchedChangeFeed.source_node"),
        "f": items,
    }


ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    FullSnapshot: _encode_full,
    DeltaUpdate: _encode_delta,
    DeltaRun: _encode_run,
    RequestSnapshot: _encode_pull,
    SnapshotReply: _encode_reply,
    BatchedChangeFeed: _encode_feed,
}
