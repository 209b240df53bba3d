"""The messages nodes exchange (``docs/protocol.md#messages``), as plain frozen dataclasses.

These are what the engine produces and consumes; :mod:`dstate_core.wire._codec`
turns them into bytes and back. Payloads are already-serialized state, view or
delta bytes, so the codec never touches user models.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model._generation import Generation

__all__ = [
    "BatchedChangeFeed",
    "ChangeNotification",
    "DeltaRun",
    "DeltaUpdate",
    "FullSnapshot",
    "Message",
    "RequestSnapshot",
    "SnapshotReply",
]


@dataclass(frozen=True, slots=True)
class FullSnapshot:
    """The owner's whole public state (simple) or view (delta-aware)."""

    state_name: str
    source_node: str
    generation: Generation
    wire_version: int
    payload: bytes
    created_time: int
    modified_time: int


@dataclass(frozen=True, slots=True)
class DeltaUpdate:
    """One mutation's delta; ``generation`` is the owner's generation after it."""

    state_name: str
    source_node: str
    generation: Generation
    wire_version: int
    payload: bytes
    created_time: int
    modified_time: int


@dataclass(frozen=True, slots=True)
class DeltaRun:
    """Consecutive deltas of one owner's shard in one frame (mutations committed together).

    ``generation`` is the owner's generation after the first delta; each later
    delta makes the next age of the same incarnation. ``deltas`` holds each
    delta's payload and modified time, in order.
    """

    state_name: str
    source_node: str
    generation: Generation
    wire_version: int
    created_time: int
    deltas: tuple[tuple[bytes, int], ...]

    def updates(self) -> list[DeltaUpdate]:
        """The run as the delta updates it stands for, in order."""
        incarnation, age = self.generation.incarnation, self.generation.age
        return [
            DeltaUpdate(
                self.state_name,
                self.source_node,
                Generation(incarnation, age + offset),
                self.wire_version,
                payload,
                self.created_time,
                modified_time,
            )
            for offset, (payload, modified_time) in enumerate(self.deltas)
        ]


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """A pull: ``source_node`` asks the receiver for its snapshot of ``state_name``."""

    state_name: str
    source_node: str
    request_id: int


@dataclass(frozen=True, slots=True)
class SnapshotReply:
    """The answer to :class:`RequestSnapshot` ``request_id``: a full snapshot."""

    request_id: int
    snapshot: FullSnapshot


@dataclass(frozen=True, slots=True)
class ChangeNotification:
    """``source_node``'s shard of ``state_name`` reached ``generation``."""

    state_name: str
    source_node: str
    generation: Generation


@dataclass(frozen=True, slots=True)
class BatchedChangeFeed:
    """One node's change-feed batch: the latest generation per changed state."""

    source_node: str
    notifications: tuple[ChangeNotification, ...]


Message = (
    FullSnapshot | DeltaUpdate | DeltaRun | RequestSnapshot | SnapshotReply | BatchedChangeFeed
)
