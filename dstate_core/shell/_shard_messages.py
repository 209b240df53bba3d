"""What a shard's actor is sent (besides engine events), and its one-shot timer marker."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine._actions import TimerKey
from ..runtime._protocol import TimerHandle

__all__ = ["DRAIN", "CancelQuery", "Drain", "OneShot", "QueryRequest", "Start", "Tick"]


class Drain:
    """Tells the shard's actor to commit the queued mutations."""


DRAIN = Drain()


@dataclass(frozen=True, slots=True)
class QueryRequest:
    query_id: int
    max_staleness: float


@dataclass(frozen=True, slots=True)
class CancelQuery:
    query_id: int


@dataclass(frozen=True, slots=True)
class Tick:
    key: TimerKey
    token: int


@dataclass(frozen=True, slots=True)
class Start:
    members: tuple[str, ...]


class OneShot:
    """Marks a one-shot timer handle (its entry is dropped when it fires)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: TimerHandle) -> None:
        self._handle = handle

    def cancel(self) -> None:
        self._handle.cancel()
