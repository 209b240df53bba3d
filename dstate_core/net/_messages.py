"""What network nodes say to each other: membership messages, parcels, and their bytes.

Every frame between two node processes is one msgpack array whose first item
says what it is: :data:`MEMBERSHIP` (a :class:`MemberMsg`), :data:`PARCEL`
(a runtime :class:`~dstate_core.runtime.Parcel`) or :data:`STATUS` (a
:class:`StatusRequest` from an observer such as ``python -m dstate_core
status``; the answer goes back on the same connection, see :mod:`~._report`).
:func:`decode_frame` checks every field's type and size: a frame from the
network is untrusted, and one that does not parse is a :class:`ValueError`,
never anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ..runtime._parcels import Parcel

__all__ = [
    "MAX_ADDRESS",
    "MAX_GOSSIP",
    "MAX_NODE_ID",
    "MAX_TABLE",
    "MEMBERSHIP",
    "PARCEL",
    "STATUS",
    "STATUS_REPLY",
    "Gossip",
    "MemberMsg",
    "MsgKind",
    "Peer",
    "PeerStatus",
    "StatusRequest",
    "decode_frame",
    "encode_member_msg",
    "encode_parcel",
    "encode_status_request",
]

#: First item of a frame carrying a membership message.
MEMBERSHIP = 1
#: First item of a frame carrying a parcel.
PARCEL = 2
#: First item of an observer's status request (``[STATUS, nonce]``).
STATUS = 3
#: First item of a node's answer to it (``[STATUS_REPLY, nonce, report]``).
STATUS_REPLY = 4

#: Caps on peer input.
MAX_NODE_ID = 255
MAX_INCARNATION = 64
MAX_ADDRESS = 300
MAX_GOSSIP = 64
MAX_TABLE = 100_000
MAX_REASON = 1_000
_MAX_VERSION = 2**53


class MsgKind:
    """Values of :attr:`MemberMsg.kind`."""

    #: "Are you there?" (``seq`` pairs it with the ack).
    PING = "ping"
    #: "I am" (``target`` set: the intermediary relays ``target``'s answer).
    ACK = "ack"
    #: "Ping ``target`` for me" (an indirect probe).
    PING_REQ = "ping-req"
    #: A new process asks a seed to let it in.
    JOIN = "join"
    #: A seed's answer to ``join``: the member ``table``.
    WELCOME = "welcome"
    #: A seed's refusal of ``join`` (``reason``): the process must not run.
    REFUSE = "refuse"
    #: "I am leaving" (only ever about the sender itself).
    LEAVE = "leave"
    #: Anti-entropy: the sender's ``table`` (``reply``: send yours back).
    SYNC = "sync"
    #: Only gossip (telling a node it was declared left, say).
    NOTICE = "notice"

    ALL = frozenset({PING, ACK, PING_REQ, JOIN, WELCOME, REFUSE, LEAVE, SYNC, NOTICE})


class PeerStatus:
    """Values of :attr:`Gossip.status`."""

    ALIVE = "alive"
    DEAD = "dead"
    ALL = frozenset({ALIVE, DEAD})


@dataclass(frozen=True, slots=True)
class Peer:
    """One node process as membership knows it.

    Attributes:
        node: the node id.
        inc: the process's incarnation: it sorts later for a later process of the
            same node id (wall-clock start time, then random).
        version: bumped by the process itself when it refutes being declared left.
        addr: ``host:port`` other nodes reach it at.
    """

    node: str
    inc: str
    version: int
    addr: str

    def same_process(self, other: Peer) -> bool:
        """True if ``other`` is the same node id and incarnation (any version)."""
        return self.node == other.node and self.inc == other.inc


@dataclass(frozen=True, slots=True)
class Gossip:
    """A rumour about a peer, piggybacked on membership messages."""

    status: str
    peer: Peer


@dataclass(frozen=True, slots=True)
class MemberMsg:
    """One membership message; ``src`` is always the sender itself."""

    kind: str
    src: Peer
    seq: int = 0
    target: Peer | None = None
    table: tuple[Peer, ...] = ()
    gossip: tuple[Gossip, ...] = ()
    reason: str = ""
    reply: bool = False


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """An observer asks for the node's status report; ``nonce`` pairs it with the answer."""

    nonce: int


# -- encoding -----------------------------------------------------------------------


def _peer_out(peer: Peer) -> list[Any]:
    return [peer.node, peer.inc, peer.version, peer.addr]


