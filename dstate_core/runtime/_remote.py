"""The cross-node side of a distributed runtime: parcels out, parcels in, asks between nodes.

A runtime whose nodes live in separate processes keeps its actors local and
sends everything for other nodes as :class:`~._parcels.Parcel` s through its
transport. :class:`RemoteTraffic` is that traffic for one node, whatever the
transport: sends, casts to groups and asks go out through ``post``; what the
transport delivers goes to :meth:`RemoteTraffic.on_parcel`, and the peers it
can reach to :meth:`RemoteTraffic.on_view`. Parcels from nodes that are not
in the view, for actors that do not exist, or blocked by the fault model are
dropped and counted, never raised.

An ask travels as a :data:`~._parcels.ParcelKind.ASK` parcel carrying a fresh
reference; the answer comes back as ``REPLY`` (bytes) or ``FAIL`` (an error
text) with the same reference.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from .._logs import NodeLog
from .._ratelimit import DropLog
from ..model._clock import SystemClock
from ..model._errors import DStateError, NodeShutdownError
from ._directory import Directory
from ._faults import FaultModel
from ._parcels import ALL_PEERS, WANT_GROUPS, Parcel, ParcelKind, decode_groups, encode_groups
from ._protocol import ActorAskTimeout, PendingReply, check_positive_seconds

__all__ = [
    "GROUP_REPEATS",
    "REMOTE_ASK_LIMIT",
    "LocalActor",
    "LocalActors",
    "RemoteActorRef",
    "RemoteAskError",
    "RemoteTraffic",
]

#: How long a node serves an ask from another node before giving up.
REMOTE_ASK_LIMIT = 60.0


#: Seconds after a group-table change at which it is told to every peer again.
GROUP_REPEATS = (0.5, 2.0)


class RemoteAskError(DStateError):
    """An ask to an actor on another node failed there (the reason is in the message)."""


class LocalActor(Protocol):
    """An actor of this node, as remote traffic reaches it (a :class:`ThreadedActor` is one)."""

    @property
    def name(self) -> str:
        """The actor's name."""
        ...

    def tell(self, msg: Any) -> None:
        """Queue ``msg`` (raises ActorSendError once stopped)."""
        ...

    def ask(self, msg: Any, timeout: float) -> Any:
        """Queue ``msg`` and wait for the handler's reply."""
        ...


class LocalActors(Protocol):
    """What remote traffic needs of the runtime's own actors."""

    def local_actor(self, name: str) -> LocalActor | None:
        """The running actor called ``name``, if any."""
        ...

    def local_members(self, group: str) -> Sequence[LocalActor]:
        """This node's members of ``group``."""
        ...

    def group_table(self) -> dict[str, list[str]]:
        """Every group with the names of this node's members (what peers are told)."""
        ...


