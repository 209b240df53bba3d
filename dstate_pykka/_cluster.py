"""``dstate_pykka.local_cluster``: several Pykka nodes in one process.

Nodes talk through a :class:`PykkaNetwork` that carries only bytes (the
core's wire format), so everything that crosses nodes is encoded, checked and
authenticated exactly as it would be between processes. Everything runs in
real time: a mutation becomes visible on peers asynchronously; use
:meth:`PykkaCluster.wait_until` to wait for a condition with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dstate_core import Clock, SystemClock
from dstate_core.runtime import ActorRuntime
from dstate_core.testing import LocalClusterBase

from ._network import PykkaNetwork
from ._runtime import PykkaRuntime

__all__ = ["PykkaCluster", "local_cluster"]


class PykkaCluster(LocalClusterBase):
    """A cluster of :class:`DStateNode` on :class:`PykkaRuntime` threads in one process.

    Options as :class:`~dstate_core.testing.LocalClusterBase`.
    """

    network: PykkaNetwork

    def __init__(
        self,
        node_ids: Iterable[str],
        *,
        clock: Clock | None = None,
        failure_timeout: float = 5.0,
        **node_options: Any,
    ) -> None:
        super().__init__(
            node_ids, clock=clock or SystemClock(), failure_timeout=failure_timeout, **node_options
        )
        self.network = PykkaNetwork(failure_timeout=failure_timeout)
        self.faults = self.network.faults
        self._start()

    def _new_runtime(self, node_id: str) -> ActorRuntime:
        return PykkaRuntime(node_id, self.network)

    def _leave_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        self.network.remove(node_id)

    def _crash_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        self.network.crash(node_id)

    def close(self) -> None:
        """Shut every node, runtime and network thread down; idempotent."""
        super().close()
        self.network.close()


@contextmanager
def local_cluster(node_ids: Sequence[str], **options: Any) -> Iterator[PykkaCluster]:
    """An in-process cluster of Pykka nodes; every thread is stopped when the block ends.

    Options: ``failure_timeout`` (s until a crash becomes ``NodeLeft``, default
    5.0), ``change_feed``, ``cluster_secret``, ``max_message_bytes``, ``clock``.
    """
    cluster = PykkaCluster(node_ids, **options)
    try:
        yield cluster
    finally:
        cluster.close()