def encode_member_msg(msg: MemberMsg) -> bytes:
    """The frame for ``msg``."""
    return msgpack.packb(
        [
            MEMBERSHIP,
            msg.kind,
            _peer_out(msg.src),
            msg.seq,
            None if msg.target is None else _peer_out(msg.target),
            [_peer_out(p) for p in msg.table],
            [[g.status, *_peer_out(g.peer)] for g in msg.gossip],
            msg.reason,
            msg.reply,
        ],
        use_bin_type=True,
    )


def encode_parcel(parcel: Parcel) -> bytes:
    """The frame for ``parcel``."""
    return msgpack.packb(
        [
            PARCEL,
            parcel.src,
            parcel.src_inc,
            parcel.dst,
            parcel.kind,
            parcel.name,
            parcel.body,
            parcel.ref,
        ],
        use_bin_type=True,
    )


def encode_status_request(nonce: int) -> bytes:
    """The frame asking a node for its status report."""
    return msgpack.packb([STATUS, nonce])


# -- decoding -----------------------------------------------------------------------


def _text(value: Any, what: str, limit: int, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not value and not empty):
        raise ValueError(f"bad {what}")
    return value


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    """True if ``value`` is one of the strings ``allowed`` (False for a list, say)."""
    return isinstance(value, str) and value in allowed


def _peer_in(value: Any) -> Peer:
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("bad peer")
    node, inc, version, addr = value
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < _MAX_VERSION:
        raise ValueError("bad peer version")
    return Peer(
        _text(node, "node id", MAX_NODE_ID),
        _text(inc, "incarnation", MAX_INCARNATION),
        version,
        _address(addr),
    )


def _address(value: Any) -> str:
    text = _text(value, "address", MAX_ADDRESS)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad address")
    return text


def _peers(value: Any, limit: int) -> tuple[Peer, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise ValueError("bad peer list")
    return tuple(_peer_in(v) for v in value)


def _gossip(value: Any) -> tuple[Gossip, ...]:
    if not isinstance(value, list) or len(value) > MAX_GOSSIP:
        raise ValueError("bad gossip list")
    out = []
    for item in value:
        if not isinstance(item, list) or len(item) != 5 or not _one_of(item[0], PeerStatus.ALL):
            raise ValueError("bad gossip")
        out.append(Gossip(item[0], _peer_in(item[1:])))
    return tuple(out)


def _member_msg(items: Sequence[Any]) -> MemberMsg:
    if len(items) != 9:
        raise ValueError("bad membership message")
    _, kind, src, seq, target, table, gossip, reason, reply = items
    if not _one_of(kind, MsgKind.ALL):
        raise ValueError("unknown membership message kind")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < _MAX_VERSION:
        raise ValueError("bad sequence number")
    if not isinstance(reply, bool):
        raise ValueError("bad reply flag")
    return MemberMsg(
        kind=kind,
        src=_peer_in(src),
        seq=seq,
        target=None if target is None else _peer_in(target),
        table=_peers(table, MAX_TABLE),
        gossip=_gossip(gossip),
        reason=_text(reason, "reason", MAX_REASON, empty=True),
        reply=reply,
    )


def _parcel(items: Sequence[Any]) -> Parcel:
    if len(items) != 8:
        raise ValueError("bad parcel")
    _, src, src_inc, dst, kind, name, body, ref = items
    if not isinstance(body, bytes):
        raise ValueError("bad parcel body")
    return Parcel(
        _text(src, "parcel source", MAX_NODE_ID),
        _text(src_inc, "parcel incarnation", MAX_INCARNATION),
        _text(dst, "parcel destination", MAX_NODE_ID),
        _text(kind, "parcel kind", 16),
        _text(name, "parcel name", 1_000, empty=True),
        body,
        _text(ref, "parcel reference", 64, empty=True),
    )


def _status_request(items: Sequence[Any]) -> StatusRequest:
    if len(items) != 2:
        raise ValueError("bad status request")
    nonce = items[1]
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < _MAX_VERSION:
        raise ValueError("bad status request nonce")
    return StatusRequest(nonce)


def decode_frame(data: bytes) -> MemberMsg | Parcel | StatusRequest:
    """Parse one frame from a peer.

    Raises:
        ValueError: anything but a well-formed frame (malformed msgpack included).
    """
    try:
        items = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"undecodable frame: {type(exc).__name__}") from None
    if not isinstance(items, list) or not items:
        raise ValueError("a frame must be a non-empty array")
    if type(items[0]) is not int:  # True == 1, but a bool is no frame type
        raise ValueError("unknown frame type")
    if items[0] == MEMBERSHIP:
        return _member_msg(items)
    if items[0] == PARCEL:
        return _parcel(items)
    if items[0] == STATUS:
        return _status_request(items)
    raise ValueError("unknown frame type")
