"""A network node's checked settings: where it listens, whom it asks, and its keys.

Every check :class:`~._transport.TcpNetwork` makes on its arguments is here,
with errors in the words of its parameters. The keys come from the
cluster secret or from certificate files (:mod:`~._keys`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from zmq.utils import z85

from ._keys import CurveKeys, curve_keys, load_certificates

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MIN_SECRET_BYTES",
    "NetworkSettings",
    "check_settings",
    "parse_address",
    "reachable_host",
]

#: The shortest cluster secret accepted.
MIN_SECRET_BYTES = 32
#: The largest frame a node accepts by default (a bigger one closes the connection).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_HOW_TO_SECRET = "e.g. secrets.token_bytes(32), or --secret-file with 32+ random bytes"


@dataclass(frozen=True)
class NetworkSettings:
    """The checked arguments of a :class:`~._transport.TcpNetwork`."""

    node_id: str
    listen_host: str
    listen_port: int
    seeds: tuple[str, ...]
    advertise: str | None
    keys: CurveKeys | None
    failure_timeout: float
    max_message_bytes: int
    #: This node's client key pair (the cluster's with a secret).
    client: CurveKeys | None = None
    #: Admitted client keys (raw) and the node each proves ("": any node, a shared key).
    members: dict[bytes, str] | None = None


def parse_address(text: object, what: str) -> tuple[str, int]:
    """``(host, port)`` from ``"host:port"`` (port 0 allowed only for ``listen``).

    Raises:
        ValueError: not that form; the message names ``what``.
    """
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a 'host:port' string, got {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{what} must be 'host:port' (e.g. '10.0.0.1:7100'), got {text!r}")
    if int(port) == 0 and what != "listen":
        raise ValueError(f"{what} needs a real port, not 0: got {text!r}")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0])).is_loopback for info in infos)


def _check_secret(secret: object) -> bytes:
    if not isinstance(secret, bytes):
        raise TypeError(
            f"cluster_secret must be bytes ({_HOW_TO_SECRET}); got {type(secret).__name__}"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"cluster_secret must be at least {MIN_SECRET_BYTES} bytes ({_HOW_TO_SECRET}); "
            f"got {len(secret)}"
        )
    return secret


def check_settings(
    node_id: object,
    listen: object,
    seeds: Sequence[str],
    cluster_secret: object,
    advertise: object,
    failure_timeout: object,
    insecure: object,
    max_message_bytes: object,
    certificates: object = None,
) -> NetworkSettings:
    """Check a :class:`~._transport.TcpNetwork`'s arguments.

    Raises:
        ValueError, TypeError: what is wrong and how to fix it.
    """
    if not isinstance(node_id, str) or not node_id or node_id == "*" or len(node_id) > 255:
        raise ValueError(
            f"node_id must be a non-empty str of at most 255 characters, got {node_id!r}"
        )
    host, port = parse_address(listen, "listen")
    if isinstance(seeds, str) or not all(isinstance(s, str) for s in seeds):
        raise TypeError(f"seeds must be a list of 'host:port' strings, got {seeds!r}")
    for seed in seeds:
        parse_address(seed, "each seed")
    if advertise is not None:
        adv_host, _ = parse_address(advertise, "advertise")
        if adv_host in ("0.0.0.0", "::", "*"):
            raise ValueError(f"advertise must be an address peers can reach, got {advertise!r}")
    if (
        isinstance(failure_timeout, bool)
        or not isinstance(failure_timeout, int | float)
        or not (0.05 <= failure_timeout <= 3600)
    ):
        raise ValueError(f"failure_timeout must be seconds in 0.05..3600, got {failure_timeout!r}")
    if (
        isinstance(max_message_bytes, bool)
        or not isinstance(max_message_bytes, int)
        or (max_message_bytes < 1024)
    ):
        raise ValueError(f"max_message_bytes must be an int >= 1024, got {max_message_bytes!r}")
    if not isinstance(insecure, bool):
        raise TypeError(f"insecure must be True or False, got {insecure!r}")
    keys = client = None
    members: dict[bytes, str] | None = None
    if sum(x is not None and x is not False for x in (cluster_secret, certificates, insecure)) > 1:
        raise ValueError("pass one of cluster_secret, certificates or insecure=True, not both")
    if certificates is not None:
        certs = load_certificates(certificates, node_id)
        keys, client, members = certs.server, certs.client, certs.members
    elif insecure:
        if not _is_loopback(host):
            raise ValueError(
                f"insecure=True only listens on a loopback address (127.0.0.1), not {host!r}: "
                "anyone who reaches the port could join; give a cluster_secret instead"
            )
    elif cluster_secret is None:
        raise ValueError(
            f"a network node needs a cluster_secret ({_HOW_TO_SECRET}) or certificates so "
            "that only your nodes can connect; for a test on one machine, insecure=True with "
            "listen on 127.0.0.1"
        )
    else:
        keys = client = curve_keys(_check_secret(cluster_secret))
        members = {z85.decode(keys.public): ""}
    return NetworkSettings(
        node_id=node_id,
        listen_host=host,
        listen_port=port,
        seeds=tuple(seeds),
        advertise=advertise if isinstance(advertise, str) else None,
        keys=keys,
        failure_timeout=float(failure_timeout),
        max_message_bytes=max_message_bytes,
        client=client,
        members=members,
    )


def reachable_host(settings: NetworkSettings) -> str:
    """The host peers reach this node at when it listens on every interface."""
    host = settings.listen_host
    if host not in ("0.0.0.0", "*", "::"):
        return host
    target = settings.seeds[0].rpartition(":")[0] if settings.seeds else "192.0.2.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))  # UDP: nothing is sent
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
