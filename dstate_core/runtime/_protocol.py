"""The actor runtime port: what dstate needs from an actor framework.

The node and shard shells use only this protocol, so any framework that can
run one-message-at-a-time actors, timers and cluster-wide groups can host
dstate. Implementations: ``TestRuntime`` (deterministic, simulated network),
``PykkaRuntime`` (threads), ``ThespianRuntime`` (processes and hosts).

Contract details every implementation honours (the conformance suite in
:mod:`dstate_core.testing.conformance` checks them):

* An actor handles one message at a time, in the order sent by any one sender.
* ``handler(msg)``'s return value answers an ``ask``. If it returns a
  :class:`PendingReply`, the ask waits (within its timeout) until that reply is
  resolved. If the handler raises, the exception is logged, the actor keeps
  running, and an ``ask`` re-raises it in the caller.
* A message that crosses nodes must be ``bytes``; local messages may be any
  object.
* ``broadcast_group`` reaches the group's members on *other* nodes only.
* ``cluster_events.subscribe`` first replays a ``NodeJoined`` for every node
  already in the cluster (other than this one), then reports changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NewType, Protocol, runtime_checkable

from ..model._errors import ActorSendError, DStateError

__all__ = [
    "ActorAskTimeout",
    "ActorRef",
    "ActorRuntime",
    "ActorSendError",
    "ClusterEvent",
    "ClusterEvents",
    "Handler",
    "NodeJoined",
    "NodeLeft",
    "PendingReply",
    "SubscriptionId",
    "TimerHandle",
]

#: An actor's message handler; its return value answers an ``ask``.
Handler = Callable[[Any], Any]

#: Returned by ``ClusterEvents.subscribe``; pass it to ``unsubscribe``.
SubscriptionId = NewType("SubscriptionId", int)


class ActorAskTimeout(DStateError, TimeoutError):
    """An ``ask`` got no reply within its timeout."""


@dataclass(frozen=True, slots=True)
class NodeJoined:
    """A node joined the cluster (or was already in it when you subscribed)."""

    node_id: str


@dataclass(frozen=True, slots=True)
class NodeLeft:
    """A node left the cluster, cleanly or because it was detected as failed."""

    node_id: str


ClusterEvent = NodeJoined | NodeLeft

_UNSET: Any = object()


class PendingReply:
    """A reply a handler gives later: return it from the handler, resolve it afterwards.

    Concurrency: thread-safe; resolved once (later calls are ignored).
    """

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Any = _UNSET
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """True once :meth:`resolve` or :meth:`fail` was called."""
        return self._done.is_set()

    def resolve(self, value: Any) -> None:
        """Answer the waiting ``ask`` with ``value``."""
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def fail(self, error: BaseException) -> None:
        """Make the waiting ``ask`` raise ``error``."""
        if not self._done.is_set():
            self._error = error
            self._done.set()

    def result(self) -> Any:
        """The value, or raise the error (only once :attr:`done`)."""
        if not self._done.is_set():
            raise RuntimeError("PendingReply.result() called before it was resolved")
        if self._error is not None:
            raise self._error
        return self._value

    def wait(self, timeout: float | None) -> bool:
        """Block the calling thread until resolved; False on timeout."""
        return self._done.wait(timeout)


@runtime_checkable
class ActorRef(Protocol):
    """A handle to one actor, local or on another node."""

    @property
    def node_id(self) -> str:
        """The node that hosts the actor."""
        ...

    @property
    def name(self) -> str:
        """The name the actor was spawned with."""
        ...

    def send(self, msg: Any) -> None:
        """Fire and forget.

        Raises:
            ActorSendError: the actor is stopped.
            TypeError: a non-``bytes`` message to an actor on another node.
        """
        ...

    def ask(self, msg: Any, timeout: float) -> Any:
        """Send and wait for the handler's reply.

        Raises:
            ActorAskTimeout: no reply within ``timeout`` seconds.
            ActorSendError: the actor is stopped.
            Exception: whatever the handler raised.
        """
        ...

    def stop(self) -> None:
        """Stop the actor; idempotent. Queued messages are discarded."""
        ...


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled message that can be cancelled."""

    def cancel(self) -> None:
        """Stop the timer; idempotent."""
        ...


@runtime_checkable
class ClusterEvents(Protocol):
    """Cluster membership notifications."""

    def subscribe(self, callback: Callable[[ClusterEvent], None]) -> SubscriptionId:
        """Call ``callback`` for every current member (as ``NodeJoined``), then on changes."""
        ...

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling the callback; unknown ids are ignored."""
        ...


@runtime_checkable
class ActorRuntime(Protocol):
    """One node's actor system, joined to a cluster."""

    @property
    def node_id(self) -> str:
        """This node's id, unique in the cluster."""
        ...

    def spawn(self, name: str, handler: Handler) -> ActorRef:
        """Start an actor that runs ``handler`` for each message."""
        ...

    def send_interval(self, ref: ActorRef, seconds: float, msg: Any) -> TimerHandle:
        """Send ``msg`` to ``ref`` every ``seconds``, first after ``seconds``."""
        ...

    def send_after(self, ref: ActorRef, seconds: float, msg: Any) -> TimerHandle:
        """Send ``msg`` to ``ref`` once, after ``seconds``."""
        ...

    def join_group(self, name: str, ref: ActorRef) -> None:
        """Add a local actor to the cluster-wide group ``name``."""
        ...

    def leave_group(self, name: str, ref: ActorRef) -> None:
        """Remove a local actor from group ``name``; idempotent."""
        ...

    def broadcast_group(self, name: str, msg: Any) -> None:
        """Send ``msg`` (bytes) to every member of ``name`` on other nodes."""
        ...

    def group_members(self, name: str) -> list[ActorRef]:
        """Every member of group ``name`` across the cluster, this node's included."""
        ...

    @property
    def cluster_events(self) -> ClusterEvents:
        """Membership notifications for this node."""
        ...

    def shutdown(self) -> None:
        """Stop every actor and timer of this runtime and leave the cluster."""
        ...


def check_positive_seconds(what: str, seconds: object) -> float:
    """Validate a timer or timeout argument; returns it as a float."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ValueError(f"{what} must be a number of seconds > 0, got {seconds!r}")
    if seconds == float("inf"):
        raise ValueError(f"{what} must be finite, got {seconds!r}")
    return float(seconds)
