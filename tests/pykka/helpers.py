"""Polling helpers and a recording handler for the Pykka runtime tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

DEADLINE = 2.0


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return predicate()
        time.sleep(0.005)


class Recorder:
    """A handler that records what it receives, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def __call__(self, msg: Any) -> Any:
        with self._lock:
            self._items.append(msg)
        return msg

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def count(self, msg: Any) -> int:
        return self.items.count(msg)
