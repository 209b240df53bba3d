"""Waiting for a condition in real-time tests: poll with a deadline, never sleep hoping."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(predicate: Callable[[], bool], timeout: float, period: float = 0.005) -> bool:
    """Poll ``predicate`` every ``period`` s until it holds or ``timeout`` s pass.

    Returns its last value.
    """
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return predicate()
        time.sleep(period)
