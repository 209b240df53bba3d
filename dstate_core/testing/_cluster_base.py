"""What every in-process cluster shares: nodes by id, join, leave, crash, restart.

Each adapter's ``local_cluster`` subclasses :class:`LocalClusterBase` and
supplies how a node's runtime is made and how it leaves or crashes; the node
bookkeeping, restarts and shutdown live here once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..model._clock import Clock
from ..model._generation import IncarnationSource
from ..runtime._faults import FaultModel
from ..runtime._protocol import ActorRef, ActorRuntime
from ..shell._node import INBOX_GROUP, DStateNode
from ..wire._codec import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["NODE_OPTIONS", "ClusterNetwork", "LocalClusterBase"]

log = logging.getLogger("dstate.cluster")


class ClusterNetwork(Protocol):
    """What an adapter's in-process network offers the cluster."""

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent (one per destination)."""
        ...

    @property
    def bytes_sent(self) -> int:
        """Bytes of cross-node messages sent (per destination)."""
        ...


#: The options a local cluster passes to every :class:`DStateNode`, with their defaults.
NODE_OPTIONS: dict[str, Any] = {
    "change_feed": None,
    "cluster_secret": None,
    "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
}


class LocalClusterBase:
    """Several :class:`DStateNode` in one process, on one adapter's runtimes.

    Args:
        node_ids: the nodes to start with.
        clock: every node's clock.
        failure_timeout: seconds after a ``crash`` until peers see ``NodeLeft``.
        node_options: passed to every node: ``change_feed``, ``cluster_secret``,
            ``max_message_bytes`` (see :class:`DStateNode`).

    Raises:
        TypeError: an option no node takes.
        ValueError: bad node ids or ``failure_timeout``.
    """

    def __init__(
        self,
        node_ids: Iterable[str],
        *,
        clock: Clock,
        failure_timeout: float = 5.0,
        **node_options: Any,
    ) -> None:
        unknown = sorted(set(node_options) - set(NODE_OPTIONS))
        if unknown:
            raise TypeError(
                f"unknown cluster option(s) {unknown}: a local cluster takes "
                f"{sorted(NODE_OPTIONS)} for its nodes, besides its own options"
            )
        if isinstance(node_ids, str):
            raise TypeError("node_ids must be a list of node ids, not one string")
        ids = list(node_ids)
        for node_id in ids:
            if not isinstance(node_id, str) or not node_id:
                raise ValueError(f"node ids must be non-empty strings, got {node_id!r}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"node ids must be unique, got {ids!r}")
        if failure_timeout <= 0:
            raise ValueError(f"failure_timeout must be > 0 seconds, got {failure_timeout!r}")
        self.clock = clock
        self.failure_timeout = float(failure_timeout)
        self._node_options: dict[str, Any] = {**NODE_OPTIONS, **node_options}
        self._nodes: dict[str, DStateNode] = {}
        self._runtimes: dict[str, ActorRuntime] = {}
        # One per node id, kept across restarts: a restarted node never reuses an
        # incarnation even when the clock has not moved (as with a TestClock).
        self._incarnations: dict[str, IncarnationSource] = {}
        self._closed = False
        self._initial_ids = ids

    def _start(self) -> None:
        """Start the initial nodes (the subclass calls it once its network is up);
        if one fails, everything started so far is closed again."""
        try:
            for node_id in self._initial_ids:
                self.add_node(node_id)
        except BaseException:
            self.close()
            raise

    #: The adapter's network (set by a subclass that has one, before ``_start``; one
    #: without overrides :attr:`messages_sent` and :attr:`bytes_sent`).
    network: ClusterNetwork
    #: The partitions (and link faults, where the network simulates them) of the cluster.
    faults: FaultModel

    # -- what an adapter provides ---------------------------------------------------

    def _new_runtime(self, node_id: str) -> ActorRuntime:
        raise NotImplementedError

    def _leave_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        """Take the runtime out of the cluster cleanly (peers get NodeLeft at once)."""
        raise NotImplementedError

    def _crash_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        """Stop the runtime with no goodbye (peers get NodeLeft after failure_timeout)."""
        raise NotImplementedError

    def _inject(self, src: str, ref: ActorRef, data: bytes) -> None:
        """Deliver raw bytes to ``ref`` as if ``src`` sent them (default: a local send)."""
        ref.send(data)

    # -- the cluster interface ------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between ``groups`` (unlisted nodes form one more group).

        Messages between groups are lost; membership and cluster events are not
        affected. A bare node id counts as a group of one; a new partition
        replaces the old one.

        Raises:
            ValueError: a node is listed in two groups.
        """
        self.faults.partition(*groups)

    def heal(self) -> None:
        """Remove the partition."""
        self.faults.heal()

    def inject(self, src: str, dst: str, data: bytes) -> None:
        """Deliver raw ``data`` to ``dst``'s dstate inbox as if ``src`` sent it."""
        for ref in self.runtime(dst).group_members(INBOX_GROUP):
            if ref.node_id == dst:
                self._inject(src, ref, data)
                return
        raise KeyError(f"node {dst!r} has no dstate inbox")

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent (one per destination)."""
        return self.network.messages_sent

    @property
    def bytes_sent(self) -> int:
        """Bytes of cross-node messages sent (per destination)."""
        return self.network.bytes_sent

    @property
    def node_ids(self) -> list[str]:
        """The ids of the nodes running now."""
        return sorted(self._nodes)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"running {self.node_ids}"
        return f"{type(self).__name__}({state})"

    def node(self, node_id: str) -> DStateNode:
        """The running node ``node_id``.

        Raises:
            KeyError: no such node is running.
        """
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(
                f"node {node_id!r} is not running in this cluster (running: {self.node_ids})"
            ) from None

    def runtime(self, node_id: str) -> ActorRuntime:
        """The runtime of the running node ``node_id``."""
        self.node(node_id)
        return self._runtimes[node_id]

    def add_node(self, node_id: str) -> DStateNode:
        """Start a new node (with nothing registered) and join it to the cluster."""
        if self._closed:
            raise RuntimeError("this cluster is closed")
        if node_id in self._nodes:
            raise ValueError(f"node {node_id!r} is already running")
        runtime = self._new_runtime(node_id)
        node = DStateNode(
            runtime,
            clock=self.clock,
            incarnations=self._incarnations.setdefault(node_id, IncarnationSource()),
            **self._node_options,
        )
        self._runtimes[node_id] = runtime
        self._nodes[node_id] = node
        return node

    def remove_node(self, node_id: str) -> None:
        """Clean leave: the node shuts down and peers get ``NodeLeft`` at once."""
        node = self.node(node_id)
        del self._nodes[node_id]
        runtime = self._runtimes.pop(node_id)
        node.shutdown()
        self._leave_runtime(node_id, runtime)

    def crash(self, node_id: str) -> None:
        """Kill the node with no goodbye; peers get ``NodeLeft`` after ``failure_timeout``."""
        node = self.node(node_id)
        del self._nodes[node_id]
        runtime = self._runtimes.pop(node_id)
        self._crash_runtime(node_id, runtime)
        node.shutdown()

    def restart(self, node_id: str) -> DStateNode:
        """Start ``node_id`` again as a new process would: a fresh node, nothing registered.

        Crashes it first if it is running. Registering a state again with the
        same persistence object resumes its shard.
        """
        if node_id in self._nodes:
            self.crash(node_id)
        return self.add_node(node_id)

    def close(self) -> None:
        """Shut every node and runtime down; idempotent."""
        if self._closed:
            return
        self._closed = True
        for node_id in list(self._nodes):
            node = self._nodes.pop(node_id)
            runtime = self._runtimes.pop(node_id)
            try:
                node.shutdown()
                runtime.shutdown()
            except Exception:
                log.exception("cluster: shutting down node %r failed", node_id)

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` seconds pass; True if it held."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def __enter__(self) -> LocalClusterBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
