"""What a node process knows about its peers: who is up, and their group tables (SPEC §7, §8).

The gateway reports the peers it can reach (``(node, incarnation)`` pairs);
each peer sends its group table when it first sees this node and whenever the
table changes. A peer counts as *joined* once both are in: only then is
``NodeJoined`` emitted, so a handler reacting to it already finds the peer's
actors in :meth:`Directory.remote_members`.

Only a peer in the view may have a table here: one that arrives first is
refused (the runtime drops it), and the peer's table goes when it leaves the
view. So a node asks each peer new to its view for its table (see
:data:`~._protocol.WANT_GROUPS`): a table refused while this node did not yet
see its sender is sent again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

import msgpack

from dstate_core.runtime import ClusterEvent, NodeJoined, NodeLeft, SubscriptionId

__all__ = ["ClusterEventsView", "Directory", "decode_groups", "encode_groups"]

_log = logging.getLogger("dstate.thespian")

#: Caps on a peer's group table (it is peer input).
MAX_GROUPS = 10_000
MAX_NAME = 1_000


def encode_groups(groups: Mapping[str, Iterable[str]]) -> bytes:
    """A group table as msgpack ``{group: [actor names]}``."""
    return msgpack.packb({group: sorted(names) for group, names in groups.items()})


def decode_groups(data: bytes) -> dict[str, tuple[str, ...]]:
    """Parse a peer's group table.

    Raises:
        ValueError: not a well-formed table (malformed msgpack included).
    """
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"undecodable group table: {exc}") from None
    if not isinstance(raw, dict) or len(raw) > MAX_GROUPS:
        raise ValueError("a group table must be a map of at most 10000 groups")
    table: dict[str, tuple[str, ...]] = {}
    for group, names in raw.items():
        if not isinstance(group, str) or len(group) > MAX_NAME or not isinstance(names, list):
            raise ValueError(f"bad group entry {group!r}")
        if not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names):
            raise ValueError(f"bad actor names in group {group!r}")
        table[group] = tuple(names)
    return table


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
        self._state = threading.Condition(threading.Lock())
        self._events = threading.RLock()
        self._view: dict[str, str] = {}
        self._complete = False
        self._tables: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {}
        self._joined: dict[str, str] = {}
        self._callbacks: dict[int, Callable[[ClusterEvent], None]] = {}
        self._next_id = 1

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

    def subscribe(self, callback: Callable[[ClusterEvent], None]) -> SubscriptionId:
        """Replay ``NodeJoined`` for every joined peer to ``callback``, then report changes."""
        with self._events:
            with self._state:
                sid = self._next_id
                self._next_id += 1
                self._callbacks[sid] = callback
                joined = sorted(self._joined)
            for node in joined:
                _call(callback, NodeJoined(node), self._node_id)
        return SubscriptionId(sid)

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Forget a subscriber; unknown ids are ignored."""
        with self._state:
            self._callbacks.pop(subscription, None)

    def clear_subscribers(self) -> None:
        """Forget every subscriber (on shutdown)."""
        with self._state:
            self._callbacks.clear()

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
        if not events:
            return
        with self._state:
            callbacks = list(self._callbacks.values())
        for event in events:
            _log.info("node %r: %r", self._node_id, event)
            for callback in callbacks:
                _call(callback, event, self._node_id)


class ClusterEventsView:
    """A runtime's ``cluster_events``: subscriptions to its :class:`Directory`.

    Args:
        directory: where the events come from.
        check_open: raises :class:`NodeShutdownError` once the runtime is shut down.
    """

    def __init__(self, directory: Directory, check_open: Callable[[str], None]) -> None:
        self._directory = directory
        self._check_open = check_open

    def subscribe(self, callback: Callable[[ClusterEvent], None]) -> SubscriptionId:
        """Replay ``NodeJoined`` for every joined peer, then report changes.

        Concurrency: callbacks run on the runtime's receiver thread (the replay
        on the caller's) and must not block; a raising callback is logged.

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open("subscribe to cluster events")
        return self._directory.subscribe(callback)

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling the callback; unknown ids are ignored."""
        self._directory.unsubscribe(subscription)


def _call(callback: Callable[[ClusterEvent], None], event: ClusterEvent, node_id: str) -> None:
    try:
        callback(event)
    except Exception:
        _log.exception("cluster-event subscriber on node %r failed on %r", node_id, event)
