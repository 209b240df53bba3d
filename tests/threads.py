"""A check shared by the real-time adapter tests: no test leaves a thread behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_thread_outlives(deadline: float) -> Iterator[None]:
    """Fail unless every thread started inside the block has ended ``deadline`` s after it."""
    before = set(threading.enumerate())
    yield
    end = time.monotonic() + deadline
    while True:
        leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        if not leaked:
            return
        if time.monotonic() >= end:
            raise AssertionError(f"threads left behind: {sorted(t.name for t in leaked)}")
        time.sleep(0.005)
