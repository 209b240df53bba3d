"""The node's inbound door: decode untrusted bytes once and route them.

Every byte from the network passes through :class:`InboundRouter`. Garbage of
any kind (malformed, oversized, unknown type or protocol version, failed
authentication, a state not registered here) is dropped, counted by reason and
logged at most once per sender and reason per minute; it never raises. A frame
that fails to decode names its sender only if it parses far enough to claim
one, and the log says that claim is unverified.
"""

from __future__ import annotations

import logging
from collections.abc import Container

from .._logs import NodeLog
from .._ratelimit import DropLog
from ..engine._events import ChangeAnnounced, MessageReceived
from ..model._clock import Clock
from ..wire._codec import WireCodec, WireDecodeError
from ..wire._messages import BatchedChangeFeed, SnapshotReply

__all__ = ["InboundRouter", "Routed"]

#: (state name, event for that state's shard)
Routed = tuple[str, MessageReceived | ChangeAnnounced]


class InboundRouter:
    """Turns inbound bytes into per-state engine events.

    Concurrency: one router per node, used from its inbox mailbox; ``drops``
    may be read from any thread.
    """

    def __init__(self, node_id: str, codec: WireCodec, clock: Clock) -> None:
        self._node_id = node_id
        self._codec = codec
        self._drops = DropLog(NodeLog("dstate.wire", node_id), clock)
        self.bytes_received = 0

    @property
    def drops(self) -> dict[str, int]:
        """Inbound messages dropped, by reason (a copy; any thread)."""
        return self._drops.counts()

    def _drop(self, reason: str, sender: str, detail: str, peer: str | None) -> None:
        # A state not registered (yet) here is normal while nodes start up, or in a
        # cluster whose nodes host different states: counted, but not a warning.
        level = logging.DEBUG if reason == "unknown_state" else logging.WARNING
        self._drops.drop(
            reason,
            sender,
            "dropped an inbound message from %s (%s): %s",
            sender,
            reason,
            detail,
            level=level,
            peer=peer,
        )

    def route(self, data: object, registered: Container[str]) -> list[Routed]:
        """Decode ``data`` and return the events for registered states (never raises)."""
        if isinstance(data, bytes | bytearray | memoryview):
            self.bytes_received += len(data)
        try:
            message = self._codec.decode(data)  # type: ignore[arg-type]
        except WireDecodeError as exc:
            claimed = exc.claimed_source
            sender = "an unidentified sender" if claimed is None else f"{claimed!r} (unverified)"
            self._drop(exc.reason.value, sender, exc.detail, claimed)
            return []
        if isinstance(message, BatchedChangeFeed):
            routed: list[Routed] = []
            for note in message.notifications:
                if note.source_node != message.source_node:
                    self._drop(
                        "forged",
                        repr(message.source_node),
                        f"its feed announces changes of node {note.source_node!r}",
                        message.source_node,
                    )
                elif note.state_name in registered:
                    routed.append((note.state_name, ChangeAnnounced(note)))
            return routed
        target = message.snapshot if isinstance(message, SnapshotReply) else message
        if target.state_name not in registered:
            self._drop(
                "unknown_state",
                repr(target.source_node),
                f"state {target.state_name!r} is not registered on this node",
                target.source_node,
            )
            return []
        return [(target.state_name, MessageReceived(message))]
