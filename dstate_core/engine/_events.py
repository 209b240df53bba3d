"""What happens to a shard engine (past-tense facts, frozen).

The first event of every engine is :class:`StateLoaded`: the shell loads the
own shard (from its store, or fresh) and hands it over. Mutations are not
events: they return a value or raise, so the engine takes them through
:meth:`ShardEngine.mutate` and :meth:`ShardEngine.commit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model._generation import StateObject
from ..wire._messages import (
    ChangeNotification,
    DeltaRun,
    DeltaUpdate,
    FullSnapshot,
    RequestSnapshot,
    SnapshotReply,
)
from ._actions import TimerKey

__all__ = [
    "ChangeAnnounced",
    "Event",
    "MessageReceived",
    "PeerJoined",
    "PeerLeft",
    "QueryStarted",
    "StateLoaded",
    "TimerFired",
]


@dataclass(frozen=True, slots=True)
class StateLoaded:
    """The shell loaded the own shard (resumed from its store, or a fresh start)."""

    own: StateObject[Any]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decoded, authenticated message for this state arrived from a peer."""

    message: FullSnapshot | DeltaUpdate | DeltaRun | RequestSnapshot | SnapshotReply

    @property
    def source_node(self) -> str:
        """The node the message claims to come from."""
        message = self.message
        if isinstance(message, SnapshotReply):
            return message.snapshot.source_node
        return message.source_node


@dataclass(frozen=True, slots=True)
class ChangeAnnounced:
    """A peer's change feed announced a newer generation of its shard."""

    notification: ChangeNotification

    @property
    def source_node(self) -> str:
        """The node whose shard changed."""
        return self.notification.source_node


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """A node joined the cluster (or was there when the state was registered)."""

    node_id: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    """A node left the cluster (cleanly, or detected as failed)."""

    node_id: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    """Timer ``key`` started by a ``StartTimer`` action fired."""

    key: TimerKey


@dataclass(frozen=True, slots=True)
class QueryStarted:
    """A query found stale or pending views and wants them refreshed."""

    query_id: int
    max_staleness: float


Event = (
    StateLoaded
    | MessageReceived
    | ChangeAnnounced
    | PeerJoined
    | PeerLeft
    | TimerFired
    | QueryStarted
)
