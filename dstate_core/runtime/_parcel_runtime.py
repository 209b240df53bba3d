"""A runtime whose actors are threads in this process and whose peers are reached by parcels.

:class:`ParcelRuntime` is everything such a runtime does the same way
whatever carries its parcels: thread actors (:class:`ThreadedActorHost`),
timers (:class:`TimerScheduler`), its own groups (:class:`LocalGroups`), and
the traffic to and from peers (:class:`RemoteTraffic`). A subclass connects it
to a transport: it implements :meth:`ParcelRuntime._post` (hand a parcel to
the transport) and feeds what the transport receives to
:meth:`ParcelRuntime.remote` (``on_parcel``, ``on_view``). ``ThespianRuntime``
is one (its transport is Thespian's actor systems).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from .._logs import NodeLog
from ..model._errors import ActorSendError, NodeShutdownError
from ._base import RuntimeBase
from ._events import ClusterEventsView
from ._faults import FaultModel
from ._groups import LocalGroups
from ._parcels import ALL_PEERS, Parcel
from ._protocol import ActorRef, ClusterEvents, Handler
from ._remote import RemoteActorRef, RemoteTraffic
from ._scheduler import SchedulerTimers, TimerScheduler
from ._threaded import ThreadedActor, ThreadedActorHost, ThreadedActorRef

__all__ = ["ParcelRuntime"]

#: How often a join wait checks for ``cancel`` or a shutdown.
_CANCEL_POLL = 0.05


class ParcelRuntime(RuntimeBase, SchedulerTimers):
    """The transport-independent part of a multi-process runtime.

    Args:
        node_id: unique in the cluster (``"*"`` is reserved).
        log: where actor failures are logged (its records name this node).
        faults: a test cluster's fault model: data from a node it separates
            from this one is dropped (membership traffic passes).

    Concurrency: every method is thread-safe. Handlers run one message at a
    time on their actor's thread, timers on one scheduler thread; the
    transport delivers on its own thread.
    """

    threaded = True

    def __init__(self, node_id: str, log: logging.Logger, faults: FaultModel | None = None) -> None:
        super().__init__(node_id, reserved=(ALL_PEERS,))
        self._log = NodeLog(log.name, node_id)
        self._inc = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._actors = ThreadedActorHost(node_id, self._log)
        self._scheduler = TimerScheduler(node_id)
        self._groups: LocalGroups[ThreadedActor] = LocalGroups()
        self.remote = RemoteTraffic(
            node_id,
            self._inc,
            self._post,
            self,
            faults,
            later=lambda delay, fire: self._scheduler.schedule(delay, None, fire),
        )
        self._events = ClusterEventsView(self.remote.directory, self._check_open)

    # -- what a subclass provides -----------------------------------------------------

    def _post(self, parcel: Parcel) -> None:
        """Hand ``parcel`` to the transport; never blocks."""
        raise NotImplementedError

    # -- inspection -------------------------------------------------------------------

    @property
    def incarnation(self) -> str:
        """A random id of this runtime instance (a restarted node has a new one)."""
        return self._inc

    @property
    def peers(self) -> list[str]:
        """The joined peers (reachable, with their group tables known), sorted."""
        return sorted(self.remote.directory.joined())

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent (one per destination actor: a broadcast to 2 peers is 2)."""
        return self.remote.messages_sent

    @property
    def bytes_sent(self) -> int:
        """Payload bytes of :attr:`messages_sent`."""
        return self.remote.bytes_sent

    @property
    def messages_dropped(self) -> int:
        """Inbound messages dropped: from a non-member, unknown actor, a partition, or malformed."""
        return self.remote.drops.total()

    @property
    def drops(self) -> dict[str, int]:
        """:attr:`messages_dropped` by reason (``"not a member"``, ``"no such actor here"``...)."""
        return self.remote.drops.counts()

    def actor_names(self) -> list[str]:
        """Names of this runtime's running actors."""
        return self._actors.names()

    @property
    def cluster_events(self) -> ClusterEvents:
        """Membership notifications for this node (``NodeJoined`` / ``NodeLeft``)."""
        return self._events

    # -- actors -----------------------------------------------------------------------

    def remote_ref(self, node_id: str, name: str) -> RemoteActorRef:
        """A ref to the actor called ``name`` on node ``node_id`` (it may not exist)."""
        return RemoteActorRef(self.remote, node_id, name)

    def _spawn(self, name: str, handler: Handler) -> ThreadedActorRef:
        """A thread actor in this process (see :meth:`RuntimeBase.spawn`)."""
        try:
            actor = self._actors.spawn(name, handler)
        except ActorSendError:
            raise NodeShutdownError(f"runtime {self._node_id!r} is shut down") from None
        return ThreadedActorRef(actor, self)

    def stop_actor(self, actor: ThreadedActor) -> None:
        """Stop one of this runtime's actors and take it out of its groups; idempotent."""
        changed = self._groups.forget(actor)
        self._actors.stop(actor)
        if changed:
            self.remote.publish_groups()

    def local_actor(self, name: str) -> ThreadedActor | None:
        """The running actor called ``name``, if any."""
        return self._actors.get(name)

    def local_members(self, group: str) -> list[ThreadedActor]:
        """This node's members of ``group``."""
        return self._groups.members(group)

    def group_table(self) -> dict[str, list[str]]:
        """Every group with the names of this node's members."""
        return self._groups.table()

    def _timer_target(
        self, ref: ActorRef, msg: Any
    ) -> tuple[Callable[[], bool], Callable[[], None]]:
        target = self._ref(ref)
        target.check_message(msg)
        # A remote target's liveness is unknown here: its node drops what it cannot deliver.
        return (lambda: not target.is_local or target.alive), (lambda: target.send(msg))

    # -- groups -----------------------------------------------------------------------

    def join_group(self, name: str, ref: ActorRef) -> None:
        """Add a local actor to the cluster-wide group ``name`` (joining twice is a no-op).

        Raises:
            ValueError: ``ref`` is not an actor of this runtime.
            ActorSendError: the actor is stopped.
            NodeShutdownError: the runtime was shut down.
        """
        actor = self._local_actor(ref)
        with self._lock:
            self._check_open(f"join group {name!r}")
            if not actor.alive:
                raise ActorSendError(f"{actor.describe()} is stopped; it cannot join {name!r}")
            if not self._groups.join(name, actor):
                return
        self.remote.publish_groups()

    def leave_group(self, name: str, ref: ActorRef) -> None:
        """Remove a local actor from group ``name``; idempotent (also after shutdown).

        Raises:
            ValueError: ``ref`` is not an actor of this runtime.
        """
        if self._groups.leave(name, self._local_actor(ref)) and not self._closed:
            self.remote.publish_groups()

    def _broadcast(self, name: str, msg: bytes) -> None:
        """Cast ``msg`` to the group's members on every peer (lost silently if unreachable)."""
        self.remote.cast(name, msg)

    def group_members(self, name: str) -> list[ActorRef]:
        """Every member of ``name`` on this node and on every joined peer, by (node_id, name).

        Raises:
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open(f"list group {name!r}")
        refs: list[ThreadedActorRef | RemoteActorRef] = [
            ThreadedActorRef(actor, self) for actor in self._groups.members(name)
        ]
        refs += self.remote.members(name)
        return sorted(refs, key=lambda ref: (ref.node_id, ref.name))

    # -- joining and stopping ---------------------------------------------------------

    def _wait_joined(
        self, timeout: float, expect: Iterable[str], cancel: threading.Event | None
    ) -> bool:
        """Wait until the transport's view is complete, holds ``expect`` and every peer in
        it joined; ends early on ``cancel`` or a shutdown. False if ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        want = list(expect)
        while not (self._closed or (cancel is not None and cancel.is_set())):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.remote.directory.wait_settled(min(left, _CANCEL_POLL), want):
                return True
        return True

    def _halt_actors(self, wait: float) -> bool:
        """Stop actors, timers and remote traffic; False if already halted."""
        with self._lock:
            if not self._mark_closed():
                return False
            self._groups.clear()
        self.remote.directory.clear_subscribers()
        self._scheduler.close()
        for actor in self._actors.close(wait):
            self._log.warning(
                "%s did not stop in time; leaving its thread behind", actor.describe()
            )
        self.remote.close()
        return True

    def _local_actor(self, ref: ActorRef) -> ThreadedActor:
        target = self._ref(ref)
        if not isinstance(target, ThreadedActorRef) or target.owner is not self:
            raise ValueError(f"{ref!r} is not an actor of runtime {self._node_id!r}")
        return target.actor

    def _ref(self, ref: ActorRef) -> ThreadedActorRef | RemoteActorRef:
        if not isinstance(ref, ThreadedActorRef | RemoteActorRef):
            raise TypeError(
                f"expected a ref from a {type(self).__name__}, got {type(ref).__name__}"
            )
        return ref
