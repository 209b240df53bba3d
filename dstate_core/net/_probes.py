"""One outstanding probe of the membership engine: whom, why, and when it gives up."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._messages import Peer

if TYPE_CHECKING:
    from ._membership import MembershipConfig

__all__ = ["Probe", "Purpose"]


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

    def deadline(self, config: MembershipConfig) -> float:
        """When silence decides (a confirmation is shorter: the rumour already waited)."""
        if self.purpose in (Purpose.CONFIRM, Purpose.VERIFY):
            return self.started + config.round_interval
        return self.started + config.probe_timeout

    def indirect_due(self, now: float, config: MembershipConfig) -> bool:
        """True when the probe should be retried through other members now."""
        return (
            not self.indirect_sent
            and self.purpose in (Purpose.MONITOR, Purpose.DUPLICATE_CHECK)
            and now >= self.started + config.ack_timeout
        )

    def restart(self, now: float) -> None:
        """Start waiting again from ``now`` (after this process was paused)."""
        self.started = now
        self.indirect_sent = False
