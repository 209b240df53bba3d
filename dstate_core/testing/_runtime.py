"""``TestRuntime``: the deterministic :class:`~dstate_core.runtime.ActorRuntime`.

A ``TestRuntime`` is one node of a :class:`~dstate_core.testing.SimNetwork`. It
owns its actors (name -> handler + FIFO mailbox), but never runs anything on
its own: the network runs handlers when it is driven (``run_until_idle``,
``advance``, ``run_until``) or when a caller blocks in ``ask``. Everything is
single-threaded and seeded, so a test replays exactly.

Build a cluster with ``net = SimNetwork(TestClock())`` and then
``TestRuntime("a", net)`` (or ``net.add_runtime("a")``) per node.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..model._errors import ActorSendError, NodeShutdownError
from ..runtime._base import RuntimeBase
from ..runtime._events import EventCallback, Subscribers
from ..runtime._protocol import (
    ActorRef,
    ClusterEvent,
    Handler,
    NodeJoined,
    PendingReply,
    SubscriptionId,
)
from ._clock import TestClock

__all__ = ["TestActorRef", "TestClusterEvents", "TestRuntime", "TestTimerHandle"]

_log = logging.getLogger("dstate.testing")


class SimWire(Protocol):
    """The simulated network as its nodes see it (:class:`~dstate_core.testing.SimNetwork`)."""

    @property
    def clock(self) -> TestClock:
        """The shared virtual clock."""
        ...

    def live_nodes(self) -> list[str]:
        """Ids of the live nodes, sorted."""
        ...

    def remove(self, node_id: str) -> None:
        """Take ``node_id`` out cleanly."""
        ...

    def _attach(self, runtime: TestRuntime) -> None: ...
    def _in_simulation(self) -> AbstractContextManager[None]: ...
    def _mark_ready(self, actor: _Actor) -> None: ...
    def _forget_actor(self, actor: _Actor) -> None: ...
    def _resolve(self, ref: ActorRef) -> _Actor: ...
    def _send(self, via: TestRuntime, actor: _Actor, msg: Any) -> None: ...
    def _ask(self, via: TestRuntime, actor: _Actor, msg: Any, timeout: float) -> Any: ...
    def _wire_send(self, src: str, actor: _Actor, msg: bytes, slot: _AskSlot | None) -> None: ...
    def _join_group(self, name: str, actor: _Actor) -> None: ...
    def _leave_group(self, name: str, actor: _Actor) -> None: ...
    def _group_actors(self, name: str) -> list[_Actor]: ...
    def _start_timer(
        self, runtime: TestRuntime, ref: ActorRef, seconds: float, msg: Any, *, repeat: bool
    ) -> TestTimerHandle: ...


class _AskSlot:
    """Where the reply to one ``ask`` lands."""

    __slots__ = ("error", "handled", "pending", "value")

    def __init__(self) -> None:
        self.handled = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.pending: PendingReply | None = None

    def finished(self) -> bool:
        """The handler ran and any :class:`PendingReply` it returned is resolved."""
        return self.handled and (self.pending is None or self.pending.done)

    def set_result(self, result: Any) -> None:
        self.handled = True
        if isinstance(result, PendingReply):
            self.pending = result
        else:
            self.value = result

    def set_error(self, error: BaseException) -> None:
        self.handled = True
        self.error = error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        if self.pending is not None:
            return self.pending.result()
        return self.value


class _Actor:
    """One spawned actor: its handler and FIFO mailbox of ``(msg, ask slot)``."""

    __slots__ = ("alive", "handler", "mailbox", "name", "queued", "runtime")

    def has_mail(self) -> bool:
        """True while messages wait in the mailbox."""
        return bool(self.mailbox)

    def __init__(self, runtime: TestRuntime, name: str, handler: Handler) -> None:
        self.runtime = runtime
        self.name = name
        self.handler = handler
        self.mailbox: deque[tuple[Any, _AskSlot | None]] = deque()
        self.alive = True
        self.queued = False  # in the network's ready queue

    @property
    def node_id(self) -> str:
        return self.runtime.node_id

    def describe(self) -> str:
        return f"actor {self.name!r} on node {self.node_id!r}"

    def enqueue(self, msg: Any, slot: _AskSlot | None) -> None:
        """Append to the mailbox (the caller checked :attr:`alive`)."""
        self.mailbox.append((msg, slot))
        self.runtime.network._mark_ready(self)

    def handle_next(self) -> None:
        """Run the handler on the oldest message; log (and answer an ask with) any error."""
        msg, slot = self.mailbox.popleft()
        try:
            result = self.handler(msg)
        except Exception as exc:
            _log.error(
                "%s raised %s while handling a %s message",
                self.describe(),
                type(exc).__name__,
                type(msg).__name__,
                exc_info=exc,
            )
            if slot is not None:
                slot.set_error(exc)
            return
        if slot is not None:
            slot.set_result(result)

    def stop(self) -> None:
        """Stop for good: discard the mailbox (failing queued asks), leave every group."""
        if not self.alive:
            return
        self.alive = False
        while self.mailbox:
            _msg, slot = self.mailbox.popleft()
            if slot is not None:
                slot.set_error(ActorSendError(f"{self.describe()} stopped before it replied"))
        self.runtime.network._forget_actor(self)
        if self.runtime._actors.get(self.name) is self:
            del self.runtime._actors[self.name]


class TestActorRef:
    """A handle to an actor of a :class:`SimNetwork`, as seen from one node.

    Refs to the same actor compare equal whichever node they were obtained on.
    ``send`` and ``ask`` go from the node the ref was obtained on (its
    ``spawn`` or ``group_members`` runtime): to an actor on that node they go
    straight to the mailbox; to another node they must be ``bytes`` and cross
    the simulated wire (faults, partitions, delay). A remote ask's reply comes
    back directly (not over the wire).

    Concurrency: single-threaded, like the whole simulation.
    """

    __test__ = False  # not a pytest test class
    __slots__ = ("_actor", "_via")

    def __init__(self, actor: _Actor, via: TestRuntime) -> None:
        self._actor = actor
        self._via = via

    @property
    def node_id(self) -> str:
        """The node that hosts the actor."""
        return self._actor.node_id

    @property
    def name(self) -> str:
        """The name the actor was spawned with."""
        return self._actor.name

    @property
    def alive(self) -> bool:
        """False once the actor was stopped (or its node shut down or crashed)."""
        return self._actor.alive

    def send(self, msg: Any) -> None:
        """Fire and forget; delivered when the network is driven.

        Raises:
            ActorSendError: a local actor is stopped (a stopped remote actor
                silently loses the message, as on a real network).
            TypeError: a non-``bytes`` message to another node.
            NodeShutdownError: the sending node was shut down or crashed.
        """
        self._via.network._send(self._via, self._actor, msg)

    def ask(self, msg: Any, timeout: float) -> Any:
        """Send and drive the simulation until the reply (virtual ``timeout``).

        A local actor handles its mailbox up to ``msg`` at once; if its handler
        returned an unresolved :class:`PendingReply`, the whole network runs,
        moving the clock event by event but never past now + ``timeout``.

        Raises:
            ActorAskTimeout: no reply within ``timeout`` virtual seconds (the
                clock is then at the deadline).
            ActorSendError: the actor is stopped.
            RuntimeError: called from inside a handler, timer or callback.
            Exception: whatever the handler raised.
        """
        return self._via.network._ask(self._via, self._actor, msg, timeout)

    def stop(self) -> None:
        """Stop the actor; idempotent. Queued messages are discarded."""
        self._actor.stop()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TestActorRef):
            return NotImplemented
        return other._actor is self._actor

    def __hash__(self) -> int:
        return hash(self._actor)

    def __repr__(self) -> str:
        state = "" if self._actor.alive else ", stopped"
        return f"TestActorRef(node_id={self.node_id!r}, name={self.name!r}{state})"


class TestTimerHandle:
    """A scheduled ``send_after``/``send_interval``; :meth:`cancel` is idempotent."""

    __test__ = False  # not a pytest test class
    __slots__ = ("_cancelled", "actor", "interval", "msg", "runtime")

    def __init__(
        self, runtime: TestRuntime, actor: _Actor, msg: Any, interval: float | None
    ) -> None:
        self.runtime = runtime
        self.actor = actor
        self.msg = msg
        self.interval = interval
        self._cancelled = False

    @property
    def active(self) -> bool:
        """True while the timer may still fire."""
        return not self._cancelled and self.runtime.running and self.actor.alive

    def cancel(self) -> None:
        """Stop the timer; it never fires again. Idempotent."""
        self._cancelled = True

    def __repr__(self) -> str:
        kind = "once" if self.interval is None else f"every {self.interval}s"
        return f"TestTimerHandle({self.actor.describe()}, {kind}, active={self.active})"


class TestClusterEvents:
    """A node's membership notifications; callbacks run synchronously on the network.

    Concurrency: callbacks run inside the simulation (like handlers), so they
    must not ``ask``; they usually just ``send`` to an actor. A raising
    callback is logged and the others still run.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, runtime: TestRuntime) -> None:
        self._runtime = runtime
        self._subscribers = Subscribers(runtime.node_id)

    def subscribe(self, callback: EventCallback) -> SubscriptionId:
        """Replay ``NodeJoined`` for every other live node (sorted), then report changes.

        Raises:
            NodeShutdownError: the runtime was shut down or crashed.
        """
        self._runtime._check_open("subscribe to cluster events")
        subscription = self._subscribers.add(callback)
        own = self._runtime.node_id
        with self._runtime.network._in_simulation():
            for node_id in self._runtime.network.live_nodes():
                if node_id != own:
                    self._subscribers.call(callback, NodeJoined(node_id))
        return subscription

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        """Stop calling the callback; unknown ids are ignored."""
        self._subscribers.discard(subscription)

    def _emit(self, event: ClusterEvent) -> None:
        with self._runtime.network._in_simulation():
            self._subscribers.emit(event)

    def _clear(self) -> None:
        self._subscribers.clear()


