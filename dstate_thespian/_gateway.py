"""The gateway: the messages between a node process, its gateway and peers, and the
gateway's logic, free of Thespian (membership from the convention, routing of parcels).

Thespian pickles every message, so the messages are plain dataclasses of
``str``, ``bytes``, numbers and Thespian's own addresses; dstate's payloads
ride inside the runtime kit's :class:`~dstate_core.runtime.Parcel` as the
core's wire bytes. The node process tells its gateway a parcel (``dst`` a node
id or ``"*"``); the gateway forwards it to the peers' gateways, which hand it
to their node processes, and reports the membership as :class:`View`.

One gateway actor runs in each node's Thespian actor system. Its shell (in
:mod:`dstate_thespian._thespian`) feeds it Thespian messages and carries out
the :class:`Effect` s it returns, so this module is tested without processes.

Membership. A Thespian convention is a star: the leader hears about every
member, a member only about the leader. So the leader's gateway (``relay``)
sends every member a :class:`Roster` whenever its view changes, and a member's
view is the last roster (plus what its own convention updates say about the
leader). When a *new* leader incarnation appears (the leader restarted),
members re-register one by one, so its first rosters are partial: for
``settle`` seconds a member keeps the peers such a roster lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from dstate_core.runtime import ALL_PEERS, Parcel

__all__ = [
    "ALL_PEERS",
    "CAP_GATEWAY",
    "CAP_INCARNATION",
    "CAP_NODE",
    "SETTLE_SECONDS",
    "Attach",
    "Attached",
    "Batch",
    "Effect",
    "Entry",
    "GatewayCore",
    "Notify",
    "Parcel",
    "Roster",
    "Send",
    "View",
    "Wake",
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


#: How long a member keeps peers that a restarted leader's first rosters lack.
SETTLE_SECONDS = 6.0

#: Messages kept for the node process until it attaches (older ones are dropped).
MAX_PENDING = 10_000


class Entry(NamedTuple):
    """One dstate actor system: its node id, incarnation and gateway address."""

    node: str
    inc: str
    gateway: Any


class Send(NamedTuple):
    """Send ``msg`` to the Thespian address ``to``."""

    to: Any
    msg: Any


class Wake(NamedTuple):
    """Call :meth:`GatewayCore.wakeup` after ``seconds``."""

    seconds: float


class Notify(NamedTuple):
    """Subscribe this gateway to the convention's membership updates."""


Effect = Send | Wake | Notify


