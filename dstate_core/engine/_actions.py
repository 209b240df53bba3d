"""What the engines ask their shell to do (imperative, frozen), and the timers they name.

A shell (a shard or feed actor) carries the actions out in order: network
sends through the runtime, timers through ``send_after``/``send_interval``,
change notifications to the node's feed, subscriber callbacks off the mailbox,
replies to waiting queries. :class:`SaveState` is apart: a mutation carries it,
and the shell stores the state *before* it commits the mutation, so nothing is
published that is not persisted.

Timers are named by small frozen keys (:data:`TimerKey`); starting a key that
is already running replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model._generation import StateObject, StateViewObject
from ..wire._messages import ChangeNotification

__all__ = [
    "DELAYED_PUSH",
    "FEED_FLUSH",
    "PERIODIC_SYNC",
    "Action",
    "AnnounceChange",
    "Broadcast",
    "CancelTimer",
    "DelayedPushTimer",
    "FeedFlushTimer",
    "FinishQuery",
    "NotifyView",
    "PeriodicSyncTimer",
    "ProbeTimer",
    "PullTimer",
    "SaveState",
    "SendTo",
    "StartTimer",
    "TimerKey",
]


# -- timer keys ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodicSyncTimer:
    """The periodic full sync of a shard's own snapshot."""


@dataclass(frozen=True, slots=True)
class DelayedPushTimer:
    """The end of a delayed-urgency window: its coalesced change leaves then."""


@dataclass(frozen=True, slots=True)
class PullTimer:
    """The ``pull_timeout`` of the snapshot request ``request_id`` to ``node``."""

    node: str
    request_id: int


@dataclass(frozen=True, slots=True)
class ProbeTimer:
    """Ask ``node`` again for the snapshot a lost join exchange should have brought."""

    node: str


@dataclass(frozen=True, slots=True)
class FeedFlushTimer:
    """The node's change feed: send the batch collected so far."""


#: Identifies one timer of an engine.
TimerKey = PeriodicSyncTimer | DelayedPushTimer | PullTimer | ProbeTimer | FeedFlushTimer

PERIODIC_SYNC = PeriodicSyncTimer()
DELAYED_PUSH = DelayedPushTimer()
FEED_FLUSH = FeedFlushTimer()


# -- actions ------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class SaveState:
    """Store ``state`` durably before the mutation that made it is committed.

    ``delta`` is the mutation's delta (``None`` for a simple state). If the
    store fails, the shell drops the mutation: nothing was changed.
    """

    state: StateObject[Any]
    delta: Any
