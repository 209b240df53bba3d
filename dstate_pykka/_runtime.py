"""``PykkaRuntime``: the ``ActorRuntime`` port on Pykka threads.

One runtime is one node. Its actors are Pykka ``ThreadingActor`` s, its timers
share one scheduler thread, and its groups and membership go through either a
:class:`~dstate_pykka._network.PykkaNetwork` (nodes in this process; a private
one-node network when none is given) or a :class:`~dstate_core.net.TcpNetwork`
(nodes in other processes and hosts, see :mod:`~dstate_pykka._tcp`). Pykka's
process-global ``ActorRegistry`` is never used for lookups or ``stop_all``, so
many runtimes can share a process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dstate_core.net import TcpNetwork
from dstate_core.runtime import (
    ActorRef,
    ActorSendError,
    ClusterEventsView,
    EventCallback,
    Handler,
    LocalGroups,
    NodeLog,
    NodeShutdownError,
    RemoteActorRef,
    RuntimeBase,
    SchedulerTimers,
    Subscribers,
    SubscriptionId,
    TimerScheduler,
)

from ._actor import PykkaActorRef, _Cell, _HandlerActor
from ._network import PykkaNetwork
from ._tcp import TcpLink

if TYPE_CHECKING:
    from dstate_core.runtime import ActorRuntime, ClusterEvents

__all__ = ["PykkaRuntime"]

#: ``shutdown()`` waits at most this long for actors to finish their current message.
_STOP_WAIT = 1.2


class _Membership:
    """A runtime's cluster events, as its network reports them."""

    def __init__(self, runtime: PykkaRuntime) -> None:
        self._runtime = runtime

    def subscribe(self, callback: EventCallback) -> SubscriptionId:
        """Replay ``NodeJoined`` for every other member, then report changes."""
        return self._runtime.local_network.subscribe(self._runtime, callback)

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling the callback; unknown ids are ignored."""
        self._runtime.subscribers.discard(subscription)


class PykkaRuntime(RuntimeBase, SchedulerTimers):
    """One node's actor system on Pykka threads, joined to a :class:`PykkaNetwork`.

    Args:
        node_id: unique among the network's live members.
        network: the in-process cluster to join; ``None`` makes a private
            one-node cluster; a :class:`~dstate_core.net.TcpNetwork` (made
            for the same node id) joins the nodes of other processes and hosts.
        join: with a ``TcpNetwork``, join the cluster now (waiting up to
            ``join_timeout`` seconds); False defers it to :meth:`join_cluster`.
        join_timeout: see ``join``.

    Raises:
        ValueError: ``node_id`` is empty or already a live member of ``network``.
        JoinRefusedError: the network cluster refused this node (its node id is
            taken by a live process, or its secret is wrong).

    Concurrency: every method is thread-safe. Handlers run one message at a
    time on their actor's thread; timers fire from one scheduler thread.
    ``shutdown()`` returns within about 2 s and is idempotent; afterwards
    ``spawn``, timers, groups and cross-node sends raise
    :class:`NodeShutdownError`, and sends to its own (stopped) actors raise
    :class:`ActorSendError`.
    """

    threaded = True

    def __init__(
        self,
        node_id: str,
        network: PykkaNetwork | TcpNetwork | None = None,
        *,
        join: bool = True,
        join_timeout: float = 10.0,
    ) -> None:
        super().__init__(node_id)
        self._log = NodeLog("dstate.pykka", node_id)
        if network is not None and not isinstance(network, PykkaNetwork | TcpNetwork):
            raise TypeError(
                f"network must be a PykkaNetwork or a TcpNetwork, got {type(network).__name__}"
            )
        self._owns_network = network is None
        self._network = network if isinstance(network, PykkaNetwork) else PykkaNetwork()
        self._lock = threading.RLock()
        self._cells: dict[str, _Cell] = {}
        self._groups: LocalGroups[_Cell] = LocalGroups()
        self.subscribers = Subscribers(node_id)
        self._scheduler = TimerScheduler(node_id)
        self._tcp: TcpLink | None = None
        if isinstance(network, TcpNetwork):
            self._tcp = TcpLink(
                network,
                node_id,
                self,
                later=lambda delay, fire: self._scheduler.schedule(delay, None, fire),
            )
            self._events = ClusterEventsView(self._tcp.remote.directory, self._check_open)
            if join:
                self.join_cluster(join_timeout)
        else:
            self._events = ClusterEventsView(_Membership(self), self._check_open)
            self._network.join(self)

    # -- identity ---------------------------------------------------------------

    @property
    def network(self) -> PykkaNetwork | TcpNetwork:
        """The cluster this runtime joined: in this process, or over the network."""
        return self._tcp.network if self._tcp is not None else self._network

    @property
    def local_network(self) -> PykkaNetwork:
        """The in-process cluster (a private, unused one with a ``TcpNetwork``)."""
        return self._network

    @property
    def peers(self) -> list[str]:
        """The other live nodes whose actors this node knows, sorted."""
        if self._tcp is not None:
            return sorted(self._tcp.remote.directory.joined())
        return [n for n in self._network.live_nodes() if n != self._node_id]

    @property
    def drops(self) -> dict[str, int]:
        """Messages from other processes dropped here, by reason (a ``TcpNetwork`` only)."""
        return {} if self._tcp is None else self._tcp.remote.drops.counts()

    def join_cluster(self, timeout: float = 10.0, cancel: threading.Event | None = None) -> bool:
        """With a ``TcpNetwork``: join the cluster and wait (up to ``timeout`` s, or
        until ``cancel`` is set) until the members and their actors are known.

        Returns False if the wait ended first (joining goes on in the background).

        Raises:
            JoinRefusedError: the cluster refused this node.
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open("join the cluster")
        return True if self._tcp is None else self._tcp.join(timeout, cancel)

    def actor_names(self) -> list[str]:
        """Names of this runtime's running actors."""
        with self._lock:
            return list(self._cells)

    def actor(self, name: str) -> PykkaActorRef:
        """The running local actor called ``name``.

        Raises:
            KeyError: no running actor of this runtime has that name.
        """
        with self._lock:
            cell = self._cells.get(name)
        if cell is None:
            raise KeyError(f"no running actor named {name!r} on node {self._node_id!r}")
        return PykkaActorRef(cell, self)

    # -- actors -----------------------------------------------------------------

    def _spawn(self, name: str, handler: Handler) -> PykkaActorRef:
        """A Pykka ``ThreadingActor`` that runs ``handler`` (see :meth:`RuntimeBase.spawn`)."""
        with self._lock:
            self._check_open(f"spawn actor {name!r}")
            if name in self._cells:
                raise ValueError(f"an actor named {name!r} is already running on {self._node_id!r}")
            cell = _Cell(self, name)
            cell.pykka_ref = _HandlerActor.start(cell, handler)
            self._cells[name] = cell
        return PykkaActorRef(cell, self)

    # -- what actors and refs need (CellHost) -----------------------------------

    def forget(self, cell: _Cell) -> None:
        """Drop a stopping actor from this runtime's names and groups."""
        with self._lock:
            if self._cells.get(cell.name) is cell:
                del self._cells[cell.name]
        if self._groups.forget(cell):
            self._publish_groups()

    def local_actor(self, name: str) -> _Cell | None:
        """The running actor called ``name`` (messages from other processes go to it)."""
        with self._lock:
            cell = self._cells.get(name)
        return None if cell is None or cell.stopped.is_set() else cell

    def group_table(self) -> dict[str, list[str]]:
        """Every group with the names of this node's members (what peers are told)."""
        return self._groups.table()

    def _publish_groups(self) -> None:
        if self._tcp is not None and not self._closed:
            self._tcp.remote.publish_groups()

    def route(self, cell: _Cell, msg: bytes) -> bool:
        """Count a cross-node message from this node to ``cell``; False if it is lost.

        Raises:
            NodeShutdownError: this runtime was shut down (or crashed).
        """
        if self._closed:
            raise NodeShutdownError(
                f"cannot send to {cell.describe()}: the runtime of node {self._node_id!r} "
                "was shut down"
            )
        target = cell.runtime
        assert isinstance(target, PykkaRuntime)
        return self._network.route(self._node_id, target, not cell.stopped.is_set(), len(msg))

    def undeliverable(self) -> None:
        """A routed message found its target stopped at the mailbox."""
        self._network.undeliverable()

    # -- timers -----------------------------------------------------------------

    def _timer_target(
        self, ref: ActorRef, msg: Any
    ) -> tuple[Callable[[], bool], Callable[[], None]]:
        target: PykkaActorRef | RemoteActorRef = (
            ref if isinstance(ref, RemoteActorRef) else _pykka_ref(ref)
        )
        target.check_message(msg)
        return (lambda: target.alive), (lambda: target.send(msg))

    # -- groups -----------------------------------------------------------------

    def join_group(self, name: str, ref: ActorRef) -> None:
        """Add a local actor to the cluster-wide group ``name`` (joining twice is a no-op).

        Raises:
            ValueError: ``ref`` is hosted by another runtime.
            ActorSendError: the actor is stopped.
            NodeShutdownError: the runtime was shut down.
        """
        cell = self._local_cell(ref)
        with self._lock:
            self._check_open(f"join group {name!r}")
            if cell.stopped.is_set():
                raise ActorSendError(f"{cell.describe()} is stopped; it cannot join {name!r}")
            changed = self._groups.join(name, cell)
        if changed:
            self._publish_groups()

    def leave_group(self, name: str, ref: ActorRef) -> None:
        """Remove a local actor from group ``name``; idempotent (also after shutdown).

        Raises:
            ValueError: ``ref`` is hosted by another runtime.
        """
        if self._groups.leave(name, self._local_cell(ref)):
            self._publish_groups()

    def _broadcast(self, name: str, msg: bytes) -> None:
        """One message per remote member; each is lost silently if a partition or a
        stopped target is in the way."""
        if self._tcp is not None:
            self._tcp.remote.cast(name, msg)
            return
        for ref in self._members(name):
            if not ref.is_local:
                ref.send(msg)

    def group_members(self, name: str) -> list[ActorRef]:
        """Every member of group ``name`` on every live node, sorted by (node_id, name).

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        if self._tcp is None:
            return list(self._members(name))
        self._check_open(f"list group {name!r}")
        refs: list[PykkaActorRef | RemoteActorRef] = [
            PykkaActorRef(cell, self) for cell in self._groups.members(name)
        ]
        refs += self._tcp.members(name)
        return sorted(refs, key=lambda ref: (ref.node_id, ref.name))

    def _members(self, name: str) -> list[PykkaActorRef]:
        self._check_open(f"list group {name!r}")
        return [
            PykkaActorRef(cell, self)
            for runtime in self._network.live_runtimes()
            if isinstance(runtime, PykkaRuntime)
            for cell in runtime.local_members(name)
        ]

    def local_members(self, name: str) -> list[_Cell]:
        """This node's members of group ``name``."""
        return self._groups.members(name)

    # -- membership -------------------------------------------------------------

    @property
    def cluster_events(self) -> ClusterEvents:
        """Membership notifications for this node (``NodeJoined`` / ``NodeLeft``)."""
        return self._events

    # -- lifecycle --------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop this runtime's actors and timers and leave the network; idempotent.

        Concurrency: may be called from any thread, including one of this
        runtime's handlers; waits at most about 1.2 s for handlers that are
        busy and returns even if one does not finish.
        """
        if self.halt():
            if self._tcp is not None:
                self._tcp.close()
                return
            self._network.leave(self)
            if self._owns_network:
                self._network.close()

    def halt(self) -> bool:
        """Stop actors and timers without leaving the network (a crash); False if already halted."""
        with self._lock:
            if not self._mark_closed():
                return False
            cells = list(self._cells.values())
            self._cells.clear()
            self._groups.clear()
        self.subscribers.clear()
        self._scheduler.close()
        for cell in cells:
            cell.stop()
        me = threading.get_ident()
        deadline = time.monotonic() + _STOP_WAIT
        for cell in cells:
            future = cell.stop_future
            if future is None or cell.thread_ident == me:
                continue
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                self._log.warning(
                    "%s did not stop in time; leaving its thread behind", cell.describe()
                )
        return True

    def _local_cell(self, ref: ActorRef) -> _Cell:
        cell = _pykka_ref(ref)._cell
        if cell.runtime is not self:
            raise ValueError(f"{ref!r} is not hosted by runtime {self._node_id!r}")
        return cell

    def __repr__(self) -> str:
        state = "shut down" if self._closed else "running"
        return f"<PykkaRuntime {self._node_id!r} {state}>"


def _pykka_ref(ref: ActorRef) -> PykkaActorRef:
    if not isinstance(ref, PykkaActorRef):
        raise TypeError(f"expected a ref from a PykkaRuntime, got {type(ref).__name__}")
    return ref


if TYPE_CHECKING:

    def _conforms(runtime: PykkaRuntime) -> ActorRuntime:
        return runtime