class GatewayCore:
    """One gateway's state: who its node process is, which peers it can reach.

    Args:
        me: this gateway's own Thespian address.
        settle: see the module docstring.

    Concurrency: none; the shell calls it from its actor's single thread.
    """

    def __init__(self, me: Any, settle: float = SETTLE_SECONDS) -> None:
        self._me = me
        self._settle = settle
        self.node = ""
        self.inc = ""
        self.relay = False
        self._member = False
        self._caller: Any = None
        self._pending: list[Any] = []
        self._direct: dict[str, Entry] = {}  # by str(admin address): addresses are unhashable
        self._roster_raw: dict[str, Entry] = {}
        self._roster: dict[str, Entry] = {}
        self._leader_inc: str | None = None
        self._settle_until = 0.0
        self._view: dict[str, Entry] = {}
        self._roster_news = False
        self.dropped = 0

    @property
    def view(self) -> Mapping[str, Entry]:
        """The peers this gateway can reach, by node id."""
        return dict(self._view)

    # -- inputs ---------------------------------------------------------------------

    def attach(self, msg: Attach, sender: Any, pid: int, admin_pid: int) -> list[Effect]:
        """The node process (``sender``) attached: replay what waited, then the view."""
        first = not self.node
        self.node, self.inc, self.relay = msg.node, msg.incarnation, msg.relay
        self._member = msg.member
        self._caller = sender
        out: list[Effect] = [Send(sender, Attached(self._me, pid, admin_pid, sender))]
        out += [Send(sender, m) for m in self._pending]
        self._pending.clear()
        out.append(Send(sender, self._view_msg()))
        if first:
            out.append(Notify())
        return out

    def convention(
        self, admin: Any, caps: Mapping[str, Any] | None, added: bool, now: float
    ) -> list[Effect]:
        """A convention update about the system whose admin is ``admin``."""
        entry = _entry(caps)
        if entry is None or (entry.node == self.node and entry.inc == self.inc):
            return []
        key = str(admin)
        if added:
            self._direct[key] = entry
        else:
            current = self._direct.get(key)
            if current is not None and current.inc == entry.inc:
                del self._direct[key]
            for table in (self._roster_raw, self._roster):
                known = table.get(entry.node)
                if known is not None and known.inc == entry.inc:
                    del table[entry.node]
        return self._recompute()

    def roster(self, msg: Roster, now: float) -> list[Effect]:
        """A roster from the convention leader (ignored by the leader itself)."""
        if self.relay:
            return []
        fresh = {
            node: Entry(node, inc, gateway)
            for node, inc, gateway in msg.entries
            if isinstance(node, str) and isinstance(inc, str) and node != self.node
        }
        out: list[Effect] = []
        if self._leader_inc is not None and msg.leader_inc != self._leader_inc:
            self._settle_until = now + self._settle
            out.append(Wake(self._settle))
        self._roster_news = self._leader_inc is None
        self._leader_inc = msg.leader_inc
        self._roster_raw = fresh
        if now < self._settle_until:
            kept = {n: e for n, e in self._roster.items() if n != msg.leader}
            self._roster = {**kept, **fresh}
        else:
            self._roster = dict(fresh)
        return out + self._recompute()

    def wakeup(self, now: float) -> list[Effect]:
        """The settle period may be over: apply the last roster as it is."""
        if now < self._settle_until:
            return []
        self._roster = dict(self._roster_raw)
        return self._recompute()

    def parcel(self, msg: Parcel) -> list[Effect]:
        """Route a parcel: from our node process to peers, from peers to our node process."""
        if msg.src == self.node and msg.src_inc == self.inc:
            if msg.dst == ALL_PEERS:
                return [Send(e.gateway, msg) for e in self._view.values()]
            entry = self._view.get(msg.dst)
            if entry is None:
                self.dropped += 1
                return []
            return [Send(entry.gateway, msg)]
        return self._to_caller(msg)

    def batch(self, msg: Batch) -> list[Effect]:
        """Route every parcel of a batch; what goes to one address travels as one batch."""
        sends: dict[str, tuple[Any, list[Parcel]]] = {}
        out: list[Effect] = []
        for item in msg.parcels:
            if not isinstance(item, Parcel):
                continue
            for effect in self.parcel(item):
                if isinstance(effect, Send) and isinstance(effect.msg, Parcel):
                    sends.setdefault(str(effect.to), (effect.to, []))[1].append(effect.msg)
                else:
                    out.append(effect)
        for to, parcels in sends.values():
            out.append(Send(to, parcels[0] if len(parcels) == 1 else Batch(tuple(parcels))))
        return out

    # -- internals ------------------------------------------------------------------

    def _to_caller(self, msg: Any) -> list[Effect]:
        if self._caller is not None:
            return [Send(self._caller, msg)]
        if len(self._pending) >= MAX_PENDING:
            self._pending.pop(0)
            self.dropped += 1
        self._pending.append(msg)
        return []

    def _recompute(self) -> list[Effect]:
        view: dict[str, Entry] = {}
        if not self.relay:
            view.update(self._roster)
        for entry in self._direct.values():
            if entry.gateway is not None:
                view[entry.node] = entry
        view.pop(self.node, None)
        if view == self._view and not self._roster_news:
            return []
        self._roster_news = False
        self._view = view
        out: list[Effect] = []
        if self.relay:
            roster = Roster(
                self.node,
                self.inc,
                (
                    *((e.node, e.inc, e.gateway) for e in view.values()),
                    (self.node, self.inc, self._me),
                ),
            )
            out += [Send(e.gateway, roster) for e in view.values()]
        if self._caller is not None:
            out.append(Send(self._caller, self._view_msg()))
        return out

    def _view_msg(self) -> View:
        peers = tuple(sorted((e.node, e.inc) for e in self._view.values()))
        return View(peers, complete=self._complete())

    def _complete(self) -> bool:
        """A member's view is complete once a roster came; a leader's or a simple one's always."""
        return self.relay or self._leader_inc is not None or not self._member


def _entry(caps: Mapping[str, Any] | None) -> Entry | None:
    if not isinstance(caps, Mapping):
        return None
    node = caps.get(CAP_NODE)
    inc = caps.get(CAP_INCARNATION, "")
    if not isinstance(node, str) or not node or not isinstance(inc, str):
        return None
    return Entry(node, inc, caps.get(CAP_GATEWAY))
