"""What the sans-IO engines ask their shell to do (imperative, frozen).

The shell (a shard or feed actor) carries these out in order: network sends
through the runtime, timers through ``send_after``/``send_interval``,
subscriber callbacks off the mailbox, replies to waiting queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model._generation import StateViewObject
from ..wire._messages import ChangeNotification

__all__ = [
    "Action",
    "AnnounceChange",
    "Broadcast",
    "CancelTimer",
    "FinishQuery",
    "NotifyView",
    "SendTo",
    "StartTimer",
    "TimerKey",
]

#: Identifies one timer of an engine, e.g. ``("periodic",)`` or ``("pull", "b", 7)``.
TimerKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SendTo:
    """Send encoded bytes to one node's dstate inbox."""

    node_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send encoded bytes to every peer's dstate inbox."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver ``TimerFired(key)`` after ``delay`` seconds (and every ``delay`` if ``repeat``).

    Starting a key that is already running replaces it.
    """

    key: TimerKey
    delay: float
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop timer ``key``; nothing happens if it is not running."""

    key: TimerKey


@dataclass(frozen=True, slots=True)
class AnnounceChange:
    """Hand a change notification to the node's change-feed aggregator."""

    notification: ChangeNotification


@dataclass(frozen=True, slots=True)
class NotifyView:
    """Tell subscribers that ``node_id``'s entry changed (``None``: absent)."""

    node_id: str
    old: StateViewObject[Any] | None
    new: StateViewObject[Any] | None


@dataclass(frozen=True, slots=True)
class FinishQuery:
    """A slow-path query's pulls are over; ``failures`` maps peer -> reason."""

    query_id: int
    failures: tuple[tuple[str, str], ...]


Action = SendTo | Broadcast | StartTimer | CancelTimer | AnnounceChange | NotifyView | FinishQuery
