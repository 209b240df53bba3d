"""``PykkaRuntime``: the ``ActorRuntime`` port on Pykka threads (SPEC §8).

One runtime is one node. Its actors are Pykka ``ThreadingActor`` s, its timers
share one scheduler thread, and its groups and membership go through a
:class:`~dstate_pykka._network.PykkaNetwork` (a private one-node network when
none is given). Pykka's process-global ``ActorRegistry`` is never used for
lookups or ``stop_all``, so many runtimes can share a process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dstate_core.model import ActorSendError, NodeShutdownError
from dstate_core.runtime import (
    ActorRef,
    ClusterEvent,
    Handler,
    LocalGroups,
    SchedulerTimers,
    SubscriptionId,
    TimerScheduler,
)

from ._actor import PykkaActorRef, _Cell, _HandlerActor
from ._network import PykkaNetwork

if TYPE_CHECKING:
    from dstate_core.runtime import ActorRuntime, ClusterEvents

__all__ = ["PykkaRuntime"]

_log = logging.getLogger("dstate.pykka")

#: ``shutdown()`` waits at most this long for actors to finish their current message.
_STOP_WAIT = 1.2


class _ClusterEvents:
    """One runtime's membership subscribers (see :meth:`PykkaRuntime.cluster_events`)."""

    def __init__(self, runtime: PykkaRuntime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[ClusterEvent], None]] = {}
        self._next_id = 1

    def subscribe(self, callback: Callable[[ClusterEvent], None]) -> SubscriptionId:
        """Call ``callback`` with ``NodeJoined`` for every other member, then on changes.

        Concurrency: callbacks run on the thread that caused the change (a
        ``PykkaRuntime`` constructor, ``shutdown``, or the network's failure
        timer) and must not block; one subscriber's exception is logged and
        does not affect others.

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        self._runtime._check_open("subscribe to cluster events")
        return self._runtime.network._subscribe(self._runtime, callback)

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling the callback; unknown ids are ignored."""
        with self._lock:
            self._callbacks.pop(subscription, None)

    def _add(self, callback: Callable[[ClusterEvent], None]) -> SubscriptionId:
        with self._lock:
            sid = self._next_id
            self._next_id += 1
            self._callbacks[sid] = callback
            return SubscriptionId(sid)

    def _snapshot(self) -> list[Callable[[ClusterEvent], None]]:
        with self._lock:
            return list(self._callbacks.values())

    def _clear(self) -> None:
        with self._lock:
            self._callbacks.clear()


class PykkaRuntime(SchedulerTimers):
    """One node's actor system on Pykka threads, joined to a :class:`PykkaNetwork`.

    Args:
        node_id: unique among the network's live members.
        network: the in-process cluster to join; ``None`` makes a private
            one-node cluster.

    Raises:
        ValueError: ``node_id`` is empty or already a live member of ``network``.

    Concurrency: every method is thread-safe. Handlers run one message at a
    time on their actor's thread; timers fire from one scheduler thread.
    ``shutdown()`` returns within about 2 s and is idempotent; afterwards
    ``spawn``, timers, groups and cross-node sends raise
    :class:`NodeShutdownError`, and sends to its own (stopped) actors raise
    :class:`ActorSendError`.
    """

    def __init__(self, node_id: str, network: PykkaNetwork | None = None) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"node_id must be a non-empty str, got {node_id!r}")
        self._node_id = node_id
        self._owns_network = network is None
        self._network = PykkaNetwork() if network is None else network
        self._lock = threading.RLock()
        self._closed = False
        self._cells: dict[str, _Cell] = {}
        self._groups: LocalGroups[_Cell] = LocalGroups()
        self._events = _ClusterEvents(self)
        self._scheduler = TimerScheduler(node_id)
        self._network._join(self)

    # -- identity ---------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id, unique in the cluster."""
        return self._node_id

    @property
    def network(self) -> PykkaNetwork:
        """The in-process cluster this runtime joined."""
        return self._network

    @property
    def is_shut_down(self) -> bool:
        """True after :meth:`shutdown` (or a simulated crash)."""
        with self._lock:
            return self._closed

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

    def spawn(self, name: str, handler: Handler) -> PykkaActorRef:
        """Start an actor (a Pykka ``ThreadingActor``) that runs ``handler`` per message.

        Raises:
            ValueError: ``name`` is empty or used by a running actor of this runtime.
            TypeError: ``handler`` is not callable.
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open(f"spawn actor {name!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"actor name must be a non-empty str, got {name!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        with self._lock:
            self._check_open(f"spawn actor {name!r}")
            if name in self._cells:
                raise ValueError(f"an actor named {name!r} is already running on {self._node_id!r}")
            cell = _Cell(self, name)
            cell.pykka_ref = _HandlerActor.start(cell, handler)
            self._cells[name] = cell
        return PykkaActorRef(cell, self)

    def _forget(self, cell: _Cell) -> None:
        """Drop a stopping actor from this runtime's names and groups."""
        with self._lock:
            if self._cells.get(cell.name) is cell:
                del self._cells[cell.name]
        self._groups.forget(cell)

    # -- timers -----------------------------------------------------------------

    def _timer_target(
        self, ref: ActorRef, msg: Any
    ) -> tuple[Callable[[], bool], Callable[[], None]]:
        target = _pykka_ref(ref)
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
            self._groups.join(name, cell)

    def leave_group(self, name: str, ref: ActorRef) -> None:
        """Remove a local actor from group ``name``; idempotent (also after shutdown).

        Raises:
            ValueError: ``ref`` is hosted by another runtime.
        """
        self._groups.leave(name, self._local_cell(ref))

    def broadcast_group(self, name: str, msg: Any) -> None:
        """Send ``msg`` to every member of ``name`` on other nodes.

        One message per remote member; each is lost silently if a partition
        or a stopped target is in the way.

        Raises:
            TypeError: ``msg`` is not ``bytes``.
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open(f"broadcast to group {name!r}")
        if not isinstance(msg, bytes):
            raise TypeError(f"broadcast_group({name!r}) needs bytes, got {type(msg).__name__}")
        for ref in self._members(name):
            if not ref.is_local:
                ref.send(msg)

    def group_members(self, name: str) -> list[ActorRef]:
        """Every member of group ``name`` on every live node, sorted by (node_id, name).

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        return list(self._members(name))

    def _members(self, name: str) -> list[PykkaActorRef]:
        self._check_open(f"list group {name!r}")
        return [
            PykkaActorRef(cell, self)
            for runtime in self._network._live_runtimes()
            for cell in runtime._local_members(name)
        ]

    def _local_members(self, name: str) -> list[_Cell]:
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
        if self._halt():
            self._network._leave(self)
            if self._owns_network:
                self._network.close()

    def _halt(self) -> bool:
        """Stop actors and timers without leaving the network; False if already halted."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            cells = list(self._cells.values())
            self._cells.clear()
            self._groups.clear()
        self._events._clear()
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
                _log.warning("%s did not stop in time; leaving its thread behind", cell.describe())
        return True

    def _check_open(self, what: str) -> None:
        with self._lock:
            if self._closed:
                raise NodeShutdownError(f"runtime {self._node_id!r} is shut down; cannot {what}")

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
