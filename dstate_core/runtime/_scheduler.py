"""One scheduler thread per runtime for ``send_after`` / ``send_interval``.

Timers live in a heap guarded by a :class:`threading.Condition`; a single daemon
thread sleeps until the earliest one is due. No :class:`threading.Timer` is
created per tick.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from .._logs import NodeLog
from ..model._errors import ActorSendError, NodeShutdownError
from ._protocol import ActorRef, check_positive_seconds

__all__ = ["ScheduledTimer", "SchedulerTimers", "TimerScheduler"]

#: How long ``close()`` waits for the scheduler thread to exit.
_JOIN_TIMEOUT = 0.5


class ScheduledTimer:
    """A handle to one scheduled message; :meth:`cancel` is idempotent and thread-safe.

    Concurrency: once ``cancel()`` returns, the timer never fires again (fires
    happen under the scheduler's lock).
    """

    __slots__ = ("_cancelled", "_due", "_fire", "_interval", "_scheduler")

    def __init__(
        self,
        scheduler: TimerScheduler,
        due: float,
        interval: float | None,
        fire: Callable[[], None],
    ) -> None:
        self._scheduler = scheduler
        self._due = due
        self._interval = interval
        self._fire = fire
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """True once cancelled (by the caller, or because its target died)."""
        return self._cancelled

    def cancel(self) -> None:
        """Stop the timer; idempotent, also after the runtime shut down."""
        self._scheduler._cancel(self)

    def __repr__(self) -> str:
        kind = "interval" if self._interval is not None else "once"
        state = "cancelled" if self._cancelled else "active"
        return f"<ScheduledTimer {kind} {state}>"


class TimerScheduler:
    """A heap of timers served by one lazily started daemon thread.

    Args:
        name: used for the thread's name (``dstate-timers-<name>``).

    Concurrency: every method is thread-safe. ``fire`` callbacks run on the
    scheduler thread while its lock is held, so they must not block; an
    :class:`ActorSendError` from one means the target died: the fire is dropped,
    counted in :attr:`dropped_fires` and the timer cancelled.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._log = NodeLog("dstate.timers", name)
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, ScheduledTimer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._cancelled_in_heap = 0

    @property
    def dropped_fires(self) -> int:
        """Fires dropped because their target actor was stopped."""
        with self._cond:
            return self._dropped

    @property
    def pending(self) -> int:
        """Timers still scheduled (not cancelled)."""
        with self._cond:
            return sum(1 for _, _, t in self._heap if not t._cancelled)

    def schedule(
        self, delay: float, interval: float | None, fire: Callable[[], None]
    ) -> ScheduledTimer:
        """Run ``fire`` after ``delay`` seconds, then every ``interval`` (if given).

        Raises:
            NodeShutdownError: the scheduler was closed.
        """
        with self._cond:
            if self._closed:
                raise NodeShutdownError(f"runtime {self._name!r} is shut down; cannot set a timer")
            timer = ScheduledTimer(self, time.monotonic() + delay, interval, fire)
            self._push(timer)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"dstate-timers-{self._name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
            return timer

    def close(self) -> None:
        """Cancel every timer and stop the thread (waits at most 0.5 s); idempotent."""
        with self._cond:
            self._closed = True
            for _, _, timer in self._heap:
                timer._cancelled = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    def _push(self, timer: ScheduledTimer) -> None:
        heapq.heappush(self._heap, (timer._due, next(self._seq), timer))

    def _cancel(self, timer: ScheduledTimer) -> None:
        with self._cond:
            if timer._cancelled:
                return
            timer._cancelled = True
            self._cancelled_in_heap += 1
            if self._cancelled_in_heap > 64 and self._cancelled_in_heap * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2]._cancelled]
                heapq.heapify(self._heap)
                self._cancelled_in_heap = 0

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, timer = self._heap[0]
                now = time.monotonic()
                if timer._cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled_in_heap = max(0, self._cancelled_in_heap - 1)
                    continue
                if due > now:
                    self._cond.wait(due - now)
                    continue
                heapq.heappop(self._heap)
                if timer._interval is not None:
                    next_due = due + timer._interval
                    timer._due = next_due if next_due > now else now + timer._interval
                    self._push(timer)
                self._fire_locked(timer)

    def _fire_locked(self, timer: ScheduledTimer) -> None:
        try:
            timer._fire()
        except ActorSendError:
            self._dropped += 1
            if not timer._cancelled:
                timer._cancelled = True
                if timer._interval is not None:
                    self._cancelled_in_heap += 1
        except Exception:
            self._log.exception("a timer failed to deliver its message")
        if timer._interval is None:
            timer._cancelled = True


class SchedulerTimers:
    """``send_after`` and ``send_interval`` on a :class:`TimerScheduler`, for a runtime to mix in.

    A runtime mixes this in, sets ``_scheduler`` and implements
    :meth:`_check_open` and :meth:`_timer_target`.
    """

    _scheduler: TimerScheduler

    def _check_open(self, what: str) -> None:
        """Raise :class:`NodeShutdownError` if the runtime was shut down."""
        raise NotImplementedError

    def _timer_target(
        self, ref: ActorRef, msg: Any
    ) -> tuple[Callable[[], bool], Callable[[], None]]:
        """``(alive, send)`` for ``msg`` to ``ref``, after checking both (TypeError if wrong)."""
        raise NotImplementedError

    @property
    def dropped_timer_fires(self) -> int:
        """Timer fires dropped because their target actor had stopped."""
        return self._scheduler.dropped_fires

    def send_after(self, ref: ActorRef, seconds: float, msg: Any) -> ScheduledTimer:
        """Send ``msg`` to ``ref`` once, after ``seconds``.

        Raises:
            ValueError: ``seconds`` is not a finite number > 0.
            TypeError: ``ref`` is not a ref of this runtime, or a non-``bytes``
                ``msg`` would cross nodes.
            ActorSendError: the target actor is stopped.
            NodeShutdownError: the runtime was shut down.
        """
        return self._schedule(ref, check_positive_seconds("seconds", seconds), None, msg)

    def send_interval(self, ref: ActorRef, seconds: float, msg: Any) -> ScheduledTimer:
        """Send ``msg`` to ``ref`` every ``seconds``, first after ``seconds``.

        A fire whose target has stopped is dropped (counted in
        :attr:`dropped_timer_fires`) and the timer cancelled.

        Raises: as :meth:`send_after`.
        """
        period = check_positive_seconds("seconds", seconds)
        return self._schedule(ref, period, period, msg)

    def _schedule(
        self, ref: ActorRef, delay: float, interval: float | None, msg: Any
    ) -> ScheduledTimer:
        self._check_open("set a timer")
        alive, send = self._timer_target(ref, msg)
        if not alive():
            raise ActorSendError(f"cannot set a timer for {ref!r}: the actor is stopped")

        def fire() -> None:
            if not alive():
                raise ActorSendError(f"{ref!r} stopped")
            send()

        return self._scheduler.schedule(delay, interval, fire)
