"""The messages that travel over Thespian between a node's process, its gateway and peers.

Thespian pickles every message, so these are plain dataclasses of ``str``,
``bytes``, numbers and Thespian's own addresses; dstate's payloads ride inside
the runtime kit's :class:`~dstate_core.runtime.Parcel` as the core's wire
bytes, never as pickled objects.

Flow: the node process tells its gateway a :class:`Parcel` (``dst`` a node id or
``"*"``); the gateway forwards it to the peers' gateways, which hand it to
their node processes. Gateways keep the membership (from the Thespian
convention) and report it to their process as :class:`View`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dstate_core.runtime import ALL_PEERS, Parcel

__all__ = [
    "ALL_PEERS",
    "CAP_GATEWAY",
    "CAP_INCARNATION",
    "CAP_NODE",
    "Attach",
    "Attached",
    "Batch",
    "Parcel",
    "Roster",
    "View",
]

#: Capability names every dstate actor system carries (read from convention updates).
CAP_NODE = "dstate.node"
CAP_INCARNATION = "dstate.incarnation"
CAP_GATEWAY = "dstate.gateway"


@dataclass(frozen=True, slots=True)
class Batch:
    """Several parcels in one Thespian message (queued ones travel together, in order)."""

    parcels: tuple[Parcel, ...]


@dataclass(frozen=True, slots=True)
class Attach:
    """Node process → its gateway: "send what arrives for this node to me" (the sender)."""

    node: str
    incarnation: str
    #: True on the convention leader: its gateway relays the roster to the members.
    relay: bool
    #: True on a convention member: its view is complete once the leader's roster came.
    member: bool = False
    #: The node process's pid and start time: a gateway in another process stops its
    #: actor system once that process is gone (0: do not watch).
    watch_pid: int = 0
    watch_started: int = 0


@dataclass(frozen=True, slots=True)
class Attached:
    """Gateway → node process: addresses, and the pids of the gateway's actor system."""

    gateway: Any
    pid: int
    admin_pid: int
    #: The node process's own receiving endpoint (the sender of :class:`Attach`).
    you: Any


@dataclass(frozen=True, slots=True)
class View:
    """Gateway → node process: the peers it can reach now, as ``(node, incarnation)`` pairs."""

    peers: tuple[tuple[str, str], ...]
    #: False while a member's gateway has not had a roster from the leader yet.
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Roster:
    """Leader gateway → member gateways: every dstate system in the convention.

    ``entries`` are ``(node, incarnation, gateway address)``, the leader's included.
    """

    leader: str
    leader_inc: str
    entries: tuple[tuple[str, str, Any], ...]
