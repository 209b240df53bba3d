"""The runtime kit: what an actor runtime implements, and the parts every runtime shares.

A runtime author implements :class:`ActorRuntime` (actors, timers,
cluster-wide groups, cluster events) and builds on the pieces here instead of
writing them again:

* :class:`RuntimeBase`: the argument checks every runtime makes, once;
* :class:`TimerScheduler` / :class:`SchedulerTimers`: ``send_after`` and
  ``send_interval`` on one scheduler thread;
* :class:`ThreadedActor` / :class:`ThreadedActorHost` / :class:`ThreadedActorRef`:
  one thread and one FIFO mailbox per actor;
* :class:`LocalGroups`, :class:`Subscribers`, :class:`ClusterEventsView`: the
  node's own group members and its cluster-event subscribers;
* :class:`ParcelRuntime`, with :class:`RemoteTraffic`, :class:`Directory` and
  :class:`Parcel`: a runtime whose nodes live in separate processes, whatever
  transport carries their parcels;
* :class:`NodeLog`: a logger whose records name their node (and state, peer);
* :class:`FaultModel`: partitions, link faults and the failure-detection delay
  that the test clusters drive.

``TestRuntime``, ``PykkaRuntime`` and ``ThespianRuntime`` are built this way,
and the conformance suite in :mod:`dstate_core.testing.conformance` checks any
runtime against the contract (``docs/architecture.md#runtimes``).
"""

from .._logs import NodeLog
from .._ratelimit import DropLog, RateLimitedLog
from ..model._errors import ActorSendError, NodeShutdownError
from ._base import RuntimeBase
from ._directory import Directory
from ._events import ClusterEventSource, ClusterEventsView, EventCallback, Subscribers
from ._faults import FaultModel, non_negative_seconds
from ._groups import LocalGroups
from ._parcel_runtime import ParcelRuntime
from ._parcels import ALL_PEERS, WANT_GROUPS, Parcel, ParcelKind, decode_groups, encode_groups
from ._protocol import (
    ActorAskTimeout,
    ActorRef,
    ActorRuntime,
    ClusterEvent,
    ClusterEvents,
    Handler,
    NodeJoined,
    NodeLeft,
    PendingReply,
    SubscriptionId,
    TimerHandle,
    check_positive_seconds,
)
from ._remote import (
    GROUP_REPEATS,
    REMOTE_ASK_LIMIT,
    LocalActor,
    LocalActors,
    RemoteActorRef,
    RemoteAskError,
    RemoteTraffic,
)
from ._scheduler import ScheduledTimer, SchedulerTimers, TimerScheduler
from ._threaded import ActorOwner, ThreadedActor, ThreadedActorHost, ThreadedActorRef

__all__ = [
    "ALL_PEERS",
    "GROUP_REPEATS",
    "REMOTE_ASK_LIMIT",
    "WANT_GROUPS",
    "ActorAskTimeout",
    "ActorOwner",
    "ActorRef",
    "ActorRuntime",
    "ActorSendError",
    "ClusterEvent",
    "ClusterEventSource",
    "ClusterEvents",
    "ClusterEventsView",
    "Directory",
    "DropLog",
    "EventCallback",
    "FaultModel",
    "Handler",
    "LocalActor",
    "LocalActors",
    "LocalGroups",
    "NodeJoined",
    "NodeLeft",
    "NodeLog",
    "NodeShutdownError",
    "Parcel",
    "ParcelKind",
    "ParcelRuntime",
    "PendingReply",
    "RateLimitedLog",
    "RemoteActorRef",
    "RemoteAskError",
    "RemoteTraffic",
    "RuntimeBase",
    "ScheduledTimer",
    "SchedulerTimers",
    "Subscribers",
    "SubscriptionId",
    "ThreadedActor",
    "ThreadedActorHost",
    "ThreadedActorRef",
    "TimerHandle",
    "TimerScheduler",
    "check_positive_seconds",
    "decode_groups",
    "encode_groups",
    "non_negative_seconds",
]
