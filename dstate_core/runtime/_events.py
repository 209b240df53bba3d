"""Cluster-event subscribers, kept the same way by every runtime.

:class:`Subscribers` holds one node's callbacks and calls them; a callback
that raises is logged and never stops the others. :class:`ClusterEventsView`
is what a runtime's ``cluster_events`` property returns: it refuses new
subscriptions once the runtime is shut down and hands the rest to the
runtime's membership source (which replays ``NodeJoined`` for the current
members first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from .._logs import NodeLog
from ._protocol import ClusterEvent, SubscriptionId

__all__ = ["ClusterEventSource", "ClusterEventsView", "EventCallback", "Subscribers"]

#: A cluster-event subscriber.
EventCallback = Callable[[ClusterEvent], None]


class Subscribers:
    """One node's cluster-event callbacks.

    Args:
        node_id: the node (for log records).

    Concurrency: thread-safe; :meth:`emit` calls the callbacks on the calling
    thread, without a lock held, in subscription order.
    """

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._log = NodeLog("dstate.runtime", node_id)
        self._lock = threading.Lock()
        self._callbacks: dict[int, EventCallback] = {}
        self._next_id = 1

    def add(self, callback: EventCallback) -> SubscriptionId:
        """Register ``callback``; returns its id."""
        with self._lock:
            sid = self._next_id
            self._next_id += 1
            self._callbacks[sid] = callback
        return SubscriptionId(sid)

    def discard(self, subscription: SubscriptionId) -> None:
        """Forget a callback; unknown ids are ignored."""
        with self._lock:
            self._callbacks.pop(subscription, None)

    def clear(self) -> None:
        """Forget every callback (the runtime shut down)."""
        with self._lock:
            self._callbacks.clear()

    def emit(self, event: ClusterEvent) -> None:
        """Call every callback with ``event`` (one unsubscribed meanwhile is skipped)."""
        with self._lock:
            subscribed = list(self._callbacks.items())
        for sid, callback in subscribed:
            with self._lock:
                if sid not in self._callbacks:
                    continue
            self.call(callback, event)

    def call(self, callback: EventCallback, event: ClusterEvent) -> None:
        """Call one callback; an exception is logged, never raised."""
        try:
            callback(event)
        except Exception:
            self._log.exception("a cluster-event subscriber failed on %r", event)


class ClusterEventSource(Protocol):
    """Where a runtime's membership comes from."""

    def subscribe(self, callback: EventCallback) -> SubscriptionId:
        """Replay ``NodeJoined`` for every current peer to ``callback``, then report changes."""
        ...

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling a callback; unknown ids are ignored."""
        ...


class ClusterEventsView:
    """A runtime's ``cluster_events``.

    Args:
        source: the runtime's membership.
        check_open: raises :class:`~dstate_core.model.NodeShutdownError` once the
            runtime is shut down.
    """

    def __init__(self, source: ClusterEventSource, check_open: Callable[[str], None]) -> None:
        self._source = source
        self._check_open = check_open

    def subscribe(self, callback: EventCallback) -> SubscriptionId:
        """Replay ``NodeJoined`` for every current peer, then report changes.

        Concurrency: callbacks run on the thread that observed the change (the
        replay on the caller's) and must not block; a raising callback is logged.

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open("subscribe to cluster events")
        return self._source.subscribe(callback)

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling the callback; unknown ids are ignored."""
        self._source.unsubscribe(subscription)
