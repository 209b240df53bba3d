"""Diagnostics: per-peer sync status, metrics and health (``docs/diagnostics.md``)."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from ._generation import Generation

__all__ = [
    "HealthStatus",
    "MetricCounters",
    "PeerSyncStatus",
    "StateHealth",
    "StateSyncMetrics",
    "SystemHealth",
]


class HealthStatus(enum.IntEnum):
    """How well a state (or the node) is replicated; larger is worse."""

    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class PeerSyncStatus:
    """How one peer's view of one state is doing.

    Times are the node clock's monotonic seconds; ``None`` means never.
    """

    node_id: str
    state_name: str
    local_generation: Generation | None
    remote_generation: Generation | None
    gap_count: int
    consecutive_failures: int
    last_sync_time: float | None
    last_attempt_time: float | None
    last_error: str | None
    last_sync_latency_ms: float | None

    def is_stale(self, now: float, max_staleness: float) -> bool:
        """True when the view is older than ``max_staleness`` or behind the announced one."""
        if self.last_sync_time is None or now - self.last_sync_time > max_staleness:
            return True
        return (
            self.remote_generation is not None
            and self.local_generation is not None
            and self.remote_generation > self.local_generation
        )


@dataclass(frozen=True, slots=True)
class StateSyncMetrics:
    """Counters of one shard since registration (a broadcast counts once per peer)."""

    total_mutations: int = 0
    deltas_sent: int = 0
    deltas_received: int = 0
    snapshots_sent: int = 0
    snapshots_received: int = 0
    deltas_suppressed: int = 0
    deltas_immediate: int = 0
    sync_failures: int = 0
    age_gaps_detected: int = 0
    stale_deltas_discarded: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    feed_batches_sent: int = 0


@dataclass(slots=True)
class MetricCounters:
    """The mutable counters behind :class:`StateSyncMetrics` (engine-private)."""

    total_mutations: int = 0
    deltas_sent: int = 0
    deltas_received: int = 0
    snapshots_sent: int = 0
    snapshots_received: int = 0
    deltas_suppressed: int = 0
    deltas_immediate: int = 0
    sync_failures: int = 0
    age_gaps_detected: int = 0
    stale_deltas_discarded: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def freeze(self, feed_batches_sent: int = 0) -> StateSyncMetrics:
        """A frozen copy, with the node-level feed batch count added."""
        return StateSyncMetrics(**asdict(self), feed_batches_sent=feed_batches_sent)


@dataclass(frozen=True, slots=True)
class StateHealth:
    """Health of one registered state on this node."""

    state_name: str
    healthy_peers: int
    stale_peers: int
    failing_peers: int
    status: HealthStatus


@dataclass(frozen=True, slots=True)
class SystemHealth:
    """Health of every registered state; ``status`` is the worst of them."""

    status: HealthStatus
    states: list[StateHealth]

    @classmethod
    def of(cls, states: list[StateHealth]) -> SystemHealth:
        """Combine per-state health into the node's."""
        worst = max((s.status for s in states), default=HealthStatus.HEALTHY)
        return cls(HealthStatus(worst), states)
