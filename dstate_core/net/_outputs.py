"""What the membership engine is told and tells: its timing, and its outputs.

:class:`MembershipConfig` sets the protocol's timing and fan-out; a
:class:`~._membership.Membership` engine answers every input with a list of
:data:`MembershipOutput`: messages to send and member changes to report.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._messages import MemberMsg, Peer

__all__ = [
    "JoinRefused",
    "MemberDown",
    "MemberUp",
    "MembershipConfig",
    "MembershipOutput",
    "Send",
]


@dataclass(frozen=True)
class MembershipConfig:
    """Timing and fan-out of the membership protocol.

    Attributes:
        failure_timeout: a silent process is declared left within about this long.
        ring: how many ring successors each node probes every round.
        indirect: how many members an unanswered probe is retried through.
        gossip_per_message: rumours piggybacked on one message at most.
        join_retry_max: the longest wait between join attempts while alone.
        sync_interval: the anti-entropy period for a cluster of 16; it grows with
            the cluster so that its bytes per second per node stay flat.
        tombstone_ttl: how long a departed process is remembered.
    """

    failure_timeout: float = 1.0
    ring: int = 3
    indirect: int = 2
    gossip_per_message: int = 8
    join_retry_max: float = 2.0
    sync_interval: float = 2.0
    tombstone_ttl: float = 60.0

    @property
    def round_interval(self) -> float:
        """Seconds between probe rounds."""
        return self.failure_timeout / 4

    @property
    def ack_timeout(self) -> float:
        """Seconds before an unanswered probe is retried through other members."""
        return self.failure_timeout / 10

    @property
    def probe_timeout(self) -> float:
        """Seconds before an unanswered probe declares its target left."""
        return self.failure_timeout / 2


@dataclass(frozen=True)
class Send:
    """Send ``msg`` to the node at ``addr``."""

    addr: str
    msg: MemberMsg


@dataclass(frozen=True)
class MemberUp:
    """``peer`` is a member now."""

    peer: Peer


@dataclass(frozen=True)
class MemberDown:
    """``peer`` is no longer a member (``reason`` says why)."""

    peer: Peer
    reason: str


@dataclass(frozen=True)
class JoinRefused:
    """A seed refused to let this process in: it must stop (``reason`` says why)."""

    reason: str
    seed: str


MembershipOutput = Send | MemberUp | MemberDown | JoinRefused
