"""The simulated network's engine room: one event queue, one ready queue, one virtual clock.

* Events (wire deliveries, timers, late ``NodeLeft`` notices) wait in a heap
  ordered by ``(due_time, order, seq)``; each actor has a FIFO mailbox, and
  actors with mail wait in a round-robin ready queue.
* Driving (:meth:`SimLoop.drain`, :meth:`SimLoop.run_to`) repeatedly takes the
  next due event, else one message of the next ready actor. Time moves only in
  :meth:`SimLoop.run_to`, and only to the next event time (``TestClock.set``).
* While it drives, handlers, timers and callbacks run "inside" the simulation;
  a blocking call from there would deadlock a real actor, so
  :meth:`SimLoop.check_outside` refuses it.

Concurrency: single-threaded.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from ._clock import TestClock

__all__ = ["DEFAULT_MAX_EVENTS", "Mailbox", "SimLoop"]

DEFAULT_MAX_EVENTS = 1_000_000


class Mailbox(Protocol):
    """An actor as the ready queue sees it."""

    queued: bool

    @property
    def alive(self) -> bool:
        """False once stopped."""
        ...

    def has_mail(self) -> bool:
        """True while messages wait."""
        ...

    def handle_next(self) -> None:
        """Handle the oldest message."""
        ...


class SimLoop:
    """Events in virtual time and actors with mail, driven in one thread.

    Args:
        clock: the virtual clock the loop moves.
        fire: runs one due event; returns False if it turned out to be a no-op
            (a cancelled timer), so the loop looks for the next one.
        pending: True if a queued event may still fire (cancelled timers are not).
    """

    def __init__(
        self,
        clock: TestClock,
        fire: Callable[[object], bool],
        pending: Callable[[object], bool],
    ) -> None:
        self.clock = clock
        self._fire = fire
        self._pending = pending
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._ready: deque[Mailbox] = deque()
        self._depth = 0  # > 0 while handlers/timers/callbacks may run

    @property
    def queued(self) -> int:
        """Events in the queue (cancelled timers included until they come due)."""
        return len(self._heap)

    def push(self, due: float, event: object, later: int = 0) -> None:
        """Queue ``event`` for time ``due``, after ``later`` more events of that time."""
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq + later, self._seq, event))

    def mark_ready(self, actor: Mailbox) -> None:
        """``actor`` has mail: queue it for a turn (once)."""
        if not actor.queued:
            actor.queued = True
            self._ready.append(actor)

    @contextmanager
    def inside(self) -> Iterator[None]:
        """Code run within marks the simulation as busy (see :meth:`check_outside`)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def check_outside(self, what: str) -> None:
        """Raise if called from a handler, timer or callback of the simulation.

        Raises:
            RuntimeError: inside the simulation.
        """
        if self._depth:
            raise RuntimeError(
                f"{what} called from inside a handler, timer or cluster-event callback of the "
                "simulated network: a blocking ask inside a handler would deadlock; send a "
                "message instead (and answer later with a PendingReply)"
            )

    def next_event_time(self) -> float | None:
        """When the next event is due (now if mail is waiting), or None."""
        if self._ready:
            return self.clock.now()
        heap = self._heap
        while heap:
            if not self._pending(heap[0][3]):
                heapq.heappop(heap)
                continue
            return heap[0][0]
        return None

    def run_to(
        self,
        done: Callable[[], bool] | None,
        deadline: float,
        max_events: int,
        counter: list[int],
    ) -> bool:
        """Process events up to ``deadline``, stepping the clock; True once ``done()`` holds."""
        clock = self.clock
        while True:
            counter[0] += self.drain(done, max_events)
            if done is not None and done():
                return True
            if clock.now() >= deadline:
                return False
            due = self.next_event_time()
            clock.set(deadline if due is None or due > deadline else due)

    def drain(self, done: Callable[[], bool] | None, max_events: int) -> int:
        """Process everything due now (stopping early once ``done()``); count the events.

        Raises:
            RuntimeError: more than ``max_events`` without going idle (a livelock).
        """
        events = 0
        while not (done is not None and done()) and self._step():
            events += 1
            if events > max_events:
                raise RuntimeError(
                    f"the simulated network did not go idle after {max_events} events at "
                    f"t={self.clock.now()}: a livelock (actors keep messaging each other "
                    "with no delay)?"
                )
        return events

    def _step(self) -> bool:
        """Run one due event, else one message of the next ready actor; False when idle."""
        heap = self._heap
        now = self.clock.now()
        while heap and heap[0][0] <= now:
            if self._fire(heapq.heappop(heap)[3]):
                return True
        ready = self._ready
        while ready:
            actor = ready.popleft()
            actor.queued = False
            if actor.alive and actor.has_mail():
                actor.handle_next()
                if actor.alive and actor.has_mail():
                    self.mark_ready(actor)
                return True
        return False
