"""Mutations waiting for their shard's actor, in the order they were called.

Every mutation of a shard, blocking or not, goes through one
:class:`MutationQueue`; the shard's actor takes everything queued when it
wakes (:meth:`MutationQueue.take`) and commits it in order. So a caller can
have many mutations in flight (``mutate(fn, block=False)`` returns a future at
once), a burst of them costs one actor wake-up, and call order is commit
order whatever mix of blocking and pipelined calls made them.

A batch sends less: each full-snapshot broadcast that a later one of the same
batch replaces, with no delta broadcast between (a delta builds on its
predecessor), stays home (:func:`drop_superseded_snapshots`). So a burst of
mutations of a simple state is one frame per peer.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..engine._actions import Action, Broadcast
from ..model._generation import Generation

__all__ = ["MutationQueue", "QueuedMutation", "drop_superseded_snapshots"]


@dataclass(slots=True)
class QueuedMutation:
    """One mutation waiting for the actor, and the future its caller holds."""

    fn: Callable[[Any], Any]
    with_delta: bool
    future: Future[Generation]


class MutationQueue:
    """The mutations a shard's actor has not taken yet.

    Concurrency: thread-safe; callers put, the actor takes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[QueuedMutation] = deque()
        self._wake_pending = False

    def put(self, item: QueuedMutation, wake: bool) -> bool:
        """Queue ``item``. Returns True if the caller must wake the actor: ``wake`` was
        asked and no wake-up is on its way already (one wake-up takes the whole queue)."""
        with self._lock:
            self._items.append(item)
            if wake and not self._wake_pending:
                self._wake_pending = True
                return True
            return False

    def take(self) -> deque[QueuedMutation]:
        """Everything queued, oldest first (the actor, when it wakes)."""
        with self._lock:
            items, self._items = self._items, deque()
            self._wake_pending = False
            return items

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Fail every queued mutation's future with ``error()`` (the shard stopped)."""
        for item in self.take():
            if not item.future.done():
                item.future.set_exception(error())


def drop_superseded_snapshots(
    actions: list[Action], withdraw: Callable[[Broadcast], None]
) -> list[Action]:
    """``actions`` without each snapshot broadcast that a later one replaces with no
    delta broadcast between; ``withdraw`` is told of each one dropped."""
    kept: list[Action | None] = []
    waiting: int | None = None  # index in ``kept`` of the last snapshot broadcast
    for action in actions:
        if isinstance(action, Broadcast):
            if action.snapshot and waiting is not None:
                dropped = kept[waiting]
                assert isinstance(dropped, Broadcast)
                withdraw(dropped)
                kept[waiting] = None
            waiting = len(kept) if action.snapshot else None
        kept.append(action)
    return [action for action in kept if action is not None]