class RemoteTraffic:
    """One node's parcels to and from its peers.

    Args:
        node_id: this node.
        incarnation: this runtime instance's random id (peers tell restarts apart).
        post: hands a parcel to the transport; never blocks.
        local: the runtime's own actors and groups.
        faults: the test clusters' fault model; inbound data from a node it
            separates from this one is dropped (membership traffic passes).
        later: ``later(seconds, fn)`` runs ``fn`` on a timer (the runtime's); with
            it, a group-table change is told again (:meth:`publish_groups`).

    Concurrency: thread-safe. :meth:`on_parcel` and :meth:`on_view` run on the
    transport's receiving thread, in arrival order.
    """

    def __init__(
        self,
        node_id: str,
        incarnation: str,
        post: Callable[[Parcel], None],
        local: LocalActors,
        faults: FaultModel | None = None,
        later: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        self._node_id = node_id
        self._later = later
        self._inc = incarnation
        self._post_parcel = post
        self._local = local
        self._faults = faults
        self._lock = threading.Lock()
        self._pending: dict[str, PendingReply] = {}
        self._closed = False
        self._sent = self._bytes = 0
        self.directory = Directory(node_id)
        self.drops = DropLog(NodeLog("dstate.runtime", node_id), SystemClock())

    @property
    def node_id(self) -> str:
        """The node this traffic belongs to."""
        return self._node_id

    # -- counters -------------------------------------------------------------------

    @property
    def messages_sent(self) -> int:
        """Cross-node messages sent (one per destination actor: a cast to 2 peers is 2)."""
        return self._sent

    @property
    def bytes_sent(self) -> int:
        """Payload bytes of :attr:`messages_sent`."""
        return self._bytes

    @property
    def waiting(self) -> int:
        """Asks sent and not yet answered."""
        with self._lock:
            return len(self._pending)

    def _count(self, messages: int, size: int) -> None:
        with self._lock:
            self._sent += messages
            self._bytes += messages * size

    # -- outbound -------------------------------------------------------------------

    def _post(self, dst: str, kind: str, name: str, body: bytes, ref: str = "") -> None:
        self._post_parcel(Parcel(self._node_id, self._inc, dst, kind, name, body, ref))

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise NodeShutdownError(f"runtime {self._node_id!r} is shut down; cannot {what}")

    def send(self, node: str, name: str, body: bytes) -> None:
        """Send ``body`` to actor ``name`` on ``node`` (lost silently if unreachable).

        Raises:
            NodeShutdownError: this node was shut down.
        """
        self._check_open(f"send to actor {name!r} on node {node!r}")
        self._count(1, len(body))
        self._post(node, ParcelKind.SEND, name, body)

    def cast(self, group: str, body: bytes) -> None:
        """Send ``body`` to every member of ``group`` on every peer.

        Raises:
            NodeShutdownError: this node was shut down.
        """
        self._check_open(f"broadcast to group {group!r}")
        self._count(len(self.directory.remote_members(group)), len(body))
        self._post(ALL_PEERS, ParcelKind.CAST, group, body)

    def ask(self, node: str, name: str, body: bytes, timeout: float) -> bytes:
        """Ask actor ``name`` on ``node``; its reply bytes, or raise.

        Raises:
            ValueError: ``timeout`` is not a finite number > 0.
            ActorAskTimeout: no reply within ``timeout`` (also when the request
                or its reply is lost on the way).
            RemoteAskError: the remote handler failed or there is no such actor.
            NodeShutdownError: this node was (or got) shut down.
        """
        seconds = check_positive_seconds("timeout", timeout)
        self._check_open(f"ask actor {name!r} on node {node!r}")
        self._count(1, len(body))
        ref = uuid.uuid4().hex
        reply = PendingReply()
        with self._lock:
            self._pending[ref] = reply
        self._post(node, ParcelKind.ASK, name, body, ref)
        done = reply.wait(seconds)
        with self._lock:
            self._pending.pop(ref, None)
        if not done:
            raise ActorAskTimeout(
                f"no reply from actor {name!r} on node {node!r} within {seconds:g} s"
            )
        value: bytes = reply.result()
        return value

    def publish_groups(self, dst: str = ALL_PEERS, want_reply: bool = False) -> None:
        """Tell ``dst`` (default: every peer) this node's group table.

        A change told to every peer is told again :data:`GROUP_REPEATS` seconds later
        (when the runtime gave a ``later``): the update is sent once, unacknowledged, and
        a transport may lose it while its view changes (a peer that has not admitted
        this node yet drops it). A later copy of the same table changes nothing.
        """
        self._send_table(dst, want_reply)
        if dst == ALL_PEERS and not want_reply and self._later is not None:
            for delay in GROUP_REPEATS:
                try:
                    self._later(delay, self._send_table)
                except DStateError:  # the runtime is shutting down
                    return

    def _send_table(self, dst: str = ALL_PEERS, want_reply: bool = False) -> None:
        if not self._closed:
            table = encode_groups(self._local.group_table())
            self._post(dst, ParcelKind.GROUPS, "", table, WANT_GROUPS if want_reply else "")

    def members(self, group: str) -> list[RemoteActorRef]:
        """Refs to every joined peer's members of ``group``."""
        joined = self.directory.remote_members(group)
        return [RemoteActorRef(self, node, name) for node, name in joined]

    def is_joined(self, node: str) -> bool:
        """True while ``node`` is a joined peer."""
        return not self._closed and node in self.directory.joined()

    # -- inbound --------------------------------------------------------------------

    def on_view(self, peers: Iterable[tuple[str, str]], complete: bool = True) -> None:
        """The transport's peers now, as ``(node, incarnation)``; ``complete`` is False
        while the transport still learns them."""
        # A new peer may have sent its table before we saw it (refused then): ask again.
        for node in self.directory.apply_view(peers, complete):
            self.publish_groups(node, want_reply=True)

    def on_parcel(self, parcel: Parcel) -> None:
        """One parcel from the transport."""
        kind = parcel.kind
        if not self.directory.is_reachable(parcel.src, parcel.src_inc):
            self._drop(parcel, "not a member")
            return
        if kind == ParcelKind.GROUPS:  # membership data: it passes a partition
            self._on_groups(parcel)
            return
        if self._faults is not None and self._faults.blocked(parcel.src, self._node_id):
            self._drop(parcel, "partitioned")
            return
        if kind in (ParcelKind.REPLY, ParcelKind.FAIL):
            self._settle(parcel)
        elif kind == ParcelKind.ASK:
            self._serve(parcel, self._local.local_actor(parcel.name))
        elif kind == ParcelKind.CAST:
            self._deliver(parcel, self._local.local_members(parcel.name))
        elif kind == ParcelKind.SEND:
            actor = self._local.local_actor(parcel.name)
            self._deliver(parcel, [] if actor is None else [actor])
        else:
            self._drop(parcel, "unknown kind")

    def _deliver(self, parcel: Parcel, targets: Sequence[LocalActor]) -> None:
        if not targets:
            self._drop(parcel, "no such actor here")
        for actor in targets:
            try:
                actor.tell(parcel.body)
            except DStateError:
                self._drop(parcel, "the actor stopped")

    def _on_groups(self, parcel: Parcel) -> None:
        try:
            table = decode_groups(parcel.body)
        except ValueError as exc:
            self._drop(parcel, str(exc))
            return
        if not self.directory.apply_groups(parcel.src, parcel.src_inc, table):
            self._drop(parcel, "not a member")  # it left the view meanwhile
        elif parcel.ref == WANT_GROUPS:
            self.publish_groups(parcel.src)

    def _settle(self, parcel: Parcel) -> None:
        """Hand a REPLY or FAIL parcel to the ask waiting for it (a stray one is ignored)."""
        with self._lock:
            reply = self._pending.pop(parcel.ref, None)
        if reply is None:
            return
        if parcel.kind == ParcelKind.REPLY:
            reply.resolve(parcel.body)
        else:
            reply.fail(RemoteAskError(parcel.body.decode("utf-8", "replace")))

    def _serve(self, parcel: Parcel, actor: LocalActor | None) -> None:
        """Answer an ASK parcel with ``actor``'s reply, on a thread of its own."""

        def answer(kind: str, body: bytes) -> None:
            if not self._closed:
                self._post(parcel.src, kind, parcel.name, body, parcel.ref)

        if actor is None:
            answer(ParcelKind.FAIL, f"no actor {parcel.name!r} on node {self._node_id!r}".encode())
            return

        def serve() -> None:
            try:
                value = actor.ask(parcel.body, REMOTE_ASK_LIMIT)
            except Exception as exc:
                answer(ParcelKind.FAIL, f"{type(exc).__name__}: {exc}".encode())
                return
            if isinstance(value, bytes):
                answer(ParcelKind.REPLY, value)
            else:
                answer(ParcelKind.FAIL, f"the reply is {type(value).__name__}, not bytes".encode())

        threading.Thread(target=serve, name=f"dstate-ask-{self._node_id}", daemon=True).start()

    def _drop(self, parcel: Parcel, why: str) -> None:
        # Late traffic of a node that left, or a table that beat the view, is normal:
        # a non-member is INFO (rate limited).
        self.drops.drop(
            why,
            parcel.src,
            "dropped a %r parcel from %r for %r: %s",
            parcel.kind,
            parcel.src,
            parcel.name,
            why,
            level=logging.INFO if why == "not a member" else logging.DEBUG,
            peer=parcel.src,
        )

    def close(self) -> None:
        """Fail every waiting ask with :class:`NodeShutdownError`; answer no more asks."""
        with self._lock:
            self._closed = True
            waiting = list(self._pending.values())
            self._pending.clear()
        self.directory.clear_subscribers()
        for reply in waiting:
            reply.fail(NodeShutdownError(f"runtime {self._node_id!r} was shut down"))


class RemoteActorRef:
    """A handle to an actor on another node, as seen from one node's :class:`RemoteTraffic`.

    Messages must be ``bytes``; refs compare by ``(node_id, name)``.

    Concurrency: thread-safe; ``send`` never blocks, ``ask`` blocks the caller.
    """

    __slots__ = ("_name", "_node", "_traffic")

    def __init__(self, traffic: RemoteTraffic, node_id: str, name: str) -> None:
        self._traffic = traffic
        self._node = node_id
        self._name = name

    @property
    def node_id(self) -> str:
        """The node that hosts the actor."""
        return self._node

    @property
    def name(self) -> str:
        """The name the actor was spawned with."""
        return self._name

    @property
    def is_local(self) -> bool:
        """Always False: the actor runs on another node."""
        return False

    @property
    def alive(self) -> bool:
        """True while the actor's node is a joined peer."""
        return self._traffic.is_joined(self._node)

    def check_message(self, msg: Any) -> None:
        """Raise :class:`TypeError` unless ``msg`` is ``bytes`` (it crosses nodes)."""
        if not isinstance(msg, bytes):
            raise TypeError(
                f"a message to actor {self._name!r} on node {self._node!r} crosses nodes and "
                f"must be bytes, not {type(msg).__name__}"
            )

    def send(self, msg: Any) -> None:
        """Fire and forget; lost silently if the peer is unreachable.

        Raises:
            TypeError: ``msg`` is not ``bytes``.
            NodeShutdownError: the origin runtime was shut down.
        """
        self.check_message(msg)
        self._traffic.send(self._node, self._name, msg)

    def ask(self, msg: Any, timeout: float) -> Any:
        """Send and wait for the remote handler's reply (which must be ``bytes``).

        Raises:
            ActorAskTimeout: no reply within ``timeout`` seconds (also when the
                request or its reply is lost on the way).
            RemoteAskError: the handler failed there, or there is no such actor.
            TypeError: ``msg`` is not ``bytes``.
        """
        self.check_message(msg)
        return self._traffic.ask(self._node, self._name, msg, timeout)

    def stop(self) -> None:
        """Refused: an actor is stopped on its own node.

        Raises:
            ValueError: always.
        """
        raise ValueError(f"cannot stop actor {self._name!r} on node {self._node!r} from here")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteActorRef):
            return NotImplemented
        return (self._node, self._name) == (other._node, other._name)

    def __hash__(self) -> int:
        return hash((self._node, self._name))

    def __repr__(self) -> str:
        return f"<RemoteActorRef {self._name!r}@{self._node!r} from {self._traffic.node_id!r}>"