class TestRuntime(RuntimeBase):
    """One node of a :class:`SimNetwork`; implements ``ActorRuntime``.

    ``TestRuntime(node_id, network)`` joins the network at once (the other
    live nodes get ``NodeJoined``); ``network.add_runtime(node_id)`` does the
    same. Handlers, timers and cluster-event callbacks run only while the
    network is driven or an ``ask`` waits; none of them may block in ``ask``.

    Raises:
        ValueError: ``node_id`` is empty or already live on the network.

    Concurrency: single-threaded; not thread-safe.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, node_id: str, network: SimWire) -> None:
        super().__init__(node_id)
        self._network = network
        self._actors: dict[str, _Actor] = {}
        self._events = TestClusterEvents(self)
        self._state = "running"
        network._attach(self)

    @property
    def network(self) -> SimWire:
        """The simulated network this node lives on."""
        return self._network

    @property
    def clock(self) -> TestClock:
        """The network's (shared) clock."""
        return self._network.clock

    @property
    def running(self) -> bool:
        """False once shut down, removed or crashed."""
        return self._state == "running"

    @property
    def cluster_events(self) -> TestClusterEvents:
        """Membership notifications for this node."""
        return self._events

    def _spawn(self, name: str, handler: Handler) -> TestActorRef:
        """An actor of this node (arguments checked by :meth:`RuntimeBase.spawn`)."""
        if name in self._actors:
            raise ValueError(
                f"an actor named {name!r} is already running on node {self._node_id!r}"
            )
        actor = _Actor(self, name, handler)
        self._actors[name] = actor
        return TestActorRef(actor, self)

    def actor(self, name: str) -> TestActorRef:
        """The running local actor called ``name``.

        Raises:
            KeyError: no running actor of this node has that name.
        """
        try:
            return TestActorRef(self._actors[name], self)
        except KeyError:
            raise KeyError(f"no running actor named {name!r} on node {self._node_id!r}") from None

    def send_after(self, ref: ActorRef, seconds: float, msg: Any) -> TestTimerHandle:
        """Send ``msg`` to ``ref`` once, ``seconds`` of virtual time from now.

        Raises:
            NodeShutdownError: the runtime was shut down or crashed.
            ActorSendError: the target actor is stopped.
            ValueError: ``seconds`` is not a finite number > 0.
            TypeError: a non-``bytes`` message to another node.
        """
        return self._network._start_timer(self, ref, seconds, msg, repeat=False)

    def send_interval(self, ref: ActorRef, seconds: float, msg: Any) -> TestTimerHandle:
        """Send ``msg`` to ``ref`` every ``seconds`` (first after ``seconds``).

        Raises: as :meth:`send_after`.
        """
        return self._network._start_timer(self, ref, seconds, msg, repeat=True)

    def join_group(self, name: str, ref: ActorRef) -> None:
        """Add a local actor to the cluster-wide group ``name`` (idempotent).

        Raises:
            NodeShutdownError: the runtime was shut down or crashed.
            ValueError: ``ref`` is not an actor of this node.
            ActorSendError: the actor is stopped.
        """
        self._check_open("join a group")
        actor = self._local_actor(ref, "join_group")
        if not actor.alive:
            raise ActorSendError(f"cannot join group {name!r}: {actor.describe()} is stopped")
        self._network._join_group(name, actor)

    def leave_group(self, name: str, ref: ActorRef) -> None:
        """Remove a local actor from group ``name``; idempotent.

        Raises:
            ValueError: ``ref`` is not an actor of this node.
        """
        actor = self._local_actor(ref, "leave_group")
        self._network._leave_group(name, actor)

    def _broadcast(self, name: str, msg: bytes) -> None:
        """Send ``msg`` over the wire to every member of ``name`` on other nodes."""
        for actor in self._network._group_actors(name):
            if actor.runtime is not self:
                self._network._wire_send(self._node_id, actor, msg, None)

    def group_members(self, name: str) -> list[ActorRef]:
        """Every member of ``name`` on every live node, sorted by (node_id, name).

        Raises:
            NodeShutdownError: the runtime was shut down or crashed.
        """
        self._check_open("list group members")
        return [TestActorRef(actor, self) for actor in self._network._group_actors(name)]

    def shutdown(self) -> None:
        """Stop every actor and timer and leave the network cleanly; idempotent."""
        if self.running:
            self._network.remove(self._node_id)

    def _stop(self, state: str) -> None:
        """Called by the network: stop everything; ``state`` is "shut down" or "crashed"."""
        self._state = state
        self._mark_closed()
        self._events._clear()
        for actor in list(self._actors.values()):
            actor.stop()

    def _check_open(self, what: str) -> None:
        """Raise :class:`NodeShutdownError`, saying whether the node shut down or crashed."""
        if self._state != "running":
            raise NodeShutdownError(
                f"cannot {what}: the runtime of node {self._node_id!r} was {self._state}"
            )

    def _local_actor(self, ref: ActorRef, what: str) -> _Actor:
        actor = self._network._resolve(ref)
        if actor.runtime is not self:
            raise ValueError(
                f"{what} takes an actor of node {self._node_id!r}, got {actor.describe()}"
            )
        return actor

    def __repr__(self) -> str:
        return f"TestRuntime(node_id={self._node_id!r}, {self._state}, actors={len(self._actors)})"
