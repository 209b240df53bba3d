"""Time as the engine sees it: a :class:`Clock` port and the real one.

The replication engine never reads the system time itself; it asks the clock
it was given. Tests pass :class:`dstate_core.testing.TestClock`.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where the engine reads time from."""

    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    def wall_ms(self) -> int:
        """Wall-clock unix time in milliseconds."""
        ...


class SystemClock:
    """The process's real clocks: ``time.monotonic`` and ``time.time``."""

    def now(self) -> float:
        """Monotonic seconds from ``time.monotonic()``."""
        return time.monotonic()

    def wall_ms(self) -> int:
        """Unix milliseconds from ``time.time_ns()``."""
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "SystemClock()"
