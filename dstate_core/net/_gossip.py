"""The membership engine's memory: rumours to pass on, and the peers that are gone.

:class:`GossipQueue` holds the latest rumour about each peer and hands out the
least-told ones, a few per message, until each has been told about
``3 * log2(cluster size)`` times: enough for an epidemic to reach every member
with high probability, and the cost per message stays fixed however big the
cluster is.

:class:`Tombstones` remembers the peers declared left (so a late message of a
process that left cannot bring it back) for a while, and at most
:data:`MAX_TOMBSTONES` of them.

:func:`notice_fanout` says how many members hear at once that a probe failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._messages import Gossip, Peer

__all__ = ["MAX_TOMBSTONES", "GossipQueue", "Tombstone", "Tombstones", "notice_fanout"]

#: Tombstones kept at most (the oldest go first).
MAX_TOMBSTONES = 10_000


def notice_fanout(members: int, indirect: int) -> int:
    """How many of ``members`` other members to tell at once that a probe failed.

    ``2 * ceil(log2(members + 1))``, at least ``indirect + 1`` (more members than
    a probe asked for help), at most all. Each member told confirms with its own
    probe (a round interval) and then tells as many again, so after the few
    direct detectors two such steps reach every member of 100 with high
    probability (with one ``log2`` a third step was often needed, and took the
    last observer past ``failure_timeout + 0.5 s``). Each node sends this many
    messages per failure: it grows with the log of the cluster, not with it.
    """
    return min(members, max(indirect + 1, 2 * math.ceil(math.log2(members + 1))))


class GossipQueue:
    """The rumours this node still passes on, one per peer (the newest wins).

    Rumours wait in buckets by how often they were told, so :meth:`take` costs
    the same however many rumours wait (a join of many nodes queues one each).
    """

    def __init__(self, per_message: int) -> None:
        self._per_message = per_message
        self._told: dict[str, int] = {}
        self._buckets: list[dict[str, Gossip]] = [{}]

    def add(self, rumour: Gossip) -> None:
        """Pass ``rumour`` on (it replaces any older rumour about the same node)."""
        node = rumour.peer.node
        told = self._told.pop(node, None)
        if told is not None:
            del self._buckets[told][node]
        self._told[node] = 0
        self._buckets[0][node] = rumour

    def take(self, cluster_size: int) -> tuple[Gossip, ...]:
        """The least-told rumours for one message; each counts as told once more."""
        if not self._told:
            return ()
        limit = 3 * max(1, math.ceil(math.log2(cluster_size + 1)))
        chosen: list[tuple[str, Gossip, int]] = []
        for told, bucket in enumerate(self._buckets):
            for node, rumour in bucket.items():
                chosen.append((node, rumour, told))
                if len(chosen) == self._per_message:
                    break
            if len(chosen) == self._per_message:
                break
        for node, rumour, told in chosen:
            del self._buckets[told][node]
            if told + 1 >= limit:
                del self._told[node]
                continue
            if told + 1 == len(self._buckets):
                self._buckets.append({})
            self._buckets[told + 1][node] = rumour
            self._told[node] = told + 1
        return tuple(rumour for _, rumour, _ in chosen)

    def __len__(self) -> int:
        return len(self._told)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A peer declared gone: ``left`` if it said goodbye (final), else unreachable."""

    peer: Peer
    left: bool
    since: float


class Tombstones:
    """Peers declared gone, kept ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._stones: dict[str, Tombstone] = {}

    def bury(self, peer: Peer, left: bool, now: float) -> None:
        """Remember ``peer`` as gone (``left``: by its own goodbye)."""
        self._stones.pop(peer.node, None)
        if len(self._stones) >= MAX_TOMBSTONES:
            del self._stones[next(iter(self._stones))]
        self._stones[peer.node] = Tombstone(peer, left, now)

    def get(self, node: str) -> Tombstone | None:
        """The tombstone of ``node``, if any."""
        return self._stones.get(node)

    def remove(self, node: str) -> None:
        """Forget ``node``'s tombstone (it is a member again)."""
        self._stones.pop(node, None)

    def unreachable(self) -> list[Peer]:
        """Peers declared gone without a goodbye (one may come back), oldest first."""
        return [s.peer for s in self._stones.values() if not s.left]

    def expire(self, now: float) -> None:
        """Forget tombstones older than the ttl."""
        for node in [n for n, s in self._stones.items() if now - s.since > self._ttl]:
            del self._stones[node]

    def __len__(self) -> int:
        return len(self._stones)
