"""A manual clock for deterministic tests (``docs/testing.md``)."""

from __future__ import annotations

import math
import threading

__all__ = ["TestClock"]


class TestClock:
    """A :class:`~dstate_core.Clock` that moves only when told to.

    ``now()`` starts at 0.0 monotonic seconds; ``wall_ms()`` starts at
    ``wall_ms`` unix milliseconds; :meth:`advance` moves both.

    Concurrency: thread-safe.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, wall_ms: int = 1_700_000_000_000, start: float = 0.0) -> None:
        if isinstance(wall_ms, bool) or not isinstance(wall_ms, int) or wall_ms < 0:
            raise ValueError(f"TestClock(wall_ms=...) must be an int >= 0, got {wall_ms!r}")
        if (
            isinstance(start, bool)
            or not isinstance(start, int | float)
            or not math.isfinite(start)
        ):
            raise ValueError(f"TestClock(start=...) must be a finite number, got {start!r}")
        self._start_wall_ms = wall_ms
        self._start = float(start)
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Monotonic seconds since the clock was made (plus ``start``)."""
        return self._now

    def wall_ms(self) -> int:
        """Unix milliseconds: the starting wall time plus the time advanced."""
        return self._start_wall_ms + round((self._now - self._start) * 1000)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise ValueError(f"TestClock.advance() needs a finite number >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        """Jump the clock forward to monotonic ``now`` (the wall clock moves with it).

        Raises:
            ValueError: ``now`` is not finite or is before the current time.
        """
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ValueError(f"TestClock.set() needs a finite number, got {now!r}")
        with self._lock:
            if now < self._now:
                raise ValueError(f"TestClock cannot go back from {self._now} to {now}")
            self._now = float(now)

    def __repr__(self) -> str:
        return f"TestClock(now={self._now}, wall_ms={self.wall_ms()})"
