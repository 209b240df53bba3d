"""``PykkaNetwork``: an in-process cluster that several :class:`PykkaRuntime` s join.

It stands in for the wire between nodes: a cross-node message must be
``bytes`` and is delivered straight into the target actor's Pykka mailbox. It
tracks membership and tells each runtime's subscribers about ``NodeJoined`` /
``NodeLeft``, and it can simulate a clean leave, a crash (``NodeLeft`` only
after ``failure_timeout``), and partitions, through the runtime kit's
:class:`~dstate_core.runtime.FaultModel`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from dstate_core.runtime import (
    ClusterEvent,
    EventCallback,
    FaultModel,
    NodeJoined,
    NodeLeft,
    Subscribers,
    SubscriptionId,
)

__all__ = ["NetworkMember", "PykkaNetwork"]


class NetworkMember(Protocol):
    """A runtime on a :class:`PykkaNetwork` (a :class:`~._runtime.PykkaRuntime`)."""

    @property
    def node_id(self) -> str:
        """The node's id."""
        ...

    @property
    def subscribers(self) -> Subscribers:
        """The node's cluster-event subscribers."""
        ...

    def halt(self) -> bool:
        """Stop the node's actors and timers without a goodbye; False if already halted."""
        ...

    def shutdown(self) -> None:
        """Shut the node down cleanly (it leaves the network)."""
        ...


