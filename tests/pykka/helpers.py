"""Polling helpers and a recording handler for the Pykka runtime tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.waiting import wait_until as _wait_until

DEADLINE = 2.0


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (see ``tests.waiting``)."""
    return _wait_until(predicate, timeout)


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
