"""Mutations waiting for their shard's actor, in the order they were called.

Every mutation of a shard, blocking or not, goes through one
:class:`MutationQueue`; the shard's actor takes everything queued when it
wakes (:meth:`MutationQueue.take`) and commits it in order (on a threaded
runtime a blocking caller takes it instead, in turn with the actor). So a caller can
have many mutations in flight (``mutate(fn, block=False)`` returns a future at
once), a burst of them costs one actor wake-up, and call order is commit
order whatever mix of blocking and pipelined calls made them.

What the actor takes is one batch (:func:`take_batch`): each mutation is
prepared on the one before, the last state is saved once (one fsync for the
batch), and the engine commits them together, sending less (a burst of a
simple state is one snapshot per peer; consecutive deltas leave as one frame).
A mutation that raises fails alone; a failed save fails the whole batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..engine._actions import Action
from ..engine._engine import Mutation, ShardEngine
from ..model._errors import MutationError
from ..model._generation import Generation
from ..persistence._own_shard import save_or_raise

__all__ = ["CommittedBatch", "MutationQueue", "QueuedMutation", "take_batch"]


@dataclass(slots=True)
class QueuedMutation:
    """One mutation waiting for the actor, and the future its caller holds."""

    fn: Callable[[Any], Any]
    with_delta: bool
    future: Future[Generation]


class MutationQueue:
    """The mutations not taken yet (by the shard's actor, or a blocking caller).

    Concurrency: thread-safe; callers put, the turn holder takes.
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


@dataclass(slots=True)
class CommittedBatch:
    """A batch the engine committed: the actions to carry out, then the futures to settle."""

    actions: list[Action]
    committed: list[tuple[QueuedMutation, Generation]]

    def settle(self) -> None:
        """Resolve each caller's future with its generation (after the actions ran)."""
        for item, generation in self.committed:
            item.future.set_result(generation)


def take_batch(engine: ShardEngine[Any], items: Iterable[QueuedMutation]) -> CommittedBatch | None:
    """Prepare ``items`` in order, each on the one before, save the last state once and
    commit them together; ``None`` when none of them prepared. Fails the futures of the
    mutations that raised, or of all of them if the save failed."""
    batch: list[tuple[QueuedMutation, Mutation[Any]]] = []
    last: Mutation[Any] | None = None
    for item in items:
        try:
            last = engine.mutate(item.fn, with_delta=item.with_delta, after=last)
        except Exception as exc:
            item.future.set_exception(exc)
            continue
        batch.append((item, last))
    if last is None:
        return None
    if last.save is not None:
        # A state standing for several mutations is stored whole: no single delta.
        delta = last.save.delta if len(batch) == 1 else None
        try:
            save_or_raise(engine.config.persistence, last.save.state, delta, batch[0][1].generation)
        except MutationError as exc:
            for item, _ in batch:  # one exception object per caller: tracebacks differ
                error = MutationError(str(exc))
                error.__cause__ = exc.__cause__
                item.future.set_exception(error)
            return None
    actions = engine.commit_batch([mutation for _, mutation in batch])
    return CommittedBatch(actions, [(item, mutation.generation) for item, mutation in batch])