class PykkaNetwork:
    """Membership, routing and fault injection for runtimes in one process.

    Args:
        failure_timeout: seconds between a :meth:`crash` and the ``NodeLeft``
            the other nodes receive (default 5.0).

    A crashed node leaves the live set at once (its actors stop; messages to
    them are lost) but the others only get its ``NodeLeft`` after
    ``failure_timeout`` — even if it re-joined meanwhile, as a late failure
    detection would. Cross-node messages are counted when sent, then dropped
    if a partition or a stopped target is in the way. An ask's reply comes
    straight back (it is neither counted nor partitioned).

    Concurrency: thread-safe. Membership changes and subscriptions are
    serialised; callbacks run on the thread that made the change (or the
    failure timer's thread) without the network's state lock held.
    """

    def __init__(self, failure_timeout: float = 5.0) -> None:
        if isinstance(failure_timeout, bool) or not isinstance(failure_timeout, int | float):
            raise TypeError(f"failure_timeout must be a number, got {failure_timeout!r}")
        self.faults = FaultModel(failure_timeout)
        self._state = threading.Lock()
        self._events = threading.RLock()  # serialises membership changes + event delivery
        self._live: dict[str, NetworkMember] = {}
        self._timers: set[threading.Timer] = set()
        self._sent = 0
        self._bytes = 0
        self._dropped = 0
        self._delivered = 0

    # -- inspection -------------------------------------------------------------

    @property
    def failure_timeout(self) -> float:
        """Seconds from a crash to the ``NodeLeft`` the others receive."""
        return self.faults.failure_timeout

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent (one per destination: a broadcast to 2 peers is 2)."""
        with self._state:
            return self._sent

    @property
    def bytes_sent(self) -> int:
        """Payload bytes of :attr:`messages_sent`."""
        with self._state:
            return self._bytes

    @property
    def messages_dropped(self) -> int:
        """Cross-node messages lost to a partition or a stopped target."""
        with self._state:
            return self._dropped

    @property
    def messages_delivered(self) -> int:
        """Cross-node messages that reached a mailbox."""
        with self._state:
            return self._delivered

    def reset_counters(self) -> None:
        """Zero the sent, bytes, dropped and delivered counters."""
        with self._state:
            self._sent = self._bytes = self._dropped = self._delivered = 0

    def live_nodes(self) -> list[str]:
        """Ids of the live nodes, sorted."""
        with self._state:
            return sorted(self._live)

    def runtime(self, node_id: str) -> NetworkMember:
        """The live runtime of ``node_id``.

        Raises:
            KeyError: no live node has that id.
        """
        with self._state:
            try:
                return self._live[node_id]
            except KeyError:
                raise KeyError(f"node {node_id!r} is not live on this network") from None

    # -- membership and faults --------------------------------------------------

    def remove(self, node_id: str) -> None:
        """Clean leave: shut ``node_id``'s runtime down; the others get ``NodeLeft`` at once.

        Raises:
            KeyError: no live node has that id.
        """
        self.runtime(node_id).shutdown()

    def crash(self, node_id: str) -> None:
        """Stop ``node_id``'s actors and timers without a goodbye.

        The other live nodes get ``NodeLeft`` after :attr:`failure_timeout`
        seconds (never the node's new incarnation, if it re-joins meanwhile).

        Raises:
            KeyError: no live node has that id.
        """
        with self._state:
            runtime = self._live.get(node_id)
            if runtime is None:
                raise KeyError(f"node {node_id!r} is not live on this network")
            del self._live[node_id]
            timer = threading.Timer(self.failure_timeout, self._detect_failure, (node_id,))
            timer.name = f"dstate-failure-detector-{node_id}"
            timer.daemon = True
            self._timers.add(timer)
        runtime.halt()
        timer.start()

    def partition(self, *groups: Iterable[str]) -> None:
        """Drop messages between the groups of node ids; replaces any previous partition.

        Unlisted nodes form one more group; a bare node id is a group of one.
        Membership and cluster events are not affected.

        Raises:
            ValueError: a node id is listed in two groups.
        """
        self.faults.partition(*groups)

    def heal(self) -> None:
        """Remove the partition."""
        self.faults.heal()

    def close(self) -> None:
        """Shut every live runtime down and cancel pending failure timers; idempotent."""
        with self._state:
            runtimes = list(self._live.values())
            timers = list(self._timers)
            self._timers.clear()
        for timer in timers:
            timer.cancel()
        for runtime in runtimes:
            runtime.shutdown()

    def __enter__(self) -> PykkaNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by PykkaRuntime -----------------------------------------------------

    def join(self, runtime: NetworkMember) -> None:
        """Add ``runtime``; the other live nodes get ``NodeJoined``.

        Raises:
            ValueError: its node id is live already.
        """
        node_id = runtime.node_id
        with self._events:
            with self._state:
                if node_id in self._live:
                    raise ValueError(f"node {node_id!r} is already live on this network")
                self._live[node_id] = runtime
                others = self._live_except(node_id)
            _emit(NodeJoined(node_id), others)

    def leave(self, runtime: NetworkMember) -> None:
        """Take ``runtime`` out; the other live nodes get ``NodeLeft`` at once."""
        node_id = runtime.node_id
        with self._events:
            with self._state:
                if self._live.get(node_id) is not runtime:
                    return
                del self._live[node_id]
                others = self._live_except(node_id)
            _emit(NodeLeft(node_id), others)

    def _detect_failure(self, node_id: str) -> None:
        with self._events:
            with self._state:
                current = threading.current_thread()
                self._timers = {t for t in self._timers if t is not current}
                others = self._live_except(node_id)
            _emit(NodeLeft(node_id), others)

    def subscribe(self, runtime: NetworkMember, callback: EventCallback) -> SubscriptionId:
        """Replay ``NodeJoined`` for every other live node to ``callback``, then report changes."""
        with self._events:
            with self._state:
                existing = sorted(n for n in self._live if n != runtime.node_id)
            subscription = runtime.subscribers.add(callback)
            for node_id in existing:
                runtime.subscribers.call(callback, NodeJoined(node_id))
            return subscription

    def live_runtimes(self) -> list[NetworkMember]:
        """The live runtimes, by node id."""
        with self._state:
            return [self._live[n] for n in sorted(self._live)]

    def route(self, origin: str, target: NetworkMember, target_alive: bool, size: int) -> bool:
        """Count one cross-node message of ``size`` bytes; False if it is lost on the way."""
        with self._state:
            self._sent += 1
            self._bytes += size
            ok = (
                target_alive
                and self._live.get(target.node_id) is target
                and not self.faults.blocked(origin, target.node_id)
            )
            if ok:
                self._delivered += 1
            else:
                self._dropped += 1
        return ok

    def undeliverable(self) -> None:
        """A routed message found its target stopped at the mailbox."""
        with self._state:
            self._delivered -= 1
            self._dropped += 1

    def _live_except(self, node_id: str) -> list[NetworkMember]:
        return [rt for n, rt in sorted(self._live.items()) if n != node_id]

    def __repr__(self) -> str:
        return f"<PykkaNetwork live={self.live_nodes()!r}>"


def _emit(event: ClusterEvent, runtimes: list[NetworkMember]) -> None:
    for runtime in runtimes:
        runtime.subscribers.emit(event)
