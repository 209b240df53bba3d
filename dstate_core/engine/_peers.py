"""What a shard knows of its peers: who is a member, what it last held of those that went,
and how each peer's sync is going.

A member's messages are judged by the receiver rules. A departed node's late
messages are ignored until it joins again. When it does, its view is gone, so
the newest generation held before is kept as a *floor*: an update older than
it is a late message of the past (see :func:`~dstate_core.engine._rules.judge`),
never a step back. The same floor guards a view dropped for an unreadable
version (``docs/protocol.md#join-and-leave``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..model._diagnostics import HealthStatus, PeerSyncStatus, StateHealth
from ..model._generation import Generation

__all__ = [
    "AT_DEFAULT_STALENESS",
    "Membership",
    "PeerState",
    "PeerStatuses",
    "grade_peers",
    "grade_state",
]


class Membership:
    """The peers of one shard and the floors of those without a view.

    Concurrency: owned by one engine, used during its turn only.
    """

    def __init__(self) -> None:
        self._members: set[str] = set()
        self._departed: dict[str, Generation] = {}
        self._floors: dict[str, Generation] = {}

    def __contains__(self, node: object) -> bool:
        return node in self._members

    def __len__(self) -> int:
        return len(self._members)

    def members(self) -> frozenset[str]:
        """The current peers."""
        return frozenset(self._members)

    def departed(self, node: str) -> bool:
        """True if ``node`` was a member and left (and has not joined again)."""
        return node in self._departed

    def join(self, node: str) -> None:
        """``node`` is a member (again); a departed node keeps its floor."""
        floor = self._departed.pop(node, None)
        if floor is not None:
            self._floors[node] = floor
        self._members.add(node)

    def leave(self, node: str, *held: Generation | None) -> bool:
        """``node`` left; ``held``: the generations last held or seen of it.

        Returns:
            False if ``node`` was not a member (nothing changes).
        """
        if node not in self._members:
            return False
        self._members.discard(node)
        known = [g for g in (*held, self._floors.pop(node, None)) if g is not None]
        self._departed[node] = max(known, default=Generation(0, 0))
        return True

    def view_dropped(self, node: str, generation: Generation) -> None:
        """The view of ``node`` at ``generation`` was removed while it stays a member."""
        self._floors[node] = generation

    def forget_floor(self, node: str) -> None:
        """The owner itself said which generation it holds: no floor guards ``node`` now."""
        self._floors.pop(node, None)

    def floor(self, node: str) -> Generation | None:
        """The newest generation held of ``node`` before its view went, if any."""
        return self._floors.get(node)


@dataclass(slots=True)
class PeerState:
    """The mutable per-peer record behind :class:`PeerSyncStatus` (engine-private)."""

    remote_generation: Generation | None = None
    gap_count: int = 0
    consecutive_failures: int = 0
    last_sync_time: float | None = None
    last_attempt_time: float | None = None
    last_error: str | None = None
    last_sync_latency_ms: float | None = None
    #: When the peer's change feed last announced a generation (proof it is reachable).
    last_announced_time: float | None = None

    def saw(self, generation: Generation) -> None:
        """Remember the highest generation heard of from the peer."""
        if self.remote_generation is None or generation > self.remote_generation:
            self.remote_generation = generation

    def announced(self, now: float, generation: Generation) -> None:
        """The peer's change feed announced ``generation`` at ``now``."""
        self.saw(generation)
        self.last_announced_time = now

    def failed(self, now: float, error: str) -> None:
        """Record a failed sync attempt."""
        self.consecutive_failures += 1
        self.last_error = error
        self.last_attempt_time = now

    def synced(self, now: float, latency_ms: float | None) -> None:
        """Record a successful sync."""
        self.consecutive_failures = 0
        self.last_error = None
        self.last_sync_time = now
        if latency_ms is not None:
            self.last_sync_latency_ms = latency_ms

    def row(
        self,
        node_id: str,
        state_name: str,
        view_generation: Generation | None,
        synced_at: float | None,
    ) -> PeerSyncStatus:
        """The frozen status row."""
        return PeerSyncStatus(
            node_id=node_id,
            state_name=state_name,
            local_generation=view_generation,
            remote_generation=self.remote_generation,
            gap_count=self.gap_count,
            consecutive_failures=self.consecutive_failures,
            last_sync_time=synced_at if synced_at is not None else self.last_sync_time,
            last_attempt_time=self.last_attempt_time,
            last_error=self.last_error,
            last_sync_latency_ms=self.last_sync_latency_ms,
        )


