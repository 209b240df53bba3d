"""``TcpNetwork``: a node process's encrypted, authenticated link to its cluster.

One :class:`TcpNetwork` per node process. It listens on one TCP port (ZeroMQ,
CURVE), runs the membership engine (:mod:`~._membership`) on its I/O thread,
carries a runtime's parcels to the members, and answers observers' status
requests (:mod:`~._report`). A runtime attaches to it (:meth:`TcpNetwork.attach`)
and gets the parcels that arrive and the members it can reach.

Threads: sends go out from the caller's thread straight onto the peer's
socket (no hand-off to another thread); one I/O thread receives, runs the
membership engine and its timers, and delivers what arrives directly to the
runtime (which puts it in an actor's mailbox). So a message costs one thread
switch on each side, and a burst of them is handled in one wake-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import zmq

from .._logs import NodeLog
from .._ratelimit import DropLog
from ..model._clock import SystemClock
from ..model._errors import DStateError
from ..runtime._parcels import ALL_PEERS, Parcel
from ._membership import (
    JoinRefused,
    MemberDown,
    Membership,
    MembershipConfig,
    MembershipOutput,
    MemberUp,
    Send,
)
from ._messages import (
    MemberMsg,
    Peer,
    StatusRequest,
    decode_frame,
    encode_member_msg,
    encode_parcel,
)
from ._report import StatusDesk, StatusSource
from ._settings import DEFAULT_MAX_MESSAGE_BYTES, check_settings, reachable_host
from ._sockets import Sockets, frame_peer_address, frame_user_id

__all__ = ["JoinRefusedError", "NetworkSink", "TcpNetwork"]

#: Handshake failures with every seed (and no success) that make a node give up.
_REFUSALS_TO_GIVE_UP = 3
#: Inbound frames handled per wake-up at most before timers get a turn.
_BURST = 1024


class JoinRefusedError(DStateError):
    """The cluster refused this node (its node id is taken, or its key is wrong)."""


class NetworkSink(Protocol):
    """Where a network delivers (a runtime's remote traffic)."""

    def on_parcel(self, parcel: Parcel) -> None:
        """One parcel from a peer."""
        ...

    def on_view(self, peers: Iterable[tuple[str, str]], complete: bool = True) -> None:
        """The members this node reaches now, as ``(node, incarnation)``."""
        ...


class TcpNetwork:
    """A node's network: listen, find the cluster through seeds, carry parcels.

    Args:
        node_id: this node's id, unique in the cluster.
        listen: ``"host:port"`` to listen on (port 0: any free port; see :attr:`address`).
        seeds: ``"host:port"`` of members to join through (none: start a cluster).
        cluster_secret: bytes, at least 32; every node of the cluster has the same.
        advertise: ``"host:port"`` peers reach this node at, if not ``listen``
            (behind NAT, in a container, or when listening on 0.0.0.0).
        failure_timeout: seconds within which a silent process is declared left.
        insecure: no encryption and no authentication; only on a loopback address.
        max_message_bytes: a bigger frame closes the sender's connection.
        certificates: instead of ``cluster_secret``, a directory of per-node
            certificate files (see :mod:`dstate_core.net._keys`): each node has its
            own key, and no node can speak for another.

    Raises:
        ValueError, TypeError: a bad argument (the message says how to fix it),
            or ``listen`` cannot be bound.

    Concurrency: thread-safe. Nothing happens on the network until a runtime
    attaches and :meth:`start` is called (a runtime's constructor does both).
    """

    def __init__(
        self,
        node_id: str,
        listen: str = "127.0.0.1:0",
        seeds: Sequence[str] = (),
        *,
        cluster_secret: bytes | None = None,
        advertise: str | None = None,
        failure_timeout: float = 1.0,
        insecure: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        certificates: str | os.PathLike[str] | None = None,
    ) -> None:
        self._settings = settings = check_settings(
            node_id,
            listen,
            seeds if isinstance(seeds, str) else list(seeds),  # a str is refused there
            cluster_secret,
            advertise,
            failure_timeout,
            insecure,
            max_message_bytes,
            certificates,
        )
        self._log = NodeLog("dstate.net", settings.node_id)
        self.rejected = DropLog(self._log, SystemClock())
        # With certificate files a connection's key proves its node: frames must agree.
        self._identified = any(settings.members.values()) if settings.members else False
        self._sockets = Sockets(settings, self._on_zap)
        self._address = settings.advertise or f"{reachable_host(settings)}:{self._sockets.port}"
        self._incarnation = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        me = Peer(settings.node_id, self._incarnation, 0, self._address)
        config = MembershipConfig(failure_timeout=settings.failure_timeout)
        self._engine = Membership(me, settings.seeds, config, SystemClock(), random.Random())
        self._desk = StatusDesk(settings.node_id, self._address, self._incarnation)
        self._sink: NetworkSink | None = None
        self._routes: dict[str, str] = {}
        self._view: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._starting = self._stopping = self._closed = False
        self._started = threading.Event()
        self._joined = threading.Event()
        self._refused: str | None = None
        self._settled = False
        #: Views to publish once :meth:`_apply` has queued its batch's messages.
        self._held: list[tuple[list[tuple[str, str]], bool]] | None = None
        self._seed_failures: dict[str, int] = {}
        self._seed_ok: set[str] = set()
        self._sent = self._bytes = self._shed = 0
        self._thread: threading.Thread | None = None

    # -- inspection -------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._settings.node_id

    @property
    def address(self) -> str:
        """``"host:port"`` peers reach this node at (the real port after ``listen`` on :0)."""
        return self._address

    @property
    def incarnation(self) -> str:
        """This process's incarnation (a later process of the same node id sorts later)."""
        return self._incarnation

    @property
    def failure_timeout(self) -> float:
        """Seconds within which a silent member is declared left."""
        return self._settings.failure_timeout

    @property
    def secure(self) -> bool:
        """True when connections are encrypted and authenticated (a cluster secret is set)."""
        return self._settings.keys is not None

    @property
    def refused(self) -> str | None:
        """Why the cluster refused this node, if it did."""
        return self._refused

    def members(self) -> list[str]:
        """The live members' node ids, this node's included, sorted."""
        with self._lock:
            return sorted([*self._routes, self.node_id])

    def counters(self) -> dict[str, Any]:
        """Traffic and rejection counts: frames sent, bytes, shed, and rejected input by
        reason and by the peer it came from (or claimed to)."""
        return {
            "frames_sent": self._sent,
            "bytes_sent": self._bytes,
            "frames_shed": self._shed,
            "rejected": self.rejected.counts(),
            "rejected_by_peer": self.rejected.by_source(),
        }

    # -- used by a runtime --------------------------------------------------------------

    def attach(self, sink: NetworkSink) -> None:
        """Deliver parcels and member changes to ``sink`` (once, before :meth:`start`).

        Raises:
            ValueError: a runtime is attached already.
        """
        with self._lock:
            if self._sink is not None:
                raise ValueError(f"network of node {self.node_id!r} already has a runtime")
            self._sink = sink

    def answer_status(self, source: StatusSource | None) -> None:
        """Answer observers' status requests with what ``source`` reports (a node sets it;
        ``None`` stops reporting states)."""
        self._desk.answer_with(source)

    def start(self) -> None:
        """Start the I/O thread and join the cluster (idempotent)."""
        with self._lock:
            if self._starting or self._stopping:
                return
            self._starting = True
        self._thread = threading.Thread(
            target=self._run, name=f"dstate-net-{self.node_id}", daemon=True
        )
        self._thread.start()
        self._started.wait()

    def wait_joined(self, timeout: float, cancel: threading.Event | None = None) -> bool:
        """Wait until a seed let this node in (at once without seeds); False on timeout.

        Raises:
            JoinRefusedError: the cluster refused this node.
        """
        deadline = time.monotonic() + timeout
        while not self._joined.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                break
        if self._refused is not None:
            raise JoinRefusedError(self._refused)
        return self._joined.is_set()

    def post(self, parcel: Parcel) -> None:
        """Send ``parcel`` to its node, or every member for ``ALL_PEERS``; never blocks.

        Lost (and counted) if the node is not a member or its queue is full.
        """
        with self._lock:
            if parcel.dst == ALL_PEERS:
                addrs = list(self._routes.values())
            else:
                addr = self._routes.get(parcel.dst)
                addrs = [] if addr is None else [addr]
        if addrs:
            frame = encode_parcel(parcel)
            for addr in addrs:
                self._send(addr, frame)

    def close(self) -> None:
        """Say goodbye to the members (they see this node leave at once), then close."""
        with self._lock:
            # Not ``_stopping``: a refused or failed I/O thread sets that, and its pipe
            # must still be closed here.
            if self._closed:
                return
            self._closed = self._stopping = True
            thread = self._thread
        if thread is None:
            self._sockets.close_all()
        else:
            self._wake()
            thread.join(5.0)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    # -- the I/O thread -------------------------------------------------------------------

    def _run(self) -> None:
        sockets = self._sockets
        poller = zmq.Poller()
        poller.register(sockets.router, zmq.POLLIN)
        poller.register(sockets.router_monitor, zmq.POLLIN)
        if sockets.zap is not None:
            poller.register(sockets.zap, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._apply(self._engine.start())
        self._publish_view()
        self._started.set()
        engine = self._engine
        try:
            while not self._stopping:
                new, dead = sockets.monitor_changes()
                for monitor in new:
                    poller.register(monitor, zmq.POLLIN)
                for monitor in dead:
                    poller.unregister(monitor)
                    monitor.close(linger=0)
                wait = max(0.0, min(engine.next_deadline() - time.monotonic(), 0.1))
                for sock, _ in poller.poll(round(wait * 1000)):
                    self._on_ready(sock)
                if time.monotonic() >= engine.next_deadline():
                    self._apply(engine.tick())
            if self._refused is None:
                self._apply(engine.leave())
        except Exception:
            self._log.exception("the network thread failed")
        finally:
            self._stopping = True
            with self._lock:  # a closed network has no members but itself
                self._routes.clear()
                self._view.clear()
            self._joined.set()
            self._started.set()
            sockets.close_all(linger_ms=300)

    def _on_ready(self, sock: Any) -> None:
        sockets = self._sockets
        if sock is sockets.router:
            self._receive_burst()
        elif sock is sockets.zap:
            sockets.answer_zap()
        elif sock == self._wake_r:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
        else:
            event = sockets.monitor_event(sock)
            if event is not None:
                self._on_handshake(event.addr, event.ok, event.denied)

    def _receive_burst(self) -> None:
        router = self._sockets.router
        for _ in range(_BURST):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._reject("malformed frame", frame_peer_address(frames[0]))
                continue
            self._on_frame(frames[1], frames[0])

    def _on_frame(self, frame: zmq.Frame, sender_id: zmq.Frame) -> None:
        try:
            item = decode_frame(frame.bytes)
        except ValueError as exc:
            self._reject(f"malformed frame ({exc})", frame_peer_address(frame))
            return
        if isinstance(item, StatusRequest):
            self._answer(item, sender_id, frame)
            return
        sender = item.src.node if isinstance(item, MemberMsg) else item.src
        if self._identified:
            proven = frame_user_id(frame)
            if sender != proven:
                self._reject(f"claims to be node {sender!r}", proven or frame_peer_address(frame))
                return
        if isinstance(item, MemberMsg):
            self._apply(self._engine.receive(item))
        elif item.dst not in (self.node_id, ALL_PEERS):
            self._reject("parcel for another node", item.src)
        elif self._sink is not None:
            self._sink.on_parcel(item)

    def _apply(self, outputs: list[MembershipOutput]) -> None:
        # The runtime hears of member changes only after this batch's messages are queued:
        # a joiner gets its WELCOME before the parcels our runtime sends it once it is a
        # member here (it would drop them, not knowing us yet).
        self._held = []
        for out in outputs:
            if isinstance(out, Send):
                self._send(out.addr, encode_member_msg(out.msg))
            elif isinstance(out, MemberUp):
                self._member_up(out.peer)
            elif isinstance(out, MemberDown):
                self._member_down(out.peer, out.reason)
            elif isinstance(out, JoinRefused):
                self._give_up(f"seed {out.seed} refused node {self.node_id!r}: {out.reason}")
        held, self._held = self._held, None
        if self._sink is not None:
            for view, complete in held:
                self._sink.on_view(view, complete)
        if self._engine.joined:
            self._joined.set()
        if self._settled != self._engine.settled:
            self._publish_view()

    def _answer(self, request: StatusRequest, sender_id: zmq.Frame, frame: zmq.Frame) -> None:
        """Answer an observer on the connection its request came on."""
        with self._lock:
            members = dict(self._routes)
        try:
            answer = self._desk.answer(request.nonce, members)
        except ValueError:  # a report past the caps (more than 10,000 peers, say)
            self._log.warning("cannot build a status report", exc_info=True)
            return
        if answer is None:
            self._reject("status requests over the rate limit", frame_peer_address(frame))
            return
        with contextlib.suppress(zmq.ZMQError):  # the observer is gone, or its queue full
            self._sockets.router.send_multipart([sender_id.bytes, answer], zmq.NOBLOCK)

    def _member_up(self, peer: Peer) -> None:
        self._log.info("%r joined (%s)", peer.node, peer.addr, peer=peer.node)
        with self._lock:
            self._routes[peer.node] = peer.addr
            self._view[peer.node] = peer.inc
        self._publish_view()

    def _member_down(self, peer: Peer, reason: str) -> None:
        self._log.info("%r left (%s)", peer.node, reason, peer=peer.node)
        with self._lock:
            self._routes.pop(peer.node, None)
            self._view.pop(peer.node, None)
            in_use = peer.addr in self._routes.values() or peer.addr in self._settings.seeds
        if not in_use:
            self._sockets.forget(peer.addr)
        self._publish_view()

    def _publish_view(self) -> None:
        """Tell the runtime the members now (complete once no rumoured one is being checked)."""
        self._settled = self._engine.settled
        with self._lock:
            view = list(self._view.items())
        if self._held is not None:
            self._held.append((view, self._settled))
        elif self._sink is not None:
            self._sink.on_view(view, self._settled)

    def _on_handshake(self, addr: str, ok: bool, denied: bool = False) -> None:
        if ok:
            self._seed_ok.add(addr)
            return
        if not addr:
            why = "a client without the cluster key?" if self.secure else "not a dstate node?"
            self._reject(f"handshake failed ({why})", "inbound")
            return
        # While joining, a refusal is reported once, by whoever waits for the join
        # (JoinRefusedError, or the join timeout's warning): not a second time here.
        level = logging.WARNING if self._engine.joined else logging.INFO
        self._reject("handshake failed: the peer refused this node's key", addr, level)
        # A denial is the server's answer (it knows the cluster's keys, not ours): final.
        failures = _REFUSALS_TO_GIVE_UP if denied else self._seed_failures.get(addr, 0) + 1
        self._seed_failures[addr] = failures
        seeds = [s for s in self._settings.seeds if s != self._address]
        if (
            seeds
            and not self._engine.joined
            and not self._seed_ok & set(seeds)
            and all(self._seed_failures.get(s, 0) >= _REFUSALS_TO_GIVE_UP for s in seeds)
        ):
            self._give_up(
                "every seed refused this node's key (the encrypted handshake failed): "
                "give it the cluster's secret (the same --secret-file as the other nodes), "
                "or with certificates, put its public key in the other nodes' directories"
            )

    def _give_up(self, reason: str) -> None:
        # Raised as JoinRefusedError to whoever waits for the join: logged quietly here.
        self._log.info("%s", reason)
        self._refused = reason
        self._stopping = True
        self._joined.set()

    def _on_zap(self, address: str, admitted: bool) -> None:
        if not admitted:
            self._reject("unknown key (not a cluster member)", address)

    def _reject(self, reason: str, source: str | None, level: int = logging.WARNING) -> None:
        self.rejected.drop(
            reason,
            source or "unknown",
            "rejected input from %s: %s",
            source or "an unknown peer",
            reason,
            level=level,
            peer=source,  # a node id, or the address of a connection not yet identified
        )

    def _send(self, addr: str, frame: bytes) -> None:
        if self._sockets.send(addr, frame):
            self._sent += 1
            self._bytes += len(frame)
        else:
            self._shed += 1

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def __repr__(self) -> str:
        mode = "secure" if self.secure else "insecure"
        return f"<TcpNetwork {self.node_id!r} at {self._address} {mode}>"
