"""What a node knows about its peers: who is reachable, and their group tables.

A distributed runtime's transport reports the peers it can reach now, as
``(node, incarnation)`` pairs (:meth:`Directory.apply_view`); each peer sends
its group table when it first sees this node and whenever the table changes
(:meth:`Directory.apply_groups`). A peer counts as *joined* once both are in:
only then is ``NodeJoined`` emitted, so a handler reacting to it already finds
the peer's actors in :meth:`Directory.remote_members`.

Only a peer in the view may have a table here: one that arrives first is
refused (the runtime drops it), and the peer's table goes when it leaves the
view. So a node asks each peer new to its view for its table (see
:data:`~._parcels.WANT_GROUPS`): a table refused while this node did not yet
see its sender is sent again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .._logs import NodeLog
from ._events import EventCallback, Subscribers
from ._protocol import ClusterEvent, NodeJoined, NodeLeft, SubscriptionId

__all__ = ["Directory"]


class Directory:
    """Peers, their incarnations and group tables, and the membership subscribers.

    Args:
        node_id: this node (never reported as a peer).

    Concurrency: thread-safe. Events are delivered one at a time, in order, on
    the thread that caused them (the runtime's receiver thread, or ``subscribe``
    for the replay), without the data lock held.
    """

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._log = NodeLog("dstate.runtime", node_id)
        self._state = threading.Condition(threading.Lock())
        self._events = threading.RLock()
        self._view: dict[str, str] = {}
        self._complete = False
        self._tables: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {}
        self._joined: dict[str, str] = {}
        self._subscribers = Subscribers(node_id)

    # -- inputs -----------------------------------------------------------------

    def apply_view(self, peers: Iterable[tuple[str, str]], complete: bool = True) -> list[str]:
        """The gateway's new view; emits what changed. Returns the peers new to the view.

        A peer that leaves the view loses its table, and gets ``NodeLeft`` even
        if its table never came (so never ``NodeJoined``): a subscriber may have
        seen it join elsewhere.
        ``complete`` is False while a member's gateway still waits for the leader's roster.
        """
        with self._events:
            with self._state:
                view = {node: inc for node, inc in peers if node != self._node_id}
                fresh = [n for n, inc in view.items() if self._view.get(n) != inc]
                gone = {n for n, inc in self._view.items() if view.get(n) != inc}
                self._view = view
                self._tables = {n: t for n, t in self._tables.items() if view.get(n) == t[0]}
                self._complete = complete
                events = self._settle(gone)
            self._emit(events)
        return fresh

    def apply_groups(self, node: str, inc: str, table: dict[str, tuple[str, ...]]) -> bool:
        """A peer's group table (the latest one wins).

        Returns:
            True if stored; False (nothing stored) unless ``node`` is a peer in
            the view in incarnation ``inc``.
        """
        if node == self._node_id:
            return False
        with self._events:
            with self._state:
                if self._view.get(node) != inc:
                    return False
                self._tables[node] = (inc, table)
                events = self._settle(set())
            self._emit(events)
        return True

    def subscribe(self, callback: EventCallback) -> SubscriptionId:
        """Replay ``NodeJoined`` for every joined peer to ``callback``, then report changes."""
        with self._events:
            sid = self._subscribers.add(callback)
            with self._state:
                joined = sorted(self._joined)
            for node in joined:
                self._subscribers.call(callback, NodeJoined(node))
        return sid

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Forget a subscriber; unknown ids are ignored."""
        self._subscribers.discard(subscription)

    def clear_subscribers(self) -> None:
        """Forget every subscriber (on shutdown)."""
        self._subscribers.clear()

    # -- queries ----------------------------------------------------------------

    def wait_settled(self, timeout: float, expect: Iterable[str] = ()) -> bool:
        """Block until the gateway's view is complete, holds ``expect``, and every peer in it
        has joined; False after ``timeout`` seconds."""
        want = set(expect)

        def settled() -> bool:
            view = set(self._view)
            return self._complete and want <= view and view <= set(self._joined)

        with self._state:
            return self._state.wait_for(settled, timeout)

    def joined(self) -> dict[str, str]:
        """Joined peers and their incarnations."""
        with self._state:
            return dict(self._joined)

    def reachable(self) -> list[str]:
        """Peers the gateway reports (joined or not yet), sorted."""
        with self._state:
            return sorted(self._view)

    def is_reachable(self, node: str, inc: str) -> bool:
        """True if the gateway reports ``node`` in incarnation ``inc`` (a cluster member now)."""
        with self._state:
            return self._view.get(node) == inc

    def remote_members(self, group: str) -> list[tuple[str, str]]:
        """``(node, actor name)`` of every joined peer's members of ``group``, sorted."""
        with self._state:
            return sorted(
                (node, name)
                for node, inc in self._joined.items()
                for name in self._tables[node][1].get(group, ())
            )

    # -- internals ----------------------------------------------------------------

    def _settle(self, gone: set[str]) -> list[ClusterEvent]:
        """Recompute the joined set (data lock held); the events that follow from it."""
        joined = {
            node: inc
            for node, inc in self._view.items()
            if node in self._tables and self._tables[node][0] == inc
        }
        events: list[ClusterEvent] = []
        for node in sorted(gone | set(self._joined)):
            if node in gone or joined.get(node) != self._joined[node]:
                events.append(NodeLeft(node))
        for node in sorted(joined):
            if self._joined.get(node) != joined[node]:
                events.append(NodeJoined(node))
        self._joined = joined
        self._state.notify_all()
        return events

    def _emit(self, events: list[ClusterEvent]) -> None:
        for event in events:
            self._log.info("%r", event, peer=event.node_id)
            self._subscribers.emit(event)
