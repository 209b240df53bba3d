"""Asks between nodes: outgoing asks matched to their replies, incoming asks served.

An ask travels as a :data:`Kind.ASK` parcel carrying a fresh reference; the
answer comes back as :data:`Kind.REPLY` (bytes) or :data:`Kind.FAIL` (an
error text) with the same reference.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from dstate_core.model import NodeShutdownError
from dstate_core.runtime import ActorAskTimeout, PendingReply, ThreadedActor

from ._protocol import Kind, Parcel
from ._refs import RemoteAskError

__all__ = ["REMOTE_ASK_LIMIT", "RemoteAsks"]

#: How long a node serves an ask from another node before giving up.
REMOTE_ASK_LIMIT = 60.0

#: ``post(dst, kind, name, body, ref)``: put a parcel on the wire.
Post = Callable[[str, str, str, bytes, str], None]


class RemoteAsks:
    """The asks of one node. Concurrency: thread-safe."""

    def __init__(self, node_id: str, post: Post) -> None:
        self._node_id = node_id
        self._post = post
        self._lock = threading.Lock()
        self._pending: dict[str, PendingReply] = {}
        self._closed = False

    @property
    def waiting(self) -> int:
        """Asks sent and not yet answered."""
        with self._lock:
            return len(self._pending)

    def ask(self, node: str, name: str, body: bytes, seconds: float) -> object:
        """Ask actor ``name`` on ``node``; its reply bytes, or raise.

        Raises:
            ActorAskTimeout: no reply within ``seconds``.
            RemoteAskError: the remote handler failed or there is no such actor.
            NodeShutdownError: this node shut down while waiting.
        """
        ref = uuid.uuid4().hex
        reply = PendingReply()
        with self._lock:
            self._pending[ref] = reply
        self._post(node, Kind.ASK, name, body, ref)
        done = reply.wait(seconds)
        with self._lock:
            self._pending.pop(ref, None)
        if not done:
            raise ActorAskTimeout(
                f"no reply from actor {name!r} on node {node!r} within {seconds:g} s"
            )
        return reply.result()

    def settle(self, parcel: Parcel) -> None:
        """Hand a REPLY or FAIL parcel to the ask waiting for it (a stray one is ignored)."""
        with self._lock:
            reply = self._pending.pop(parcel.ref, None)
        if reply is None:
            return
        if parcel.kind == Kind.REPLY:
            reply.resolve(parcel.body)
        else:
            reply.fail(RemoteAskError(parcel.body.decode("utf-8", "replace")))

    def serve(self, parcel: Parcel, actor: ThreadedActor | None) -> None:
        """Answer an ASK parcel with ``actor``'s reply, on a thread of its own."""

        def answer(kind: str, body: bytes) -> None:
            if not self._closed:
                self._post(parcel.src, kind, parcel.name, body, parcel.ref)

        if actor is None:
            answer(Kind.FAIL, f"no actor {parcel.name!r} on node {self._node_id!r}".encode())
            return

        def serve() -> None:
            try:
                value = actor.ask(parcel.body, REMOTE_ASK_LIMIT)
            except Exception as exc:
                answer(Kind.FAIL, f"{type(exc).__name__}: {exc}".encode())
                return
            if isinstance(value, bytes):
                answer(Kind.REPLY, value)
            else:
                answer(Kind.FAIL, f"the reply is {type(value).__name__}, not bytes".encode())

        threading.Thread(target=serve, name=f"dstate-ask-{self._node_id}", daemon=True).start()

    def close(self) -> None:
        """Fail every waiting ask with :class:`NodeShutdownError`; answer no more asks."""
        with self._lock:
            self._closed = True
            waiting = list(self._pending.values())
            self._pending.clear()
        for reply in waiting:
            reply.fail(NodeShutdownError(f"runtime {self._node_id!r} was shut down"))
