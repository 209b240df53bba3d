"""The runtime kit: what an actor runtime implements, and the parts every runtime shares.

A runtime author implements :class:`ActorRuntime` (actors, timers,
cluster-wide groups, cluster events) and builds on the pieces here instead of
writing them again: a timer scheduler, thread actors, group tables, and the
fault model (partitions, link faults, failure detection delay) that the test
clusters drive. ``TestRuntime``, ``PykkaRuntime`` and ``ThespianRuntime`` are
built this way, and the conformance suite in
:mod:`dstate_core.testing.conformance` checks any runtime against the contract
(``docs/architecture.md#runtimes``).
"""

from .._ratelimit import DropLog, RateLimitedLog
from ..model._errors import ActorSendError, NodeShutdownError
from ._faults import LinkModel, non_negative_seconds
from ._groups import LocalGroups
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
from ._scheduler import ScheduledTimer, SchedulerTimers, TimerScheduler
from ._threaded import ThreadedActor, ThreadedActorHost

__all__ = [
    "ActorAskTimeout",
    "ActorRef",
    "ActorRuntime",
    "ActorSendError",
    "ClusterEvent",
    "ClusterEvents",
    "DropLog",
    "Handler",
    "LinkModel",
    "LocalGroups",
    "NodeJoined",
    "NodeLeft",
    "NodeShutdownError",
    "PendingReply",
    "RateLimitedLog",
    "ScheduledTimer",
    "SchedulerTimers",
    "SubscriptionId",
    "ThreadedActor",
    "ThreadedActorHost",
    "TimerHandle",
    "TimerScheduler",
    "check_positive_seconds",
    "non_negative_seconds",
]
