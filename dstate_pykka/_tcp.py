"""A Pykka runtime's link to other node processes over a :class:`~dstate_core.net.TcpNetwork`.

The runtime keeps its actors (Pykka threads) and groups; :class:`TcpLink`
adds what crosses processes, from the core's kit: parcels out and in
(:class:`~dstate_core.runtime.RemoteTraffic`), the peers' group tables and the
cluster events (its ``Directory``), and joining and leaving through the
network's membership.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from dstate_core.net import JoinRefusedError, TcpNetwork
from dstate_core.runtime import LocalActors, RemoteActorRef, RemoteTraffic

__all__ = ["TcpLink"]


class TcpLink:
    """One runtime's traffic to and from its peers on ``network``.

    Args:
        network: this node's network (its node id must be the runtime's).
        local: the runtime's own actors and groups.

    Raises:
        ValueError: the network belongs to another node id, or to another runtime.
    """

    def __init__(
        self,
        network: TcpNetwork,
        node_id: str,
        local: LocalActors,
        later: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        if network.node_id != node_id:
            raise ValueError(
                f"the network was made for node {network.node_id!r}, not {node_id!r}: "
                "give both the same node id"
            )
        self.network = network
        self.remote = RemoteTraffic(node_id, network.incarnation, network.post, local, later=later)
        network.attach(self.remote)

    def join(self, timeout: float, cancel: threading.Event | None = None) -> bool:
        """Start the network and wait until a seed let this node in and every peer's
        actors are known; False if ``timeout`` passed first (joining goes on).

        Raises:
            JoinRefusedError: the cluster refused this node.
        """
        deadline = time.monotonic() + timeout
        self.network.start()
        try:
            if not self.network.wait_joined(timeout, cancel):
                return False
        except JoinRefusedError:
            self.network.close()  # its I/O thread has stopped: free its pipe now
            raise
        while cancel is None or not cancel.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.remote.directory.wait_settled(min(left, 0.05)):
                return True
        return True

    def members(self, group: str) -> Sequence[RemoteActorRef]:
        """Refs to the peers' members of ``group``."""
        return self.remote.members(group)

    def close(self) -> None:
        """Fail waiting asks, say goodbye to the members and close the network."""
        self.remote.close()
        self.network.close()
