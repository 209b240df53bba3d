"""The sans-IO replication engine: events in, actions out.

A :class:`ShardEngine` holds one node's own shard of one state type and its
views of every peer's shard; a :class:`ChangeFeedAggregator` batches one
node's change notifications. Both are driven by events and method calls and
answer with actions for a shell to carry out; neither touches a socket, a
thread, a timer or a disk, and both read time only from the
:class:`~dstate_core.model.Clock` they are given. See ``docs/architecture.md``.
"""

from ._actions import (
    DELAYED_PUSH,
    FEED_FLUSH,
    PERIODIC_SYNC,
    Action,
    AnnounceChange,
    Broadcast,
    CancelTimer,
    DelayedPushTimer,
    FeedFlushTimer,
    FinishQuery,
    NotifyView,
    PeriodicSyncTimer,
    ProbeTimer,
    PullTimer,
    SaveState,
    SendTo,
    StartTimer,
    TimerKey,
)
from ._engine import Mutation, ShardEngine
from ._events import (
    ChangeAnnounced,
    Event,
    MessageReceived,
    PeerJoined,
    PeerLeft,
    QueryStarted,
    StateLoaded,
    TimerFired,
)
from ._feed import ChangeFeedAggregator

__all__ = [
    "DELAYED_PUSH",
    "FEED_FLUSH",
    "PERIODIC_SYNC",
    "Action",
    "AnnounceChange",
    "Broadcast",
    "CancelTimer",
    "ChangeAnnounced",
    "ChangeFeedAggregator",
    "DelayedPushTimer",
    "Event",
    "FeedFlushTimer",
    "FinishQuery",
    "MessageReceived",
    "Mutation",
    "NotifyView",
    "PeerJoined",
    "PeerLeft",
    "PeriodicSyncTimer",
    "ProbeTimer",
    "PullTimer",
    "QueryStarted",
    "SaveState",
    "SendTo",
    "ShardEngine",
    "StartTimer",
    "StateLoaded",
    "TimerFired",
    "TimerKey",
]
