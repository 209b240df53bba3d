"""``ThespianRuntime``: the ``ActorRuntime`` port on Thespian (``docs/protocol.md#join-and-leave``).

One runtime is one node. Its *local* actors (what :meth:`ThespianRuntime.spawn`
creates, so dstate's shards) are thread actors in this process: a fast-path
query is answered from this process's memory. Everything between nodes travels
over Thespian: this process talks to its node's *gateway* actor (see
:mod:`dstate_thespian._link`), gateways forward :class:`~dstate_core.runtime.Parcel` s
to each other, and membership comes from the Thespian convention.

* multiprocTCPBase: each runtime starts its own actor system on its own admin
  port; the first node of a cluster leads the convention, the others name it
  in ``convention_address``. Systems may run in other processes or hosts.
* simpleSystemBase: runtimes in one process share an
  :class:`~._in_process.InProcessConvention` (one actor system, run by a pump thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from dstate_core.process import free_port, normalize_address, start_time
from dstate_core.runtime import (
    FaultModel,
    NodeShutdownError,
    Parcel,
    ParcelRuntime,
    RemoteActorRef,
    ThreadedActorRef,
)

from ._actor_system import TcpSystem
from ._gateway import Attach, Attached, Batch, View
from ._in_process import InProcessConvention
from ._link import Link, SimpleLink, TcpLink
from ._thespian import address_port

if TYPE_CHECKING:
    from dstate_core.runtime import ActorRuntime

__all__ = ["SYSTEM_BASES", "ThespianActorRef", "ThespianRuntime"]

_log = logging.getLogger("dstate.thespian")

#: The Thespian system bases a runtime can use.
SYSTEM_BASES = ("multiprocTCPBase", "simpleSystemBase")

#: A ref a :class:`ThespianRuntime` hands out: to one of its own actors, or to a peer's.
ThespianActorRef = ThreadedActorRef | RemoteActorRef

#: ``shutdown()`` waits at most this long for busy handlers, and as long for the link.
_STOP_WAIT = 1.0
#: How long the constructor waits for its gateway to answer.
_ATTACH_TIMEOUT = 30.0


class ThespianRuntime(ParcelRuntime):
    """One node's actor runtime on Thespian, joined to a cluster.

    Args:
        node_id: unique in the cluster.
        system_base: ``"multiprocTCPBase"`` (default) or ``"simpleSystemBase"``.
        admin_port: multiprocTCPBase: this node's admin port (a free one if None).
        convention_address: multiprocTCPBase: the leader's ``"host:port"`` or
            ``(host, port)``; None makes this node the convention leader.
        host: multiprocTCPBase: the address peers reach this node at (sets
            ``THESPIAN_BASE_IPADDR`` for the process); Thespian's guess if None.
        convention: simpleSystemBase: the in-process convention to join (a
            private one if None).
        join_timeout: the constructor waits up to this long until every node
            already in the cluster and this one see each other (then logs a
            warning and carries on: joining continues in the background).
        join: False starts the actor system and its gateway but joins the
            cluster only at :meth:`join_cluster` (see there why).
        faults: a test cluster's fault model: data from a node it separates
            from this one is dropped (membership traffic passes).

    Raises:
        ValueError: bad ``node_id`` or options, or the admin port is in use.
        RuntimeError: the gateway actor did not start.

    Its actors, timers, groups and cross-node traffic are the runtime kit's
    :class:`~dstate_core.runtime.ParcelRuntime`; Thespian carries the parcels.

    Concurrency: every method is thread-safe. Handlers run one message at a
    time on their actor's thread, timers on one scheduler thread, inbound
    traffic and cluster events on one receiver thread. ``shutdown()`` is
    idempotent; afterwards ``spawn``, timers, groups and cross-node sends raise
    :class:`NodeShutdownError`, and sends to its stopped actors
    :class:`ActorSendError`.
    """

    def __init__(
        self,
        node_id: str,
        system_base: str = "multiprocTCPBase",
        *,
        admin_port: int | None = None,
        convention_address: str | tuple[str, int] | None = None,
        host: str | None = None,
        convention: InProcessConvention | None = None,
        join_timeout: float = 10.0,
        join: bool = True,
        faults: FaultModel | None = None,
    ) -> None:
        super().__init__(node_id, _log, faults)
        if system_base not in SYSTEM_BASES:
            raise ValueError(f"system_base must be one of {SYSTEM_BASES}, got {system_base!r}")
        tcp = system_base == "multiprocTCPBase"
        if tcp and convention is not None:
            raise ValueError("convention= is for simpleSystemBase; use convention_address=")
        if not tcp and (admin_port, convention_address, host) != (None, None, None):
            raise ValueError("admin_port, convention_address and host need multiprocTCPBase")
        self._base = system_base
        self._attached = threading.Event()
        self._system: TcpSystem | None = None
        self._convention: InProcessConvention | None = None
        self._owns_convention = False
        if tcp:
            leader = None if convention_address is None else normalize_address(convention_address)
            self._system = TcpSystem(node_id, self._inc, admin_port or free_port(), leader, host)
            attach = Attach(
                node_id,
                self._inc,
                relay=leader is None,
                member=leader is not None,
                watch_pid=os.getpid(),
                watch_started=start_time(os.getpid()),
            )
            self._link: Link = TcpLink(
                self._system.system, self._system.gateway, attach, self._on_message, node_id
            )
        else:
            self._owns_convention = convention is None
            self._convention = convention or InProcessConvention()
            gateway = self._convention.create_gateway()
            attach = Attach(node_id, self._inc, relay=False)
            self._link = SimpleLink(self._convention, gateway, attach, self._on_message, node_id)
            self._gateway = gateway
        self._join_timeout = join_timeout
        self._joining = False
        try:
            self._link.start()
            if not self._attached.wait(_ATTACH_TIMEOUT):
                raise RuntimeError(f"node {self._node_id!r}: its Thespian gateway did not answer")
            if join:
                self.join_cluster()
        except BaseException:
            self.shutdown()
            raise

    def join_cluster(
        self, timeout: float | None = None, *, cancel: threading.Event | None = None
    ) -> None:
        """Make this node a cluster member (the constructor does, unless ``join=False``).

        A member joins its leader's convention; then this waits up to
        ``timeout`` (default: the constructor's ``join_timeout``) until the
        nodes already in the cluster and this one see each other, and logs a
        warning if they do not (joining goes on in the background). The wait
        also ends once ``cancel`` is set (by any thread or a signal handler)
        or the runtime is shut down. Idempotent.

        Why defer it: a peer that sees this node join sends it its join
        exchange at once, to the actors this node has in its groups by then.
        Build the :class:`~dstate_core.DStateNode` and register its states
        first, and nothing of that exchange is lost. (A leader's gateway
        already relays the roster, so a deferred leader is visible early; a
        peer's first messages to it may be lost, and dstate repeats the join
        exchange from the side that sees the other later.)

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        with self._lock:
            self._check_open("join the cluster")
            if self._joining:
                return
            self._joining = True
        wait = self._join_timeout if timeout is None else timeout
        expect: list[str] = []
        if self._system is not None:
            self._system.publish()
            if self._system.convention_address is None:
                return  # the leader has nobody to wait for
        elif self._convention is not None:
            expect = self._convention.join(self._node_id, self._inc, self._gateway)
        if wait > 0 and not self._wait_joined(wait, expect, cancel):
            where = "" if self._system is None else f" at {self._system.convention_address}"
            self._log.warning(
                "not yet admitted by the cluster%s within %g s; it keeps trying",
                where,
                wait,
            )

    # -- identity and inspection ---------------------------------------------------

    @property
    def system_base(self) -> str:
        """The Thespian system base in use."""
        return self._base

    @property
    def admin_port(self) -> int | None:
        """multiprocTCPBase: this node's admin port."""
        return None if self._system is None else self._system.admin_port

    @property
    def gateway_port(self) -> int | None:
        """multiprocTCPBase: the TCP port this node's gateway listens on (peers send there)."""
        return None if self._system is None else address_port(self._system.gateway)

    @property
    def pids(self) -> list[int]:
        """multiprocTCPBase: the processes of this node's actor system (admin, logger, gateway)."""
        return [] if self._system is None else self._system.pids

    def alive_pids(self) -> list[int]:
        """multiprocTCPBase: those of :attr:`pids` still running."""
        return [] if self._system is None else self._system.alive_pids()

    # -- cross-node traffic -----------------------------------------------------------

    def _post(self, parcel: Parcel) -> None:
        self._link.post(parcel)

    def _on_message(self, msg: Any) -> None:
        """One message from the gateway (on the receiver thread)."""
        if isinstance(msg, Parcel):
            self.remote.on_parcel(msg)
        elif isinstance(msg, Batch):
            for parcel in msg.parcels:
                if isinstance(parcel, Parcel):
                    self.remote.on_parcel(parcel)
        elif isinstance(msg, View):
            self.remote.on_view(msg.peers, msg.complete)
        elif isinstance(msg, Attached):
            if self._system is not None:
                self._system.record(msg.admin_pid, msg.pid)
            self._attached.set()

    # -- lifecycle ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop actors and timers, leave the convention, stop the actor system; idempotent.

        Concurrency: may be called from any thread, including a handler of this
        runtime; waits about a second for busy handlers and returns anyway.
        """
        if not self._halt():
            return
        if self._system is not None:
            self._system.shutdown()
        elif self._convention is not None:
            with contextlib.suppress(NodeShutdownError):
                self._convention.leave(self._node_id, self._inc)
            if self._owns_convention:
                self._convention.close()

    def _halt(self) -> bool:
        """Stop actors, timers and the link; False if already halted."""
        if not self._halt_actors(_STOP_WAIT):
            return False
        self._link.close(_STOP_WAIT)
        return True

    def __repr__(self) -> str:
        state = "shut down" if self._closed else "running"
        return f"<ThespianRuntime {self._node_id!r} on {self._base} {state}>"


if TYPE_CHECKING:

    def _conforms(runtime: ThespianRuntime) -> ActorRuntime:
        return runtime
