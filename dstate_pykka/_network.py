"""``PykkaNetwork``: an in-process cluster that several :class:`PykkaRuntime` s join (SPEC §7, §12).

It stands in for the wire between nodes: a cross-node message must be
``bytes`` and is delivered straight into the target actor's Pykka mailbox. It
tracks membership and tells each runtime's subscribers about ``NodeJoined`` /
``NodeLeft``, and it can simulate a clean leave, a crash (``NodeLeft`` only
after ``failure_timeout``), and partitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from dstate_core.model import NodeShutdownError
from dstate_core.runtime import ClusterEvent, NodeJoined, NodeLeft, SubscriptionId

if TYPE_CHECKING:
    from types import TracebackType

    from ._actor import _Cell
    from ._runtime import PykkaRuntime

__all__ = ["PykkaNetwork"]

_log = logging.getLogger("dstate.pykka")


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
        if not 0 <= failure_timeout < float("inf"):
            raise ValueError(f"failure_timeout must be >= 0 and finite, got {failure_timeout!r}")
        self._failure_timeout = float(failure_timeout)
        self._state = threading.Lock()
        self._events = threading.RLock()  # serialises membership changes + event delivery
        self._live: dict[str, PykkaRuntime] = {}
        self._partition: dict[str, int] | None = None
        self._timers: set[threading.Timer] = set()
        self._sent = 0
        self._bytes = 0
        self._dropped = 0
        self._delivered = 0

    # -- inspection -------------------------------------------------------------

    @property
    def failure_timeout(self) -> float:
        """Seconds from a crash to the ``NodeLeft`` the others receive."""
        return self._failure_timeout

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

    def runtime(self, node_id: str) -> PykkaRuntime:
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

    def add_runtime(self, node_id: str) -> PykkaRuntime:
        """Create a :class:`PykkaRuntime` on this network (the others get ``NodeJoined``).

        Raises:
            ValueError: ``node_id`` is live already.
        """
        from ._runtime import PykkaRuntime

        return PykkaRuntime(node_id, self)

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
            timer = threading.Timer(self._failure_timeout, self._detect_failure, (node_id,))
            timer.name = f"dstate-failure-detector-{node_id}"
            timer.daemon = True
            self._timers.add(timer)
        runtime._halt()
        timer.start()

    def partition(self, *groups: Iterable[str]) -> None:
        """Drop messages between the groups of node ids; replaces any previous partition.

        Unlisted nodes form one more group; a bare node id is a group of one.
        Membership and cluster events are not affected.

        Raises:
            ValueError: a node id is listed in two groups.
        """
        where: dict[str, int] = {}
        for index, group in enumerate(groups):
            for node_id in [group] if isinstance(group, str) else group:
                if node_id in where and where[node_id] != index:
                    raise ValueError(f"node {node_id!r} is in two partition groups")
                where[node_id] = index
        with self._state:
            self._partition = where

    def heal(self) -> None:
        """Remove the partition."""
        with self._state:
            self._partition = None

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- used by PykkaRuntime / PykkaActorRef ----------------------------------

    def _join(self, runtime: PykkaRuntime) -> None:
        node_id = runtime.node_id
        with self._events:
            with self._state:
                if node_id in self._live:
                    raise ValueError(f"node {node_id!r} is already live on this network")
                self._live[node_id] = runtime
                others = self._live_except(node_id)
            self._emit(NodeJoined(node_id), others)

    def _leave(self, runtime: PykkaRuntime) -> None:
        node_id = runtime.node_id
        with self._events:
            with self._state:
                if self._live.get(node_id) is not runtime:
                    return
                del self._live[node_id]
                others = self._live_except(node_id)
            self._emit(NodeLeft(node_id), others)

    def _detect_failure(self, node_id: str) -> None:
        with self._events:
            with self._state:
                current = threading.current_thread()
                self._timers = {t for t in self._timers if t is not current}
                others = self._live_except(node_id)
            self._emit(NodeLeft(node_id), others)

    def _subscribe(
        self, runtime: PykkaRuntime, callback: Callable[[ClusterEvent], None]
    ) -> SubscriptionId:
        with self._events:
            with self._state:
                existing = sorted(n for n in self._live if n != runtime.node_id)
            subscription = runtime._events._add(callback)
            for node_id in existing:
                _call(callback, NodeJoined(node_id), runtime.node_id)
            return subscription

    def _live_runtimes(self) -> list[PykkaRuntime]:
        with self._state:
            return [self._live[n] for n in sorted(self._live)]

    def _route(self, origin: PykkaRuntime, cell: _Cell, msg: bytes) -> bool:
        """Count one cross-node message; False if it is lost on the way.

        Raises:
            NodeShutdownError: the origin runtime is shut down (or crashed).
        """
        if origin.is_shut_down:
            raise NodeShutdownError(
                f"cannot send to {cell.describe()}: the runtime of node {origin.node_id!r} "
                "was shut down"
            )
        target = cell.runtime
        with self._state:
            self._sent += 1
            self._bytes += len(msg)
            ok = (
                not cell.stopped.is_set()
                and self._live.get(target.node_id) is target
                and self._connected(origin.node_id, target.node_id)
            )
            if ok:
                self._delivered += 1
            else:
                self._dropped += 1
        return ok

    def _undeliverable(self) -> None:
        """A routed message found its target stopped at the mailbox."""
        with self._state:
            self._delivered -= 1
            self._dropped += 1

    def _connected(self, a: str, b: str) -> bool:
        where = self._partition
        return where is None or where.get(a, -1) == where.get(b, -1)

    def _live_except(self, node_id: str) -> list[PykkaRuntime]:
        return [rt for n, rt in sorted(self._live.items()) if n != node_id]

    def _emit(self, event: ClusterEvent, runtimes: list[PykkaRuntime]) -> None:
        for runtime in runtimes:
            for callback in runtime._events._snapshot():
                _call(callback, event, runtime.node_id)

    def __repr__(self) -> str:
        return f"<PykkaNetwork live={self.live_nodes()!r}>"


def _call(callback: Callable[[ClusterEvent], None], event: ClusterEvent, node_id: str) -> None:
    try:
        callback(event)
    except Exception:
        _log.exception("cluster-event subscriber on node %r failed on %r", node_id, event)
