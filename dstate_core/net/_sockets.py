"""The ZeroMQ sockets of one network node: one listening ROUTER, one DEALER per peer.

A node receives everything on its ROUTER and sends to each peer address on a
DEALER of its own: every message is one-way, so no socket waits for another.
With CURVE on, the ROUTER is a CURVE server and each DEALER a client; a ZAP
handler (:meth:`Sockets.answer_zap`) admits only clients holding the cluster
key. Each DEALER has a monitor socket so a handshake that fails is seen (see
:meth:`Sockets.monitor_event`), not retried in silence.

The high-water marks bound memory: a peer that does not drain its queue
(slow, or flooding us) has its messages shed and counted, and the others go on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from ._settings import NetworkSettings

__all__ = [
    "HIGH_WATER_MARK",
    "MonitorEvent",
    "Sockets",
    "frame_peer_address",
    "frame_user_id",
]

#: Messages queued per peer and direction at most.
HIGH_WATER_MARK = 10_000
#: A connection that has not finished its handshake by then is closed (libzmq's
#: default is 30 s: long enough for many half-open connections to pile up).
HANDSHAKE_MS = 5_000
#: How long a closing socket may still flush (a goodbye, say).
_CLOSE_LINGER_MS = 300
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_WATCHED = _HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED


@dataclass(frozen=True)
class MonitorEvent:
    """A handshake outcome on a connection: ``ok``, or failed; ``addr`` is the peer's
    (or ``""`` for an inbound connection)."""

    addr: str
    ok: bool
    #: The server said no to this node's key (ZAP), rather than the handshake breaking.
    denied: bool = False


class Sockets:
    """A node's sockets. Create, bind, send; the I/O thread polls and receives.

    Args:
        settings: the checked settings (keys, limits, where to listen).
        on_zap: called with ``(peer ip, admitted)`` for every ZAP decision.

    Raises:
        ValueError: ``listen`` cannot be bound (in use, or not this machine's).

    Concurrency: :meth:`send` may be called from any thread (one lock guards the
    DEALERs); everything else runs on the I/O thread.
    """

    def __init__(self, settings: NetworkSettings, on_zap: Callable[[str, bool], None]) -> None:
        self._settings = settings
        self._on_zap = on_zap
        self.context = zmq.Context()
        self._lock = threading.Lock()
        self._dealers: dict[str, zmq.Socket[bytes]] = {}
        self._monitor_of: dict[zmq.Socket[bytes], str] = {}
        self._monitor_by_addr: dict[str, zmq.Socket[bytes]] = {}
        self._new_monitors: list[zmq.Socket[bytes]] = []
        self._dead_monitors: list[zmq.Socket[bytes]] = []
        self._closed = False
        self.zap: zmq.Socket[bytes] | None = None
        keys = settings.keys
        if keys is not None:
            self.zap = self.context.socket(zmq.REP)
            self.zap.linger = 0
            self.zap.bind(_ZAP_ENDPOINT)
        self._members = settings.members or {}
        self.router: zmq.Socket[bytes] = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.rcvhwm = HIGH_WATER_MARK
        self.router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        self.router.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
        if keys is not None:
            self.router.curve_server = True
            self.router.curve_secretkey = keys.secret
            self.router.curve_publickey = keys.public
            self.router.zap_domain = b"dstate"
        endpoint = f"tcp://{settings.listen_host}:{settings.listen_port}"
        try:
            self.router.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close_all()
            raise ValueError(
                f"cannot listen on {settings.listen_host}:{settings.listen_port}: {exc} "
                "(is another process using the port? is the host this machine's?)"
            ) from None
        last = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(last.rpartition(":")[2])
        self.router_monitor: zmq.Socket[bytes] = self.router.get_monitor_socket(_HANDSHAKE_FAILED)

    # -- sending (any thread) --------------------------------------------------------

    def send(self, addr: str, frame: bytes) -> bool:
        """Queue ``frame`` for the node at ``addr``; False if its queue is full (shed)."""
        with self._lock:
            if self._closed:
                return False
            dealer = self._dealers.get(addr) or self._connect(addr)
            try:
                dealer.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
            except zmq.Again:
                return False
        return True

    def forget(self, addr: str) -> None:
        """Close the DEALER to ``addr`` (letting it flush a little first)."""
        with self._lock:
            dealer = self._dealers.pop(addr, None)
            if dealer is not None:
                dealer.disable_monitor()
                dealer.close(linger=_CLOSE_LINGER_MS)
                self._dead_monitors.append(self._monitor_by_addr.pop(addr))

    def _connect(self, addr: str) -> zmq.Socket[bytes]:
        dealer: zmq.Socket[bytes] = self.context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.sndhwm = HIGH_WATER_MARK
        dealer.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        dealer.setsockopt(zmq.RECONNECT_IVL, 100)
        dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        keys, client = self._settings.keys, self._settings.client
        if keys is not None and client is not None:
            dealer.curve_serverkey = keys.public
            dealer.curve_publickey = client.public
            dealer.curve_secretkey = client.secret
        monitor = dealer.get_monitor_socket(_WATCHED)
        self._monitor_of[monitor] = addr
        self._monitor_by_addr[addr] = monitor
        self._new_monitors.append(monitor)
        dealer.connect(f"tcp://{addr}")
        self._dealers[addr] = dealer
        return dealer

    # -- the I/O thread ---------------------------------------------------------------

    def monitor_changes(self) -> tuple[list[zmq.Socket[bytes]], list[zmq.Socket[bytes]]]:
        """Monitor sockets created since the last call (to poll), and those to stop polling
        (the I/O thread closes them)."""
        with self._lock:
            new, self._new_monitors = self._new_monitors, []
            dead, self._dead_monitors = self._dead_monitors, []
            for monitor in dead:
                self._monitor_of.pop(monitor, None)
            return new, dead

    def monitor_event(self, monitor: zmq.Socket[bytes]) -> MonitorEvent | None:
        """Read one event from ``monitor``; the handshake outcome it reports, if any."""
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.ZMQError:
            return None
        kind = int(event["event"])
        if kind == zmq.EVENT_MONITOR_STOPPED:
            return None
        addr = "" if monitor is self.router_monitor else self._monitor_of.get(monitor, "")
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return MonitorEvent(addr, True)
        if kind & _HANDSHAKE_FAILED:
            return MonitorEvent(addr, False, denied=kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        return None

    def answer_zap(self) -> None:
        """Answer one ZAP request: admit a CURVE client holding a member's key.

        The reply's user id is the node that key belongs to (with certificate
        files; empty with a shared secret): frames from the connection carry it.
        """
        assert self.zap is not None
        frames = self.zap.recv_multipart()
        if len(frames) < 6:
            return
        request_id, address, mechanism, credentials = frames[1], frames[3], frames[5], frames[6:]
        node = self._members.get(credentials[0]) if len(credentials) == 1 else None
        admitted = mechanism == b"CURVE" and node is not None
        self._on_zap(address.decode("ascii", "replace"), admitted)
        status, text = (b"200", b"OK") if admitted else (b"400", b"unknown key")
        user = (node or "").encode()
        self.zap.send_multipart([b"1.0", request_id, status, text, user, b""])

    def close_all(self, linger_ms: int = 0) -> None:
        """Close every socket (DEALERs may flush for ``linger_ms``) and the context."""
        with self._lock:
            self._closed = True
            dealers = list(self._dealers.values())
            self._dealers.clear()
        for dealer in dealers:
            dealer.disable_monitor()
            dealer.close(linger=linger_ms)
        for monitor in [*self._monitor_of, *self._dead_monitors]:
            monitor.close(linger=0)
        self._monitor_of.clear()
        if hasattr(self, "router_monitor"):
            self.router.disable_monitor()
            self.router_monitor.close(linger=0)
        self.router.close(linger=0)
        if self.zap is not None:
            self.zap.close(linger=0)
        self.context.term()


def frame_user_id(frame: zmq.Frame) -> str:
    """The node whose key authenticated the frame's connection ("" if none)."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:
        return ""


def frame_peer_address(frame: zmq.Frame) -> str:
    """The IP address a frame came from (as libzmq reports it)."""
    try:
        return str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return "unknown"
