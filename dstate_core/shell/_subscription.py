"""Subscriptions to a shard's view changes, and the list of them its notifier calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._logs import NodeLog
from ..engine._actions import NotifyView
from ..model._generation import StateViewObject

__all__ = ["Subscribers", "Subscription", "ViewCallback"]

#: A ``subscribe`` callback: ``(node_id, old, new)``; ``None`` means absent.
ViewCallback = Callable[[str, StateViewObject[Any] | None, StateViewObject[Any] | None], None]


class Subscription:
    """A registered ``subscribe`` callback; :meth:`cancel` stops it (idempotent)."""

    def __init__(self, subscribers: Subscribers, callback: ViewCallback) -> None:
        self._subscribers = subscribers
        self.callback = callback
        self.active = True

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"Subscription({self._subscribers.state_name!r}, {self.callback!r}, {state})"

    def cancel(self) -> None:
        """Stop calling the callback."""
        if self.active:
            self.active = False
            self._subscribers.remove(self)


class Subscribers:
    """One shard's subscriptions.

    Concurrency: thread-safe; the tuple is replaced whole, so :meth:`notify`
    (on the shard's notifier actor) and :attr:`any` read it without a lock.
    """

    def __init__(self, state_name: str, log: NodeLog) -> None:
        self.state_name = state_name
        self._log = log
        self._lock = threading.Lock()
        self._all: tuple[Subscription, ...] = ()

    @property
    def any(self) -> bool:
        """Is anyone subscribed (is a view change worth a message to the notifier)?"""
        return bool(self._all)

    def add(self, callback: ViewCallback) -> Subscription:
        """Subscribe ``callback``."""
        subscription = Subscription(self, callback)
        with self._lock:
            self._all = (*self._all, subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Unsubscribe (a cancelled :class:`Subscription`)."""
        with self._lock:
            self._all = tuple(s for s in self._all if s is not subscription)

    def notify(self, action: NotifyView) -> None:
        """Call every active callback with one view change; log one that raises."""
        for subscription in self._all:
            if not subscription.active:
                continue
            try:
                subscription.callback(action.node_id, action.old, action.new)
            except Exception:
                self._log.exception(
                    "a subscriber callback raised for the view of %r (generation %s)",
                    action.node_id,
                    action.new.generation if action.new else None,
                    peer=action.node_id,
                )
