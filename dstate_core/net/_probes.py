"""Outstanding probes of the membership engine: whom, why, and when they give up.

:func:`ring_targets` picks the members a node probes each round.
:class:`ProbeTimers` keeps the times at which probes need attention in a heap,
so finding the next one costs the same however many probes are out (a node
that joins a big cluster verifies every member at once).
"""

from __future__ import annotations

import bisect
import enum
import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ._messages import Peer

__all__ = ["Probe", "ProbeTimers", "ProbeTiming", "Purpose", "ring_targets"]


def ring_targets(ring: Sequence[str], me: str, count: int, rng: random.Random) -> list[str]:
    """Whom node ``me`` probes this round.

    Args:
        ring: the other members' node ids, sorted.
        me: this node's id (not in ``ring``).
        count: how many successors to probe.
        rng: picks the random member.

    Returns:
        The ``count`` members after ``me`` in the ring (wrapping around), then one
        of the others at random (none if there are no others).
    """
    first, count = bisect.bisect_right(ring, me), min(count, len(ring))
    targets = [ring[(first + i) % len(ring)] for i in range(count)]
    if len(ring) > count:
        pick = count + rng.randrange(len(ring) - count)
        targets.append(ring[(first + pick) % len(ring)])
    return targets


class ProbeTiming(Protocol):
    """The timeouts a probe follows (a :class:`~._membership.MembershipConfig`)."""

    @property
    def round_interval(self) -> float:
        """Seconds between probe rounds."""
        ...

    @property
    def ack_timeout(self) -> float:
        """Seconds before an unanswered probe is retried through other members."""
        ...

    @property
    def probe_timeout(self) -> float:
        """Seconds before an unanswered probe declares its target left."""
        ...


class Purpose(enum.Enum):
    """Why a peer is probed, which says what an unanswered probe means."""

    #: A round's probe of a member: no answer declares it left.
    MONITOR = "monitor"
    #: A member was rumoured dead: no answer here either declares it left.
    CONFIRM = "confirm"
    #: A process was rumoured alive: its answer makes it a member; silence, nothing.
    VERIFY = "verify"
    #: A new process claims a member's node id: an answer from the member refuses
    #: the newcomer; silence declares the member left and admits the newcomer.
    DUPLICATE_CHECK = "duplicate check"


@dataclass(slots=True)
class Probe:
    """A ping waiting for its ack."""

    peer: Peer
    seq: int
    started: float
    purpose: Purpose
    joiner: Peer | None = None
    indirect_sent: bool = False

    def deadline(self, config: ProbeTiming) -> float:
        """When silence decides (a confirmation is shorter: the rumour already waited)."""
        if self.purpose in (Purpose.CONFIRM, Purpose.VERIFY):
            return self.started + config.round_interval
        return self.started + config.probe_timeout

    def indirect_time(self, config: ProbeTiming) -> float | None:
        """When the probe is to be retried through other members (None: never, or done)."""
        if self.indirect_sent or self.purpose not in (Purpose.MONITOR, Purpose.DUPLICATE_CHECK):
            return None
        return self.started + config.ack_timeout

    def indirect_due(self, now: float, config: ProbeTiming) -> bool:
        """True when the probe should be retried through other members now."""
        due = self.indirect_time(config)
        return due is not None and now >= due

    def restart(self, now: float) -> None:
        """Start waiting again from ``now`` (after this process was paused)."""
        self.started = now
        self.indirect_sent = False


class ProbeTimers:
    """When each outstanding probe next needs attention: a heap with lazy deletion.

    An entry whose probe is gone, was restarted or already went indirect is
    skipped when it comes up.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []

    def add(self, probe: Probe, config: ProbeTiming) -> None:
        """Schedule ``probe`` (again, after :meth:`Probe.restart`)."""
        indirect = probe.indirect_time(config)
        if indirect is not None:
            heapq.heappush(self._heap, (indirect, probe.seq, probe.peer.node))
        heapq.heappush(self._heap, (probe.deadline(config), probe.seq, probe.peer.node))

    def next(self, probes: dict[str, Probe], config: ProbeTiming) -> float | None:
        """The earliest time a probe in ``probes`` needs attention, if any."""
        heap = self._heap
        while heap and not _current(heap[0], probes, config):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float, probes: dict[str, Probe], config: ProbeTiming) -> list[str]:
        """The node ids of the probes in ``probes`` that need attention at ``now``."""
        heap = self._heap
        nodes: list[str] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if _current(entry, probes, config) and entry[2] not in nodes:
                nodes.append(entry[2])
        return nodes


def _current(entry: tuple[float, int, str], probes: dict[str, Probe], config: ProbeTiming) -> bool:
    when, seq, node = entry
    probe = probes.get(node)
    return (
        probe is not None
        and probe.seq == seq
        and (when == probe.deadline(config) or when == probe.indirect_time(config))
    )
