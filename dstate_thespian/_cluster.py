"""``dstate_thespian.local_cluster``: several Thespian nodes driven from one process.

On multiprocTCPBase (the default) every node is its own actor system on its
own loopback admin port, in its own processes; the first node leads the
convention and the others join it, exactly as separate hosts would. A node
keeps its port across restarts. On simpleSystemBase the nodes share one
:class:`~dstate_thespian.InProcessConvention`.

Everything runs in real time: use :meth:`ThespianCluster.wait_until` to wait for
a condition with a deadline. ``close()`` stops every actor system and checks
that its processes are gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dstate_core import Clock, SystemClock
from dstate_core.process import free_port
from dstate_core.runtime import ActorRuntime, FaultModel
from dstate_core.testing import LocalClusterBase

from ._in_process import InProcessConvention
from ._runtime import SYSTEM_BASES, ThespianRuntime
from ._thespian import failure_detection_bound

__all__ = ["ThespianCluster", "local_cluster"]


class ThespianCluster(LocalClusterBase):
    """A cluster of :class:`DStateNode` on :class:`ThespianRuntime` s.

    Args:
        system_base: ``"multiprocTCPBase"`` or ``"simpleSystemBase"``.
        failure_timeout: simpleSystemBase: seconds from a crash to ``NodeLeft``
            (default 5.0). On multiprocTCPBase the Thespian convention detects a
            crash, within :attr:`detection_bound` seconds, which its timing
            environment variables set before Thespian is imported: leave it
            unset there (it then reads as the bound).
        host: the loopback address the actor systems advertise.
        join_timeout: how long a joining node waits for the leader.
        node_options: as :class:`~dstate_core.testing.LocalClusterBase`.
    """

    def __init__(
        self,
        node_ids: Iterable[str],
        *,
        system_base: str = "multiprocTCPBase",
        clock: Clock | None = None,
        failure_timeout: float | None = None,
        host: str = "127.0.0.1",
        join_timeout: float = 10.0,
        **node_options: Any,
    ) -> None:
        if system_base not in SYSTEM_BASES:
            raise ValueError(f"system_base must be one of {SYSTEM_BASES}, got {system_base!r}")
        failure_timeout = _failure_timeout(system_base, failure_timeout)
        super().__init__(
            node_ids, clock=clock or SystemClock(), failure_timeout=failure_timeout, **node_options
        )
        self.system_base = system_base
        self.host = host
        self._join_timeout = join_timeout
        self._ports: dict[str, int] = {}
        self._leader = self._initial_ids[0] if self._initial_ids else None
        self._every_runtime: list[ThespianRuntime] = []
        #: Partitions between this cluster's runtimes (crashes are Thespian's own).
        self.faults = FaultModel(failure_timeout)
        self.convention: InProcessConvention | None = None
        if system_base == "simpleSystemBase":
            self.convention = InProcessConvention(self.faults.failure_timeout)
        self._start()

    # -- what LocalClusterBase needs ---------------------------------------------------

    def _new_runtime(self, node_id: str) -> ActorRuntime:
        runtime: _ClusterRuntime
        if self.convention is not None:
            runtime = _ClusterRuntime(
                node_id, "simpleSystemBase", convention=self.convention, faults=self.faults
            )
        else:
            if self._leader is None:
                self._leader = node_id
            leader_port = self.admin_port(self._leader)
            runtime = _ClusterRuntime(
                node_id,
                "multiprocTCPBase",
                admin_port=self.admin_port(node_id),
                convention_address=(
                    None if node_id == self._leader else f"{self.host}:{leader_port}"
                ),
                host=self.host,
                join_timeout=self._join_timeout,
                faults=self.faults,
            )
        self._every_runtime.append(runtime)
        return runtime

    def _leave_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        runtime.shutdown()

    def _crash_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        if isinstance(runtime, _ClusterRuntime):
            runtime.crash()

    # -- inspection ---------------------------------------------------------------------

    @property
    def leader(self) -> str | None:
        """multiprocTCPBase: the node whose actor system leads the convention."""
        return None if self.convention is not None else self._leader

    @property
    def detection_bound(self) -> float:
        """Seconds within which peers see a crashed node leave (on this base)."""
        if self.convention is not None:
            return self.failure_timeout
        return failure_detection_bound()

    def admin_port(self, node_id: str) -> int:
        """multiprocTCPBase: the admin port of ``node_id`` (fixed for the cluster's life)."""
        if node_id not in self._ports:
            self._ports[node_id] = free_port()
        return self._ports[node_id]

    @property
    def admin_ports(self) -> dict[str, int]:
        """Every admin port handed out, by node id."""
        return dict(self._ports)

    def pids(self) -> list[int]:
        """Every process of every actor system this cluster started (multiprocTCPBase)."""
        return sorted({pid for rt in self._every_runtime for pid in rt.pids})

    def alive_pids(self) -> list[int]:
        """Those of :meth:`pids` still running."""
        return sorted({pid for rt in self._every_runtime for pid in rt.alive_pids()})

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent by every runtime so far (one per destination actor)."""
        return sum(rt.messages_sent for rt in self._every_runtime)

    @property
    def bytes_sent(self) -> int:
        """Bytes of :attr:`messages_sent`."""
        return sum(rt.bytes_sent for rt in self._every_runtime)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Shut every node and actor system down (killing stragglers); idempotent."""
        super().close()
        for runtime in self._every_runtime:
            runtime.shutdown()
        if self.convention is not None:
            self.convention.close()


class _ClusterRuntime(ThespianRuntime):
    """A runtime this cluster can crash, as a power loss would."""

    def crash(self) -> None:
        """Die without a goodbye: kill the actor system's processes, then stop here."""
        if not self.is_shut_down:
            if self._system is not None:
                self._system.kill()
            elif self._convention is not None:
                self._convention.crash(self.node_id, self.incarnation)
        self._halt()


def _failure_timeout(system_base: str, given: float | None) -> float:
    """The cluster's failure timeout; a value multiprocTCPBase cannot honour is an error."""
    if system_base == "simpleSystemBase":
        return 5.0 if given is None else given
    bound = failure_detection_bound()
    if given is None or given == bound:
        return bound
    raise ValueError(
        f"failure_timeout={given!r} cannot apply on multiprocTCPBase: there the Thespian "
        f"convention reports a crash within {bound:g} s, set by CONVENTION_REREGISTRATION_PERIOD "
        "and CONVENTION_REGISTRATION_MISS_MAX in the environment before thespian is first "
        "imported (see docs/thespian.md, Timing). Leave failure_timeout out, or use "
        "system_base='simpleSystemBase'"
    )


@contextmanager
def local_cluster(node_ids: Sequence[str], **options: Any) -> Iterator[ThespianCluster]:
    """A cluster of Thespian nodes; every actor system is stopped when the block ends.

    Options: ``system_base`` (default ``"multiprocTCPBase"``), ``failure_timeout``
    (simpleSystemBase only, see :class:`ThespianCluster`), ``host`` (default
    ``"127.0.0.1"``), ``join_timeout``, ``change_feed``, ``cluster_secret``,
    ``max_message_bytes``, ``clock``.

    Raises:
        ValueError: a bad option, such as a ``failure_timeout`` on multiprocTCPBase.
    """
    cluster = ThespianCluster(node_ids, **options)
    try:
        yield cluster
    finally:
        cluster.close()
