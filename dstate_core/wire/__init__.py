"""The wire: the bytes that cross nodes, and nothing about what they mean.

Message types (:class:`FullSnapshot`, :class:`DeltaUpdate`, :class:`DeltaRun`,
:class:`RequestSnapshot`, :class:`SnapshotReply`, :class:`BatchedChangeFeed`)
and the codec that turns them into versioned msgpack frames and back, with a
size cap, msgpack limits and an optional HMAC-SHA256 tag. Every decoding
failure is one :class:`WireDecodeError` with a :class:`DecodeReason`; what to
do with a decoded message is the engine's business.
"""

from ._codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    PROTOCOL_VERSION,
    DecodeReason,
    WireCodec,
    WireDecodeError,
)
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
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_NAME_LENGTH",
    "PROTOCOL_VERSION",
    "BatchedChangeFeed",
    "ChangeNotification",
    "DecodeReason",
    "DeltaRun",
    "DeltaUpdate",
    "FullSnapshot",
    "Message",
    "RequestSnapshot",
    "SnapshotReply",
    "WireCodec",
    "WireDecodeError",
]
