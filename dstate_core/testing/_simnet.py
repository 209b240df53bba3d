"""A seeded, single-threaded simulated network hosting :class:`TestRuntime` nodes.

Mechanics, in one place:

* The :class:`~._simloop.SimLoop` holds every wire delivery, timer and late
  ``NodeLeft`` notice in virtual time, and the actors with mail; driving
  (``run_until_idle``, ``advance``, ``run_until``, a waiting ``ask``) runs
  them in order, moving the clock only from event to event.
* Local sends skip the wire. Cross-node messages are ``bytes``, counted when
  sent (``messages_sent``/``bytes_sent``, one per destination), then subject
  to the :class:`~dstate_core.runtime.FaultModel` (partitions and link
  faults), then scheduled. Partitions are checked at send and at delivery, so
  a new partition loses in-flight messages.
* All randomness comes from one ``random.Random(seed)``: the same seed and the
  same calls replay the same run.

Concurrency: single-threaded; handlers, timers and cluster-event callbacks run
inside the driving loop and must not block in ``ask`` (that raises
``RuntimeError``, as it would deadlock a real actor).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ..model._errors import ActorSendError
from ..runtime._faults import FaultModel, non_negative_seconds
from ..runtime._protocol import (
    ActorAskTimeout,
    ActorRef,
    NodeJoined,
    NodeLeft,
    check_positive_seconds,
)
from ._clock import TestClock
from ._runtime import TestActorRef, TestRuntime, TestTimerHandle, _Actor, _AskSlot
from ._simloop import DEFAULT_MAX_EVENTS, SimLoop

__all__ = ["SimNetwork"]

_log = logging.getLogger("dstate.testing")


class _Delivery:
    """A message on the wire."""

    __slots__ = ("actor", "msg", "slot", "src")

    def __init__(self, src: str, actor: _Actor, msg: bytes, slot: _AskSlot | None) -> None:
        self.src = src
        self.actor = actor
        self.msg = msg
        self.slot = slot


class _LateNodeLeft:
    """The failure detector noticing a crashed node, ``failure_timeout`` later."""

    __slots__ = ("node_id",)

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id


class SimNetwork:
    """A deterministic in-memory network of :class:`TestRuntime` nodes.

    Args:
        clock: the shared virtual clock; only the network (or you) moves it.
        seed: seeds every random choice (faults, delays).
        failure_timeout: seconds between :meth:`crash` and the ``NodeLeft``
            the other nodes receive.

    Example::

        net = SimNetwork(TestClock(), seed=1)
        a, b = net.add_runtime("a"), net.add_runtime("b")
        ...  # spawn actors, send messages
        net.run_until_idle()   # deliver everything due now
        net.advance(2.0)       # fire timers / delayed messages over 2 virtual seconds

    Concurrency: single-threaded; not thread-safe.
    """

    def __init__(self, clock: TestClock, seed: int = 0, failure_timeout: float = 5.0) -> None:
        if not isinstance(clock, TestClock):
            raise TypeError(f"SimNetwork needs a TestClock, got {type(clock).__name__}")
        self._clock = clock
        self._seed = seed
        self.faults = FaultModel(failure_timeout, random.Random(seed))
        self._loop = SimLoop(clock, self._fire, self._pending)
        self._live: dict[str, TestRuntime] = {}
        self._groups: dict[str, dict[_Actor, None]] = {}
        self._sent = self._bytes = self._dropped = self._delivered = 0

    # -- properties -------------------------------------------------------

    @property
    def clock(self) -> TestClock:
        """The shared virtual clock."""
        return self._clock

    @property
    def seed(self) -> int:
        """The seed of the network's random choices."""
        return self._seed

    @property
    def failure_timeout(self) -> float:
        """Seconds from :meth:`crash` to the others' ``NodeLeft``."""
        return self.faults.failure_timeout

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent (one per destination), counted at send time."""
        return self._sent

    @property
    def bytes_sent(self) -> int:
        """Payload bytes of :attr:`messages_sent`."""
        return self._bytes

    @property
    def messages_dropped(self) -> int:
        """Cross-node messages lost: faults, partitions, dead targets."""
        return self._dropped

    @property
    def messages_delivered(self) -> int:
        """Cross-node messages (duplicates included) that reached a mailbox."""
        return self._delivered

    def reset_counters(self) -> None:
        """Zero :attr:`messages_sent`, :attr:`bytes_sent`, dropped and delivered."""
        self._sent = self._bytes = self._dropped = self._delivered = 0

    # -- membership -------------------------------------------------------

    def add_runtime(self, node_id: str) -> TestRuntime:
        """Create and join a node; the other live nodes get ``NodeJoined(node_id)``.

        Raises:
            ValueError: ``node_id`` is live already.
        """
        return TestRuntime(node_id, self)

    def runtime(self, node_id: str) -> TestRuntime:
        """The live runtime of ``node_id``.

        Raises:
            KeyError: no live node has that id.
        """
        try:
            return self._live[node_id]
        except KeyError:
            raise KeyError(f"node {node_id!r} is not live on this network") from None

    def live_nodes(self) -> list[str]:
        """Ids of the live nodes, sorted."""
        return sorted(self._live)

    def remove(self, node_id: str) -> None:
        """Clean leave: stop its actors and timers, lose messages to it, ``NodeLeft`` at once.

        Raises:
            KeyError: no live node has that id.
        """
        runtime = self.runtime(node_id)
        del self._live[node_id]
        runtime._stop("shut down")
        for other in list(self._live.values()):
            other._events._emit(NodeLeft(node_id))

    def crash(self, node_id: str) -> None:
        """Crash without goodbye; the others get ``NodeLeft`` after :attr:`failure_timeout`.

        The notice fires even if ``node_id`` was re-added meanwhile (a late
        ``NodeLeft``); it goes to the other live nodes, never to the new one.

        Raises:
            KeyError: no live node has that id.
        """
        runtime = self.runtime(node_id)
        del self._live[node_id]
        runtime._stop("crashed")
        self._loop.push(self._clock.now() + self.failure_timeout, _LateNodeLeft(node_id))

    def _attach(self, runtime: TestRuntime) -> None:
        node_id = runtime.node_id
        if node_id in self._live:
            raise ValueError(f"node {node_id!r} is already live on this network")
        self._live[node_id] = runtime
        for other in list(self._live.values()):
            if other is not runtime:
                other._events._emit(NodeJoined(node_id))

    # -- faults and partitions (see FaultModel) ---------------------------

    def set_faults(
        self,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        src: str | None = None,
        dst: str | None = None,
    ) -> None:
        """Set the faults of the links ``src -> dst`` (``None`` = any node).

        ``drop``/``duplicate``/``reorder`` are per-message probabilities;
        ``delay`` is a maximum: each message waits ``uniform(0, delay)``. A
        reordered message is queued up to 16 positions later (plus one more
        random delay when ``delay`` is set), so following messages overtake it.
        A later call overrides earlier ones on the links it matches.

        Raises:
            ValueError: a probability outside [0, 1] or a bad delay.
        """
        self.faults.set_faults(drop, duplicate, reorder, delay, src, dst)

    def clear_faults(self) -> None:
        """Remove every fault: a perfect network again."""
        self.faults.clear_faults()

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between ``groups`` (unlisted nodes form one more group).

        Messages between groups are dropped when sent and when due, so
        in-flight ones are lost too. A bare node id counts as a group of one.
        Replaces any previous partition; cluster events are not affected.

        Raises:
            ValueError: a node is listed in two groups.
        """
        self.faults.partition(*groups)

    def heal(self) -> None:
        """Remove the partition."""
        self.faults.heal()

    # -- sending ----------------------------------------------------------

    def inject(self, src: str, ref: ActorRef, data: bytes) -> None:
        """Put raw ``data`` in ``ref``'s mailbox now, as if node ``src`` sent it.

        Bypasses faults and partitions and is not counted as sent; a stopped
        target loses it (counted as dropped).

        Raises:
            TypeError: ``data`` is not ``bytes``.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"inject() needs bytes, got {type(data).__name__}")
        actor = self._resolve(ref)
        if not actor.alive:
            self._drop(src, actor, "the target is stopped")
            return
        _log.debug("injected %d bytes from %r into %s", len(data), src, actor.describe())
        self._delivered += 1
        actor.enqueue(data, None)

    def _resolve(self, ref: ActorRef) -> _Actor:
        if not isinstance(ref, TestActorRef):
            raise TypeError(f"expected a TestActorRef, got {type(ref).__name__}")
        actor = ref._actor
        if actor.runtime.network is not self:
            raise ValueError(f"{ref!r} belongs to another SimNetwork")
        return actor

    def _send(self, via: TestRuntime, actor: _Actor, msg: Any) -> None:
        if actor.runtime is via:
            if not actor.alive:
                raise ActorSendError(f"cannot send to {actor.describe()}: it is stopped")
            actor.enqueue(msg, None)
            return
        self._check_wire_message(actor, msg)
        via._check_open("send")
        self._wire_send(via.node_id, actor, msg, None)

    @staticmethod
    def _check_wire_message(actor: _Actor, msg: Any) -> None:
        if not isinstance(msg, bytes):
            raise TypeError(
                f"a message to {actor.describe()} (another node) must be bytes, "
                f"got {type(msg).__name__}"
            )

    def _wire_send(self, src: str, actor: _Actor, msg: bytes, slot: _AskSlot | None) -> None:
        self._sent += 1
        self._bytes += len(msg)
        if not actor.alive:
            self._drop(src, actor, "the target is stopped")
            return
        if self.faults.blocked(src, actor.node_id):
            self._drop(src, actor, "partitioned")
            return
        plan = self.faults.plan(src, actor.node_id)
        if not plan:
            self._drop(src, actor, "drop fault")
            return
        now = self._clock.now()
        for copy, (delay, later) in enumerate(plan):
            reply_to = slot if copy == 0 else None  # a duplicate is never answered
            self._loop.push(now + delay, _Delivery(src, actor, msg, reply_to), later)

    def _drop(self, src: str, actor: _Actor, why: str) -> None:
        self._dropped += 1
        _log.debug("dropped a message from %r to %s: %s", src, actor.describe(), why)

    def _mark_ready(self, actor: _Actor) -> None:
        self._loop.mark_ready(actor)

    # -- timers -----------------------------------------------------------

    def _start_timer(
        self, runtime: TestRuntime, ref: ActorRef, seconds: float, msg: Any, *, repeat: bool
    ) -> TestTimerHandle:
        runtime._check_open("start a timer")
        seconds = check_positive_seconds("timer seconds", seconds)
        actor = self._resolve(ref)
        if not actor.alive:
            raise ActorSendError(f"cannot start a timer for {actor.describe()}: it is stopped")
        if actor.runtime is not runtime:
            self._check_wire_message(actor, msg)
        timer = TestTimerHandle(runtime, actor, msg, seconds if repeat else None)
        self._loop.push(self._clock.now() + seconds, timer)
        return timer

    def _fire_timer(self, timer: TestTimerHandle) -> None:
        actor = timer.actor
        if actor.runtime is timer.runtime:
            actor.enqueue(timer.msg, None)
        else:
            self._wire_send(timer.runtime.node_id, actor, timer.msg, None)
        if timer.interval is None:
            timer.cancel()  # done
        else:
            self._loop.push(self._clock.now() + timer.interval, timer)

    # -- groups -----------------------------------------------------------

    def _join_group(self, name: str, actor: _Actor) -> None:
        self._groups.setdefault(name, {})[actor] = None

    def _leave_group(self, name: str, actor: _Actor) -> None:
        members = self._groups.get(name)
        if members is not None:
            members.pop(actor, None)
            if not members:
                del self._groups[name]

    def _forget_actor(self, actor: _Actor) -> None:
        for name in [n for n, members in self._groups.items() if actor in members]:
            self._leave_group(name, actor)

    def _group_actors(self, name: str) -> list[_Actor]:
        members = self._groups.get(name, {})
        alive = [a for a in members if a.alive and a.runtime.running]
        return sorted(alive, key=lambda a: (a.node_id, a.name))

    # -- driving ----------------------------------------------------------

    @contextmanager
    def _in_simulation(self) -> Iterator[None]:
        with self._loop.inside():
            yield

    def next_event_time(self) -> float | None:
        """When the next event is due (``clock.now()`` if mail is waiting), or None."""
        return self._loop.next_event_time()

    def run_until_idle(self, max_events: int = DEFAULT_MAX_EVENTS) -> int:
        """Deliver every message and due timer until nothing is due; time does not move.

        Returns:
            How many events (deliveries, timer firings, handled messages) ran.

        Raises:
            RuntimeError: more than ``max_events`` without going idle (a
                livelock), or called from inside a handler.
        """
        self._loop.check_outside("run_until_idle()")
        with self._loop.inside():
            return self._loop.drain(None, max_events)

    def advance(self, seconds: float, max_events: int = DEFAULT_MAX_EVENTS) -> int:
        """Move the clock ``seconds`` forward, stopping at each event time to process it.

        Ends at now + ``seconds`` with everything due processed.

        Returns:
            How many events ran.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
            RuntimeError: a livelock (``max_events`` at one instant) or called
                from inside a handler.
        """
        seconds = non_negative_seconds("advance(seconds)", seconds)
        self._loop.check_outside("advance()")
        with self._loop.inside():
            counter = [0]
            self._loop.run_to(None, self._clock.now() + seconds, max_events, counter)
            return counter[0]

    def run_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> bool:
        """Drive (moving time event by event) until ``predicate()`` holds or ``timeout`` passes.

        ``predicate`` is checked before each event. On timeout the clock
        stands at now + ``timeout``.

        Returns:
            Whether ``predicate()`` held.
        """
        timeout = non_negative_seconds("run_until(timeout)", timeout)
        self._loop.check_outside("run_until()")
        with self._loop.inside():
            return self._loop.run_to(predicate, self._clock.now() + timeout, max_events, [0])

    def _ask(self, via: TestRuntime, actor: _Actor, msg: Any, timeout: float) -> Any:
        timeout = check_positive_seconds("ask timeout", timeout)
        self._loop.check_outside("ask()")
        slot = _AskSlot()
        if actor.runtime is via:
            if not actor.alive:
                raise ActorSendError(f"cannot ask {actor.describe()}: it is stopped")
            actor.enqueue(msg, slot)
            with self._loop.inside():
                while not slot.handled and actor.mailbox:
                    actor.handle_next()
        else:
            self._check_wire_message(actor, msg)
            via._check_open("ask")
            self._wire_send(via.node_id, actor, msg, slot)
        if not slot.finished():
            deadline = self._clock.now() + timeout
            with self._loop.inside():
                done = self._loop.run_to(slot.finished, deadline, DEFAULT_MAX_EVENTS, [0])
            if not done:
                raise ActorAskTimeout(
                    f"ask to {actor.describe()} got no reply within {timeout}s (virtual time)"
                )
        return slot.result()

    @staticmethod
    def _pending(event: object) -> bool:
        return not isinstance(event, TestTimerHandle) or event.active

    def _fire(self, event: object) -> bool:
        if isinstance(event, _Delivery):
            actor = event.actor
            if not actor.alive:
                self._drop(event.src, actor, "the target stopped while in flight")
            elif self.faults.blocked(event.src, actor.node_id):
                self._drop(event.src, actor, "partitioned while in flight")
            else:
                self._delivered += 1
                actor.enqueue(event.msg, event.slot)
            return True
        if isinstance(event, TestTimerHandle):
            if not event.active:
                return False
            self._fire_timer(event)
            return True
        assert isinstance(event, _LateNodeLeft)
        for other in list(self._live.values()):
            if other.node_id != event.node_id:
                other._events._emit(NodeLeft(event.node_id))
        return True

    def __repr__(self) -> str:
        return (
            f"SimNetwork(seed={self._seed}, now={self._clock.now()}, nodes={self.live_nodes()}, "
            f"queued={self._loop.queued}, sent={self._sent}, dropped={self._dropped})"
        )
