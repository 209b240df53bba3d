"""The wire codec: :mod:`dstate_core.wire._messages` to bytes and back.

Only this module and :mod:`dstate_core.wire._frames` (what each message type's
map holds) know the byte layout; the codec holds no state beyond its
settings and does no I/O, so one :class:`WireCodec` may be shared by every
shard.

Frame layout::

    frame = body                              (no cluster secret)
    frame = body + HMAC-SHA256(secret, body)  (32-byte tag, with a secret)
    body  = msgpack map {"v": PROTOCOL_VERSION, "t": <type>, <fields>...}

Decoding checks, in order: the size cap (before any parsing), the HMAC tag,
msgpack well-formedness under limits derived from the frame's size, the
protocol version, the message type, then the exact key set and every field.
Any failure raises :class:`WireDecodeError` and nothing else.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

import msgpack

from ._frames import (
    DECODERS,
    DETAIL_CHARS,
    ENCODERS,
    MAX_NAME_LENGTH,
    PROTOCOL_VERSION,
    DecodeReason,
    WireDecodeError,
    bad_field,
    describe,
    malformed,
)
from ._messages import Message, SnapshotReply

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_NAME_LENGTH",
    "PROTOCOL_VERSION",
    "DecodeReason",
    "WireCodec",
    "WireDecodeError",
]

#: The default cap on a whole frame (body plus tag), in bytes.
DEFAULT_MAX_MESSAGE_BYTES: int = 4 * 1024 * 1024

_TAG_BYTES = 32
_DIGEST = "sha256"
# A name of MAX_NAME_LENGTH chars is at most 4 bytes per char in UTF-8.
_MAX_STR_BYTES = 4 * MAX_NAME_LENGTH
# The largest map in the layout has 10 keys; anything far bigger is hostile.
_MAX_MAP_LEN = 16


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
    """Turns messages into frames and frames back into messages (``docs/protocol.md#messages``).

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
                raise TypeError(
                    "cluster_secret must be bytes, e.g. secrets.token_bytes(32); got a str "
                    "(encode it: secret.encode())"
                )
            if not isinstance(secret, bytes | bytearray):
                raise TypeError(
                    "cluster_secret must be bytes, e.g. secrets.token_bytes(32); got "
                    f"{type(secret).__name__}"
                )
            if not secret:
                raise ValueError("cluster_secret must not be empty (pass None for no secret)")
            secret = bytes(secret)
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise TypeError(f"max_message_bytes must be an int, got {describe(max_message_bytes)}")
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be > 0, got {max_message_bytes}")
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
        encoder = ENCODERS.get(type(msg))
        if encoder is None:
            raise TypeError(
                f"cannot encode {type(msg).__qualname__}: expected one of "
                "FullSnapshot, DeltaUpdate, DeltaRun, RequestSnapshot, SnapshotReply, "
                "BatchedChangeFeed"
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
                f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS],
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
            malformed(f"expected bytes, got {type(data).__name__}")
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
            malformed(f"not a valid msgpack frame: {type(exc).__name__}: {exc}")
        if type(obj) is not dict:
            malformed(f"frame must be a msgpack map, got {type(obj).__name__}")
        if "v" not in obj:
            malformed("frame has no protocol version key 'v'")
        version = obj["v"]
        if type(version) is not int:
            bad_field("v", "an int", version)
        if version != PROTOCOL_VERSION:
            raise WireDecodeError(
                DecodeReason.UNKNOWN_PROTOCOL_VERSION,
                f"frame is protocol version {version}; this node speaks {PROTOCOL_VERSION}",
            )
        if "t" not in obj:
            malformed("frame has no message type key 't'")
        kind = obj["t"]
        if type(kind) is not str:
            bad_field("t", "a str", kind)
        decoder = DECODERS.get(kind)
        if decoder is None:
            raise WireDecodeError(
                DecodeReason.UNKNOWN_TYPE,
                f"unknown message type {kind[:40]!r} (known: {', '.join(DECODERS)})",
            )
        return decoder(obj)