class PeerStatuses:
    """The :class:`PeerState` of every peer a shard has heard of, by node id.

    Concurrency: owned by one engine, used in its mailbox only.
    """

    def __init__(self) -> None:
        self._rows: dict[str, PeerState] = {}

    def of(self, node: str) -> PeerState:
        """The record of ``node``, created on first use."""
        row = self._rows.get(node)
        if row is None:
            row = self._rows[node] = PeerState()
        return row

    def find(self, node: str) -> PeerState | None:
        """The record of ``node``, if there is one."""
        return self._rows.get(node)

    def discard(self, node: str) -> None:
        """Forget ``node`` (it left)."""
        self._rows.pop(node, None)

    def by_node(self) -> list[tuple[str, PeerState]]:
        """Every record, sorted by node id."""
        return sorted(self._rows.items())


#: ``contact_within`` of :func:`grade_state`: contact is due within ``default_staleness``.
AT_DEFAULT_STALENESS = -1.0


def grade_state(
    state_name: str,
    peers: list[PeerSyncStatus],
    now: float,
    default_staleness: float,
    *,
    contact_within: float | None = AT_DEFAULT_STALENESS,
    pullable: bool = False,
    announced: Mapping[str, float] | None = None,
) -> StateHealth:
    """Grade a state from its peer rows (``docs/diagnostics.md#health``).

    Healthy when every peer is fresh and none is failing; unhealthy when more
    than half are stale or failing; degraded otherwise. A peer is failing when
    its last sync failed (a pull timed out, an update was unreadable). It is
    stale when this node has reason to think its view is wrong and will not
    put itself right:

    * it holds no view of the peer;
    * the view is behind a generation the peer announced or sent, and queries
      do not pull (``pullable`` off); with ``pullable``, the next query pulls it;
    * the strategy promises contact (a periodic sync, ``contact_within``
      seconds; :data:`AT_DEFAULT_STALENESS`, the default: ``default_staleness``)
      and none came in time (a
      sync, or a change-feed announcement in ``announced``). Without that
      promise an idle peer's old view is not evidence of anything: the peer
      pushes or announces its changes, and the runtime's failure detector
      removes a peer that cannot be reached.
    """
    grades = grade_peers(
        peers,
        now,
        default_staleness,
        contact_within=contact_within,
        pullable=pullable,
        announced=announced,
    )
    failing = sum(1 for g in grades.values() if g is HealthStatus.UNHEALTHY)
    stale = sum(1 for g in grades.values() if g is HealthStatus.DEGRADED)
    healthy = len(peers) - failing - stale
    if failing + stale == 0:
        status = HealthStatus.HEALTHY
    elif 2 * (failing + stale) > len(peers):
        status = HealthStatus.UNHEALTHY
    else:
        status = HealthStatus.DEGRADED
    return StateHealth(state_name, healthy, stale, failing, status)


def grade_peers(
    peers: list[PeerSyncStatus],
    now: float,
    default_staleness: float,
    *,
    contact_within: float | None = AT_DEFAULT_STALENESS,
    pullable: bool = False,
    announced: Mapping[str, float] | None = None,
) -> dict[str, HealthStatus]:
    """Each peer row's grade (see :func:`grade_state`): ``HEALTHY`` fresh, ``DEGRADED``
    stale, ``UNHEALTHY`` failing."""
    bound = default_staleness if contact_within == AT_DEFAULT_STALENESS else contact_within
    heard = announced or {}
    grades: dict[str, HealthStatus] = {}
    for row in peers:
        if row.consecutive_failures > 0:
            grades[row.node_id] = HealthStatus.UNHEALTHY
        elif _stale(row, now, bound, pullable, heard):
            grades[row.node_id] = HealthStatus.DEGRADED
        else:
            grades[row.node_id] = HealthStatus.HEALTHY
    return grades


def _stale(
    row: PeerSyncStatus,
    now: float,
    contact_within: float | None,
    pullable: bool,
    announced: Mapping[str, float],
) -> bool:
    held, known = row.local_generation, row.remote_generation
    if held is None:
        return True
    if known is not None and known > held and not pullable:
        return True
    if contact_within is None:
        return False
    heard = [t for t in (row.last_sync_time, announced.get(row.node_id)) if t is not None]
    return not heard or now - max(heard) > contact_within
