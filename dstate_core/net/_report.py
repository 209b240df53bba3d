"""A node's status report: what an observer (``python -m dstate_core status``) gets.

An observer sends ``[STATUS, nonce]`` (:func:`~._messages.encode_status_request`)
over an authenticated connection; the node answers on that connection with
``[STATUS_REPLY, nonce, report]``, the report being a :class:`NodeReport`. The
observer is never a member: it sends no membership message, so no node puts
it in its views.

The answer is checked like every other frame from the network
(:func:`decode_status_reply`): types, sizes and counts are capped, and
anything else is a :class:`ValueError`.

A node's network builds the answers (:class:`StatusDesk`): the node says what
its states are (a *source*, set by :class:`~dstate_core.DStateNode`), the
network adds who it is and the members it knows. Answers are rate-limited: an
observer refreshes every second or so, and a flood of requests must not keep
the I/O thread busy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._messages import MAX_ADDRESS, MAX_INCARNATION, MAX_NODE_ID, STATUS_REPLY

__all__ = [
    "MAX_ANSWERS_PER_SECOND",
    "NodeReport",
    "StateReport",
    "StatusDesk",
    "StatusSource",
    "ViewReport",
    "decode_status_reply",
    "encode_status_reply",
]

_MAX_PEERS = 10_000
_MAX_STATES = 1_000
_Name = Annotated[str, Field(min_length=1, max_length=MAX_NODE_ID)]
_Count = Annotated[int, Field(ge=0, lt=2**63)]
_Seconds = Annotated[float, Field(ge=0)]
_Health = Annotated[str, Field(pattern="^(HEALTHY|DEGRADED|UNHEALTHY)$")]
_Address = Annotated[str, Field(min_length=1, max_length=MAX_ADDRESS)]


class _Checked(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ViewReport(_Checked):
    """What the reporting node holds of one peer's shard of a state.

    Attributes:
        peer: the peer's node id.
        incarnation, age: the generation held (``None``: no view).
        synced_ago: seconds since the view was last synced (``None``: never).
        failures: failed syncs in a row.
    """

    peer: _Name
    incarnation: _Count | None
    age: _Count | None
    synced_ago: _Seconds | None
    failures: _Count


class StateReport(_Checked):
    """One registered state on the reporting node.

    Attributes:
        name: the state's name.
        incarnation, age: the generation of the node's own shard.
        health: the node's grade of its views of the state (``docs/diagnostics.md``).
        views: one row per peer.
    """

    name: _Name
    incarnation: _Count
    age: _Count
    health: _Health
    views: Annotated[list[ViewReport], Field(max_length=_MAX_PEERS)]

    def view_of(self, peer: str) -> ViewReport | None:
        """The row of ``peer``, if the node tracks it."""
        return next((v for v in self.views if v.peer == peer), None)


class NodeReport(_Checked):
    """A node's answer to a status request.

    Attributes:
        node: its node id.
        address: where members reach it.
        incarnation: its process's incarnation.
        ready: whether :meth:`~dstate_core.DStateNode.is_ready` holds.
        members: every live member it knows (itself included): node id to address.
        states: its registered states.
    """

    node: _Name
    address: _Address
    incarnation: Annotated[str, Field(min_length=1, max_length=MAX_INCARNATION)]
    ready: bool
    members: Annotated[
        dict[_Name, Annotated[str, Field(max_length=MAX_ADDRESS)]], Field(max_length=_MAX_PEERS)
    ]
    states: Annotated[list[StateReport], Field(max_length=_MAX_STATES)]


def encode_status_reply(nonce: int, report: NodeReport) -> bytes:
    """The frame answering the request ``nonce`` with ``report``."""
    return msgpack.packb([STATUS_REPLY, nonce, report.model_dump()])


def decode_status_reply(data: bytes) -> tuple[int, NodeReport]:
    """``(nonce, report)`` from a node's answer.

    Raises:
        ValueError: anything but a well-formed answer.
    """
    try:
        items: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"undecodable answer: {type(exc).__name__}") from None
    if (
        not isinstance(items, list)
        or len(items) != 3
        or type(items[0]) is not int
        or items[0] != STATUS_REPLY
        or type(items[1]) is not int
    ):
        raise ValueError("not a status answer")
    try:
        return items[1], NodeReport.model_validate(items[2])
    except ValidationError as exc:
        raise ValueError(f"malformed status answer: {exc.error_count()} bad fields") from None


#: What a node reports: whether it is ready, and its states.
StatusSource = Callable[[], tuple[bool, list[StateReport]]]

#: Status requests answered per second at most (the rest are refused and counted).
MAX_ANSWERS_PER_SECOND = 20

_log = logging.getLogger("dstate.net")


class StatusDesk:
    """Builds a node's answers to status requests.

    Concurrency: :meth:`answer_with` from any thread; :meth:`answer` on the I/O thread.
    """

    def __init__(
        self,
        node: str,
        address: str,
        incarnation: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._node, self._address, self._incarnation = node, address, incarnation
        self._clock = clock
        self._source: StatusSource | None = None
        self._lock = threading.Lock()
        self._second = 0
        self._answered = 0

    def answer_with(self, source: StatusSource | None) -> None:
        """Report the states ``source`` returns (``None``: no node; report none)."""
        with self._lock:
            self._source = source

    def answer(self, nonce: int, members: Mapping[str, str]) -> bytes | None:
        """The answer to request ``nonce`` (``members``: node id to address, this node
        excluded), or ``None`` when over the rate limit."""
        second = int(self._clock())
        if second != self._second:
            self._second, self._answered = second, 0
        if self._answered >= MAX_ANSWERS_PER_SECOND:
            return None
        self._answered += 1
        with self._lock:
            source = self._source
        ready = False
        states: list[StateReport] = []
        if source is not None:
            try:
                ready, states = source()
            except Exception:  # the node is shutting down, say: report no states
                _log.debug("node %r: its status source failed", self._node, exc_info=True)
        report = NodeReport(
            node=self._node,
            address=self._address,
            incarnation=self._incarnation,
            ready=ready,
            members={**members, self._node: self._address},
            states=states,
        )
        return encode_status_reply(nonce, report)
