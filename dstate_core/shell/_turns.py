"""Whose turn it is to change a shard's engine: its actor's, or another thread's.

A shard's engine sees one change at a time. Its actor takes a turn for every
message it handles. On a threaded runtime (local actors on threads of this
process) another thread may take a turn and do the actor's work itself, which
saves handing the work to the actor's thread and back:

* a blocking ``mutate`` waits for its turn and commits in the caller's thread;
* a peer's update is handled in the delivering thread when the actor is idle
  and no earlier delivery waits in its mailbox, so deliveries keep their order.
"""

from __future__ import annotations

import threading

__all__ = ["EngineTurns"]


class EngineTurns:
    """The turn lock of one shard's engine, and the deliveries waiting for its actor.

    Concurrency: thread-safe. A turn is not re-entrant: :meth:`mine` tells a
    thread that already holds it (a mutation calling ``mutate``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None
        self._queued = 0
        self._queued_lock = threading.Lock()

    def mine(self) -> bool:
        """Does the calling thread hold the turn?"""
        return self._holder == threading.get_ident()

    def take(self, timeout: float = -1) -> bool:
        """Wait for the turn (at most ``timeout`` seconds; -1: as long as it takes)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        self._holder = threading.get_ident()
        return True

    def take_if_idle(self) -> bool:
        """Take the turn only if it is free and no delivery waits for the actor."""
        if not self._lock.acquire(blocking=False):
            return False
        if self._queued:
            self._lock.release()
            return False
        self._holder = threading.get_ident()
        return True

    def give_back(self) -> None:
        """End the turn taken by this thread."""
        self._holder = None
        self._lock.release()

    def delivery_queued(self) -> None:
        """A delivery was sent to the actor's mailbox."""
        with self._queued_lock:
            self._queued += 1

    def delivery_taken(self) -> None:
        """The actor took a queued delivery (during its turn)."""
        with self._queued_lock:
            self._queued -= 1
