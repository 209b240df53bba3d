"""The wire codec: :mod:`dstate_core._messages` to bytes and back (SPEC §9).

Only this module knows the byte layout; it holds no state beyond its settings
and does no I/O, so one :class:`WireCodec` may be shared by every shard.

Frame layout::

    frame = body                              (no cluster secret)
    frame = body + HMAC-SHA256(secret, body)  (32-byte tag, with a secret)
    body  = msgpack map {"v": PROTOCOL_VERSION, "t": <type>, <fields>...}

Message types (``"t"``) and their field keys:

=========  =====================  ======================================
``"t"``    message                keys besides ``"v"`` and ``"t"``
=========  =====================  ======================================
``full``   ``FullSnapshot``       ``s n g w p c m``
``delta``  ``DeltaUpdate``        ``s n g w p c m``
``pull``   ``RequestSnapshot``    ``s n r``
``reply``  ``SnapshotReply``      ``r`` + the ``full`` keys of its snapshot
``feed``   ``BatchedChangeFeed``  ``n f``
=========  =====================  ======================================

Keys: ``s`` state_name, ``n`` source_node (str, 1..256 chars); ``g``
generation as ``[incarnation, age]``; ``w`` wire_version (int >= 1); ``p``
payload (msgpack bin); ``c``/``m`` created/modified time (int >= 0); ``r``
request_id (int >= 0); ``f`` a list of notifications, each
``[state_name, source_node, [incarnation, age]]``. Integers must be real ints
(never bools) below 2**64.

Decoding checks, in order: the size cap (before any parsing), the HMAC tag,
msgpack well-formedness under limits derived from the frame's size, the
protocol version, the message type, then the exact key set and every field.
Any failure raises :class:`WireDecodeError` and nothing else.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from typing import Any, NoReturn

import msgpack

from ._errors import DStateError
from ._generation import Generation
from ._messages import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaUpdate,
    FullSnapshot,
    Message,
    RequestSnapshot,
    SnapshotReply,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_NAME_LENGTH",
    "PROTOCOL_VERSION",
    "DecodeReason",
    "WireCodec",
    "WireDecodeError",
]

#: The version written into (and required of) every frame.
PROTOCOL_VERSION: int = 1

#: The default cap on a whole frame (body plus tag), in bytes.
DEFAULT_MAX_MESSAGE_BYTES: int = 4 * 1024 * 1024

#: The longest state name or node id (in characters) a frame may carry.
MAX_NAME_LENGTH: int = 256

_TAG_BYTES = 32
_DIGEST = "sha256"
_MAX_UINT = 2**64 - 1
# A name of MAX_NAME_LENGTH chars is at most 4 bytes per char in UTF-8.
_MAX_STR_BYTES = 4 * MAX_NAME_LENGTH
# The largest map in the layout has 10 keys; anything far bigger is hostile.
_MAX_MAP_LEN = 16
_DETAIL_CHARS = 300

_T_FULL = "full"
_T_DELTA = "delta"
_T_PULL = "pull"
_T_REPLY = "reply"
_T_FEED = "feed"

_SNAPSHOT_KEYS = frozenset("vtsngwpcm")
_PULL_KEYS = frozenset("vtsnr")
_REPLY_KEYS = _SNAPSHOT_KEYS | {"r"}
_FEED_KEYS = frozenset("vtnf")

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


def _describe(value: object) -> str:
    if isinstance(value, str | bytes | bytearray | list | dict) and len(value) > 60:
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _malformed(detail: str) -> NoReturn:
    raise WireDecodeError(DecodeReason.MALFORMED, detail[:_DETAIL_CHARS])


def _bad_field(key: str, want: str, value: object) -> NoReturn:
    _malformed(
        f"field {key!r} ({_FIELD_NAMES.get(key, key)}) must be {want}, got {_describe(value)}"
    )


# --- decoding helpers: each takes the raw value and returns it typed, or raises ---


def _name(value: object, key: str) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH:
        return value
    _bad_field(key, f"a non-empty str of at most {MAX_NAME_LENGTH} chars", value)


def _uint(value: object, key: str, minimum: int = 0) -> int:
    if type(value) is int and value >= minimum:
        return value
    _bad_field(key, f"an int >= {minimum}", value)


def _generation(value: object, key: str) -> Generation:
    if type(value) is list and len(value) == 2:
        try:
            return Generation(value[0], value[1])
        except ValueError as exc:
            _malformed(f"field {key!r} (generation) is invalid: {exc}")
    _bad_field(key, "a 2-element array [incarnation, age]", value)


def _snapshot_fields(d: dict[str, Any]) -> FullSnapshot:
    payload = d["p"]
    if type(payload) is not bytes:
        _bad_field("p", "bytes (msgpack bin)", payload)
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
        _malformed(f"{kind!r} frame has {' and '.join(parts)}")


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
        _bad_field("f", f"[state_name, source_node, generation] arrays (item {index})", item)
    try:
        _name(item[0], "f")
        _name(item[1], "f")
        _generation(item[2], "f")
    except WireDecodeError as exc:
        _malformed(f"notification {index}: {exc.detail}")
    _malformed(f"notification {index} is invalid")  # pragma: no cover - checks above agree


def _decode_feed(d: dict[str, Any]) -> Message:
    _check_keys(d, _FEED_KEYS, _T_FEED)
    source = _name(d["n"], "n")
    raw = d["f"]
    if type(raw) is not list:
        _bad_field("f", "an array of notifications", raw)
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


_DECODERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    _T_FULL: _decode_full,
    _T_DELTA: _decode_delta,
    _T_PULL: _decode_pull,
    _T_REPLY: _decode_reply,
    _T_FEED: _decode_feed,
}


# --- encoding helpers: the same rules, raising ValueError at the sender ---


def _need_name(value: object, what: str) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH:
        return value
    raise ValueError(
        f"{what} must be a non-empty str of at most {MAX_NAME_LENGTH} chars, got {_describe(value)}"
    )


def _need_uint(value: object, what: str, minimum: int = 0) -> int:
    if type(value) is int and minimum <= value <= _MAX_UINT:
        return value
    raise ValueError(f"{what} must be an int in [{minimum}, 2**64-1], got {_describe(value)}")


def _need_generation(value: object, what: str) -> list[int]:
    if type(value) is not Generation:
        raise ValueError(f"{what} must be a Generation, got {_describe(value)}")
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
        raise ValueError(f"SnapshotReply.snapshot must be a FullSnapshot, got {_describe(snap)}")
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
                f"got {_describe(note)}"
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


_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    FullSnapshot: _encode_full,
    DeltaUpdate: _encode_delta,
    RequestSnapshot: _encode_pull,
    SnapshotReply: _encode_reply,
    BatchedChangeFeed: _encode_feed,
}


def _payload_size(msg: object) -> int:
    """The payload length of a message, to refuse huge ones before packing."""
    if isinstance(msg, SnapshotReply):
        msg = msg.snapshot
    payload = getattr(msg, "payload", b"")
    return len(payload) if isinstance(payload, bytes | bytearray) else 0


def _claimed_source(data: object, tagged: bool) -> str | None:
    """The ``source_node`` a rejected frame names, if it names one (for the log only).

    With a secret the frame is tried without its tag, then whole (a sender without it).
    """
    try:
        whole = memoryview(data)  # type: ignore[arg-type]
    except Exception:  # not bytes-like, or a released memoryview
        return None
    for body in (whole[:-_TAG_BYTES], whole) if tagged else (whole,):
        try:
            obj = msgpack.unpackb(
                body,
                raw=False,
                max_str_len=_MAX_STR_BYTES,
                max_bin_len=body.nbytes,
                max_array_len=body.nbytes,
                max_map_len=_MAX_MAP_LEN,
                max_ext_len=0,
            )
        except Exception:
            continue
        claimed = obj.get("n") if type(obj) is dict else None
        if type(claimed) is str and 0 < len(claimed) <= MAX_NAME_LENGTH:
            return claimed
    return None


class WireCodec:
    """Turns messages into frames and frames back into messages (SPEC §9).

    Args:
        secret: the cluster secret; when set, every frame carries an
            HMAC-SHA256 tag and frames without a valid tag are rejected.
        max_message_bytes: the largest frame (body plus tag) either direction
            accepts.

    Raises:
        TypeError: ``secret`` is not bytes, or ``max_message_bytes`` not an int.
        ValueError: ``secret`` is empty, or ``max_message_bytes`` is not > 0.

    Concurrency: immutable after construction; safe to share between threads
    and mailboxes. Neither method blocks or does I/O.
    """

    __slots__ = ("_max", "_secret")

    def __init__(
        self, secret: bytes | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        if secret is not None:
            if isinstance(secret, str):
                raise TypeError("WireCodec secret must be bytes, not str; encode it first")
            if not isinstance(secret, bytes | bytearray):
                raise TypeError(f"WireCodec secret must be bytes, got {type(secret).__name__}")
            if not secret:
                raise ValueError("WireCodec secret must be non-empty (use None for no secret)")
            secret = bytes(secret)
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise TypeError(
                f"WireCodec max_message_bytes must be an int, got {_describe(max_message_bytes)}"
            )
        if max_message_bytes <= 0:
            raise ValueError(f"WireCodec max_message_bytes must be > 0, got {max_message_bytes}")
        self._secret = secret
        self._max = int(max_message_bytes)

    @property
    def authenticated(self) -> bool:
        """True when frames are signed and verified with a cluster secret."""
        return self._secret is not None

    @property
    def max_message_bytes(self) -> int:
        """The largest frame, in bytes, this codec encodes or decodes."""
        return self._max

    def __repr__(self) -> str:
        return f"WireCodec(authenticated={self.authenticated}, max_message_bytes={self._max})"

    def encode(self, msg: Message) -> bytes:
        """Serialize ``msg`` into one frame (signed when a secret is set).

        Raises:
            TypeError: ``msg`` is not one of the wire message types.
            ValueError: a field is invalid (wrong type or out of range), or the
                frame would exceed ``max_message_bytes``.
        """
        encoder = _ENCODERS.get(type(msg))
        if encoder is None:
            raise TypeError(
                f"cannot encode {type(msg).__qualname__}: expected one of "
                "FullSnapshot, DeltaUpdate, RequestSnapshot, SnapshotReply, BatchedChangeFeed"
            )
        payload_size = _payload_size(msg)
        if payload_size > self._max:
            self._too_big(msg, payload_size, "its payload alone is")
        try:
            body: bytes = msgpack.packb(encoder(msg), use_bin_type=True)
        except (UnicodeEncodeError, OverflowError, TypeError) as exc:
            raise ValueError(f"cannot encode {type(msg).__name__}: {exc}") from exc
        if self._secret is not None:
            body += hmac.digest(self._secret, body, _DIGEST)
        if len(body) > self._max:
            self._too_big(msg, len(body), "it encodes to")
        return body

    def _too_big(self, msg: object, size: int, what: str) -> NoReturn:
        where = ""
        inner = msg.snapshot if isinstance(msg, SnapshotReply) else msg
        state = getattr(inner, "state_name", None)
        if state is not None:
            where = f" of state {state!r}"
        raise ValueError(
            f"cannot send {type(msg).__name__}{where}: {what} {size} bytes, over the "
            f"{self._max}-byte max_message_bytes cap"
        )

    def decode(self, data: bytes) -> Message:
        """Parse and validate one frame from a peer.

        Accepts bytes, bytearray or memoryview; anything else is malformed.

        Raises:
            WireDecodeError: for any input that is not a valid frame; never
                any other exception.
        """
        try:
            return self._decode(data)
        except WireDecodeError as exc:
            if exc.reason is not DecodeReason.OVERSIZED:
                exc.claimed_source = _claimed_source(data, self._secret is not None)
            raise
        except Exception as exc:  # defensive: peer input must never raise anything else
            raise WireDecodeError(
                DecodeReason.MALFORMED,
                f"{type(exc).__name__}: {exc}"[:_DETAIL_CHARS],
                _claimed_source(data, self._secret is not None),
            ) from exc

    def _decode(self, data: object) -> Message:
        if isinstance(data, bytes | bytearray):
            size = len(data)
        elif isinstance(data, memoryview):
            size = data.nbytes
            if size <= self._max:
                data = data.tobytes()
        else:
            _malformed(f"expected bytes, got {type(data).__name__}")
        if size > self._max:
            raise WireDecodeError(
                DecodeReason.OVERSIZED,
                f"frame is {size} bytes, over the {self._max}-byte max_message_bytes cap",
            )
        body: Any = data
        if self._secret is not None:
            if size <= _TAG_BYTES:
                raise WireDecodeError(
                    DecodeReason.UNAUTHENTICATED,
                    f"frame of {size} bytes is too short to carry a {_TAG_BYTES}-byte HMAC tag",
                )
            view = memoryview(body)
            body = view[:-_TAG_BYTES]
            expected = hmac.digest(self._secret, body, _DIGEST)
            if not hmac.compare_digest(expected, view[-_TAG_BYTES:]):
                raise WireDecodeError(
                    DecodeReason.UNAUTHENTICATED, "HMAC tag does not match the cluster secret"
                )
        try:
            obj = msgpack.unpackb(
                body,
                raw=False,
                strict_map_key=True,
                max_str_len=_MAX_STR_BYTES,
                max_bin_len=size,
                max_array_len=size,
                max_map_len=_MAX_MAP_LEN,
                max_ext_len=0,
            )
        except Exception as exc:
            _malformed(f"not a valid msgpack frame: {type(exc).__name__}: {exc}")
        if type(obj) is not dict:
            _malformed(f"frame must be a msgpack map, got {type(obj).__name__}")
        if "v" not in obj:
            _malformed("frame has no protocol version key 'v'")
        version = obj["v"]
        if type(version) is not int:
            _bad_field("v", "an int", version)
        if version != PROTOCOL_VERSION:
            raise WireDecodeError(
                DecodeReason.UNKNOWN_PROTOCOL_VERSION,
                f"frame is protocol version {version}; this node speaks {PROTOCOL_VERSION}",
            )
        if "t" not in obj:
            _malformed("frame has no message type key 't'")
        kind = obj["t"]
        if type(kind) is not str:
            _bad_field("t", "a str", kind)
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise WireDecodeError(
                DecodeReason.UNKNOWN_TYPE,
                f"unknown message type {kind[:40]!r} (known: {', '.join(_DECODERS)})",
            )
        return decoder(obj)
