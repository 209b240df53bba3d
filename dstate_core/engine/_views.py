"""The replica side of a shard: every node's view, published for lock-free reads.

:class:`ViewTable` is mutated only during its shard's turn; any thread reads
it through an immutable :class:`PublishedViews`: a consistent map plus the
two numbers the query fast path needs.

Publishing is O(1): a change only drops the cached snapshot
(:attr:`ViewTable.latest` becomes ``None``), and the first reader after it
copies the map, once, under a lock the writer also holds while it changes
the map. So a burst of updates between two reads costs one copy, not one per
update, and a read of an unchanged table costs one attribute load
(``table.latest or table.snapshot()``).

Freshness in O(1): peers are kept in an ordered dict by ``synced_at``. A
refresh always sets ``synced_at`` to the clock's current (monotonic) time, so
moving the refreshed peer to the end keeps the order, and the oldest peer is
always the first entry.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..model._generation import StateViewObject

__all__ = ["PublishedViews", "ViewTable"]

_EMPTY: Mapping[str, StateViewObject[Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PublishedViews:
    """One consistent, read-only snapshot of a shard's view map.

    Attributes:
        views: node id -> view, the own node included.
        oldest_synced_at: the smallest ``synced_at`` among peers (``inf`` if none).
        pending: how many peer views the change feed marked as behind.
    """

    views: Mapping[str, StateViewObject[Any]]
    oldest_synced_at: float
    pending: int

    def is_fresh(self, now: float, max_staleness: float) -> bool:
        """True when no peer view is pending or older than ``max_staleness`` (O(1))."""
        return self.pending == 0 and now - self.oldest_synced_at <= max_staleness


class ViewTable:
    """Views of every node for one state, the own entry included.

    Concurrency: mutate only during the shard's turn (one thread at a time); read :attr:`latest`,
    :meth:`snapshot` and :attr:`published` from anywhere.
    """

    def __init__(self, own_node: str) -> None:
        self._own_node = own_node
        self._views: dict[str, StateViewObject[Any]] = {}
        self._by_sync: OrderedDict[str, float] = OrderedDict()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        #: The snapshot of the table as it is, or ``None`` after a change (see the module).
        self.latest: PublishedViews | None = PublishedViews(_EMPTY, math.inf, 0)

    @property
    def published(self) -> PublishedViews:
        """The table as it is now (built by the first reader after a change)."""
        return self.latest or self.snapshot()

    def snapshot(self) -> PublishedViews:
        """Copy the table into a new :class:`PublishedViews` unless one is current."""
        with self._lock:
            latest = self.latest
            if latest is None:
                oldest = next(iter(self._by_sync.values()), math.inf)
                latest = PublishedViews(
                    MappingProxyType(dict(self._views)), oldest, len(self._pending)
                )
                self.latest = latest
            return latest

    def get(self, node_id: str) -> StateViewObject[Any] | None:
        """The view held for ``node_id``, if any."""
        return self._views.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._views

    def peers(self) -> Iterator[str]:
        """Peers with a view, oldest sync first."""
        return iter(list(self._by_sync))

    def put(self, view: StateViewObject[Any]) -> StateViewObject[Any] | None:
        """Store ``view`` (its ``synced_at`` must be the current time); returns the old one."""
        node = view.source_node
        with self._lock:
            old = self._views.get(node)
            self._views[node] = view
            if node != self._own_node:
                if old is None or old.synced_at != view.synced_at:
                    self._by_sync[node] = view.synced_at
                    self._by_sync.move_to_end(node)
                if view.pending_remote_generation is None:
                    self._pending.discard(node)
                else:
                    self._pending.add(node)
            self.latest = None
        return old

    def remove(self, node_id: str) -> StateViewObject[Any] | None:
        """Drop ``node_id``'s view; returns it (or ``None``)."""
        with self._lock:
            old = self._views.pop(node_id, None)
            if old is not None:
                self._by_sync.pop(node_id, None)
                self._pending.discard(node_id)
                self.latest = None
        return old

    def stale(self, now: float, max_staleness: float) -> list[str]:
        """Peers whose view is pending or older than ``max_staleness``, oldest first."""
        out: list[str] = []
        for node, synced_at in self._by_sync.items():
            if now - synced_at > max_staleness or node in self._pending:
                out.append(node)
        return out
