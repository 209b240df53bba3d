"""An observer of a network cluster: asks members for their status, joins nothing.

:class:`Observer` connects to node addresses with the cluster's keys (it must
hold the cluster secret, like a member), sends each a status request and
collects the answers (:mod:`~._report`). It never listens and never sends a
membership message, so no node counts it as a member.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from ._keys import CurveKeys, curve_keys, load_certificates
from ._messages import encode_status_request
from ._report import NodeReport, decode_status_reply
from ._settings import DEFAULT_MAX_MESSAGE_BYTES, parse_address
from ._sockets import HANDSHAKE_MS

__all__ = ["Answer", "Observer"]

_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


@dataclass(frozen=True)
class Answer:
    """What one address answered: a report, or why there is none."""

    address: str
    report: NodeReport | None = None
    error: str | None = None


class Observer:
    """Asks cluster members for their status reports.

    Args:
        cluster_secret: the cluster's secret.
        insecure: talk to nodes started with ``--insecure`` (no encryption).
        timeout: seconds to wait for answers.
        certificates: instead, a certificate directory (as the nodes'), holding
            the server key pair and the key pair ``key_name`` that the nodes admit.
        key_name: which key pair of ``certificates`` is the observer's.

    Raises:
        ValueError: not exactly one of ``cluster_secret``, ``certificates`` and
            ``insecure``; or a certificate file is missing or unreadable.

    Concurrency: one thread at a time.
    """

    def __init__(
        self,
        cluster_secret: bytes | None,
        *,
        insecure: bool = False,
        timeout: float = 3.0,
        certificates: str | os.PathLike[str] | None = None,
        key_name: str = "status",
    ) -> None:
        if sum((cluster_secret is not None, certificates is not None, insecure)) != 1:
            raise ValueError("give the cluster secret, certificates, or insecure=True")
        #: (the nodes' listening public key, this observer's key pair)
        self._keys: tuple[bytes, CurveKeys] | None = None
        if cluster_secret is not None:
            keys = curve_keys(cluster_secret)
            self._keys = (keys.public, keys)
        elif certificates is not None:
            certs = load_certificates(certificates, key_name)
            self._keys = (certs.server.public, certs.client)
        self._timeout = timeout
        self._context = zmq.Context()
        self._nonces = itertools.count(secrets.randbelow(2**40))

    def ask(self, addresses: Sequence[str]) -> list[Answer]:
        """Ask every address at once; one :class:`Answer` each, in order."""
        for address in addresses:
            parse_address(address, "each address")
        asked: dict[str, tuple[zmq.Socket[bytes], zmq.Socket[bytes], int]] = {}
        answers: dict[str, Answer] = {}
        poller = zmq.Poller()
        try:
            for address in dict.fromkeys(addresses):
                dealer, monitor = self._connect(address)
                nonce = next(self._nonces)
                dealer.send(encode_status_request(nonce), zmq.NOBLOCK)
                asked[address] = (dealer, monitor, nonce)
                poller.register(dealer, zmq.POLLIN)
                poller.register(monitor, zmq.POLLIN)
            deadline = time.monotonic() + self._timeout
            while len(answers) < len(asked):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready = dict(poller.poll(round(left * 1000)))
                for address, (dealer, monitor, nonce) in asked.items():
                    if address in answers:
                        continue
                    if dealer in ready:
                        answers[address] = self._read(address, dealer, nonce)
                    elif monitor in ready:
                        refused = self._refusal(address, monitor)
                        if refused is not None:
                            answers[address] = refused
        finally:
            for dealer, monitor, _ in asked.values():
                dealer.disable_monitor()
                dealer.close(linger=0)
                monitor.close(linger=0)
        silent = f"no answer within {self._timeout:g} s (is a node running there?)"
        return [answers.get(a, Answer(a, error=silent)) for a in addresses]

    def close(self) -> None:
        """Release the sockets' context."""
        self._context.term()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _connect(self, address: str) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        dealer: zmq.Socket[bytes] = self._context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.setsockopt(zmq.MAXMSGSIZE, DEFAULT_MAX_MESSAGE_BYTES)
        dealer.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        if self._keys is not None:
            server, mine = self._keys
            dealer.curve_serverkey = server
            dealer.curve_publickey = mine.public
            dealer.curve_secretkey = mine.secret
        monitor = dealer.get_monitor_socket(_FAILED)
        dealer.connect(f"tcp://{address}")
        return dealer, monitor

    def _read(self, address: str, dealer: zmq.Socket[bytes], nonce: int) -> Answer:
        try:
            got, report = decode_status_reply(dealer.recv(zmq.NOBLOCK))
        except (ValueError, zmq.ZMQError) as exc:
            return Answer(address, error=f"unreadable answer ({exc})")
        if got != nonce:
            return Answer(address, error="an answer to another request")
        return Answer(address, report=report)

    def _refusal(self, address: str, monitor: zmq.Socket[bytes]) -> Answer | None:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.ZMQError:
            return None
        if int(event["event"]) & _FAILED:
            return Answer(
                address,
                error="the node refused the connection: its cluster secret or "
                "certificates are not these (or it runs --insecure)",
            )
        return None
