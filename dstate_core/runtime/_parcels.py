"""The envelope of runtime traffic between nodes, and the group tables peers exchange.

A runtime whose nodes live in different processes carries every cross-node
actor message as a :class:`Parcel`: routing in plain strings, the payload in
``body`` (dstate's own traffic is the core's wire bytes). How a parcel travels
is the transport's business.

Each node also tells its peers which of its actors are in which cluster-wide
group (:func:`encode_groups`), so a peer can address them
(``docs/architecture.md#runtimes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgpack

__all__ = [
    "ALL_PEERS",
    "MAX_GROUPS",
    "MAX_NAME",
    "WANT_GROUPS",
    "Parcel",
    "ParcelKind",
    "decode_groups",
    "encode_groups",
]

#: ``Parcel.dst`` for "every peer".
ALL_PEERS = "*"

#: ``Parcel.ref`` of a :attr:`ParcelKind.GROUPS` parcel asking the receiver for its table.
WANT_GROUPS = "want-groups"

#: Caps on a peer's group table (it is peer input).
MAX_GROUPS = 10_000
MAX_NAME = 1_000


class ParcelKind:
    """Values of :attr:`Parcel.kind`."""

    #: Bytes for the actor called ``name`` on node ``dst``.
    SEND = "send"
    #: Bytes for every member of group ``name`` on the receiving node.
    CAST = "cast"
    #: The sender's group table (see :func:`encode_groups`) in ``body``;
    #: with ``ref`` :data:`WANT_GROUPS` the receiver answers with its own.
    GROUPS = "groups"
    #: An ask for the actor called ``name``; the reply names ``ref``.
    ASK = "ask"
    #: The bytes answering the ask ``ref``.
    REPLY = "reply"
    #: The ask ``ref`` failed; ``body`` is a UTF-8 reason.
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Parcel:
    """One actor message between nodes.

    Attributes:
        src, src_inc: the sending node and its runtime incarnation (a random
            id per runtime instance: a restarted node has a new one).
        dst: the receiving node, or :data:`ALL_PEERS`.
        kind: one of :class:`ParcelKind`.
        name: the target actor (or group) name.
        body: the payload.
        ref: pairs an ask with its reply.
    """

    src: str
    src_inc: str
    dst: str
    kind: str
    name: str
    body: bytes
    ref: str = ""


def encode_groups(groups: Mapping[str, Iterable[str]]) -> bytes:
    """A group table as msgpack ``{group: [actor names]}``."""
    return msgpack.packb({group: sorted(names) for group, names in groups.items()})


def decode_groups(data: bytes) -> dict[str, tuple[str, ...]]:
    """Parse a peer's group table.

    Raises:
        ValueError: not a well-formed table (malformed msgpack included).
    """
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"undecodable group table: {exc}") from None
    if not isinstance(raw, dict) or len(raw) > MAX_GROUPS:
        raise ValueError(f"a group table must be a map of at most {MAX_GROUPS} groups")
    table: dict[str, tuple[str, ...]] = {}
    for group, names in raw.items():
        if not isinstance(group, str) or len(group) > MAX_NAME or not isinstance(names, list):
            raise ValueError(f"bad group entry {group!r}")
        if not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names):
            raise ValueError(f"bad actor names in group {group!r}")
        table[group] = tuple(names)
    return table
