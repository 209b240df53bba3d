"""Generations, the envelopes around owned state and replica views.

A :class:`Generation` orders every version of one node's shard: the
``incarnation`` changes when the node starts without its persisted state, the
``age`` counts committed mutations within one incarnation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Generation", "IncarnationSource", "StateObject", "StateViewObject"]

V = TypeVar("V")


@dataclass(frozen=True, order=True, slots=True)
class Generation:
    """One version of a node's shard, ordered lexicographically.

    Attributes:
        incarnation: the node's lifetime (wall-clock ms at a fresh start).
        age: committed mutations in this incarnation.
    """

    incarnation: int
    age: int

    def __post_init__(self) -> None:
        if type(self.incarnation) is not int or self.incarnation < 0:
            raise ValueError(
                f"Generation.incarnation must be an int >= 0, got {self.incarnation!r}"
            )
        if type(self.age) is not int or self.age < 0:
            raise ValueError(f"Generation.age must be an int >= 0, got {self.age!r}")

    def next(self) -> Generation:
        """The generation after one more committed mutation."""
        return Generation(self.incarnation, self.age + 1)

    def __str__(self) -> str:
        return f"{self.incarnation}:{self.age}"


class IncarnationSource:
    """Hands out incarnations that never repeat within this source's lifetime.

    A fresh start takes the wall clock in ms, or ``previous + 1`` when the clock
    stepped back (``docs/protocol.md#generations``). Loaded generations are reported with
    :meth:`observe` so that a later fresh start still moves past them.

    Concurrency: thread-safe; one source is shared by every shard of a node.
    """

    def __init__(self, floor: int = 0) -> None:
        self._last = floor
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        """The highest incarnation handed out or observed so far."""
        return self._last

    def observe(self, incarnation: int) -> None:
        """Remember an incarnation used before (e.g. loaded from storage)."""
        with self._lock:
            self._last = max(self._last, incarnation)

    def fresh(self, wall_ms: int) -> int:
        """A new incarnation, strictly greater than any seen before."""
        with self._lock:
            self._last = max(wall_ms, self._last + 1)
            return self._last


@dataclass(frozen=True, slots=True)
class StateObject(Generic[V]):
    """The owner's copy of its shard: the state plus its generation.

    Attributes:
        generation: the version of ``value``.
        storage_version: the ``STORAGE_VERSION`` the value was written with.
        value: the state model (or, fresh from a store, its plain dict form).
        created_time: unix ms when this incarnation's state was created.
        modified_time: unix ms of the last committed mutation.
    """

    generation: Generation
    storage_version: int
    value: V
    created_time: int
    modified_time: int


@dataclass(frozen=True, slots=True)
class StateViewObject(Generic[V]):
    """A replica's read-only view of one node's shard.

    Attributes:
        generation: the owner's generation this view reflects.
        wire_version: the wire format the view arrived in.
        value: the view (the state itself for simple states).
        created_time: owner's unix ms when its state was created.
        modified_time: owner's unix ms of the mutation shown.
        synced_at: the local ``Clock.now()`` when this view was last confirmed.
        pending_remote_generation: a newer generation announced by the change
            feed and not pulled yet, else ``None``.
        source_node: the owner's node id.
    """

    generation: Generation
    wire_version: int
    value: V
    created_time: int
    modified_time: int
    synced_at: float
    pending_remote_generation: Generation | None
    source_node: str

    @property
    def is_pending(self) -> bool:
        """True when the change feed announced a generation this view lacks."""
        return self.pending_remote_generation is not None

    def staleness(self, now: float) -> float:
        """Seconds since the view was last confirmed."""
        return now - self.synced_at
