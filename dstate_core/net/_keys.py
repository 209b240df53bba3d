"""CURVE keys: derived from the cluster secret, or read from per-node certificate files.

With a cluster secret, every process holding it derives the same key pair
(:func:`curve_keys`); one without it cannot complete a handshake.

With certificate files, each node proves who it is with a key of its own.

With a cluster secret every node holds the same key pair, so any member could
claim to be another. With certificates (the layout of ``zmq.auth``: a
``NAME.key`` file holds a public key, ``NAME.key_secret`` the pair) each node
has its own client key pair; a node admits a connection only with a key from
its directory's public files, and learns from that key which node is speaking:
a frame whose sender is any other node is refused. Rotating one host's key is
replacing its ``NODE.key_secret`` and its ``NODE.key`` in the other hosts'
directories.

A directory holds:

* ``server.key_secret``: the listening key pair, the same on every host (clients
  must know it to connect; it lets no one in by itself);
* ``NODE.key_secret``: this node's own key pair (on its own host only);
* ``NODE.key`` for every member: the public keys admitted, named by node id.

Create them with ``zmq.auth.create_certificates(directory, name)``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

__all__ = ["SERVER_CERTIFICATE", "Certificates", "CurveKeys", "curve_keys", "load_certificates"]

_KEY_PERSON = b"dstate-curve-v1"


@dataclass(frozen=True)
class CurveKeys:
    """A CURVE key pair, Z85-encoded as libzmq takes it."""

    public: bytes
    secret: bytes


def curve_keys(cluster_secret: bytes) -> CurveKeys:
    """The cluster's CURVE key pair, derived from ``cluster_secret``."""
    private = hashlib.blake2b(cluster_secret, digest_size=32, person=_KEY_PERSON).digest()
    secret = z85.encode(private)
    return CurveKeys(zmq.curve_public(secret), secret)


#: The stem of the listening key pair's files.
SERVER_CERTIFICATE = "server"
_HOW = "create it with zmq.auth.create_certificates(directory, name)"


@dataclass(frozen=True)
class Certificates:
    """The keys a node uses with certificate files."""

    server: CurveKeys
    client: CurveKeys
    #: Admitted client public keys (raw 32 bytes) and the node id each proves.
    members: dict[bytes, str]


def _pair(path: Path, what: str) -> CurveKeys:
    if not path.is_file():
        raise ValueError(f"certificates: {what} {str(path)!r} is missing ({_HOW})")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise ValueError(
            f"certificates: {str(path)!r} may be read by other users: run chmod 600 {path}"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"certificates: cannot read {str(path)!r}: {exc}") from None
    if secret is None:
        raise ValueError(f"certificates: {str(path)!r} holds no secret key ({_HOW})")
    return CurveKeys(public, secret)


def load_certificates(directory: object, node_id: str) -> Certificates:
    """Read a certificate directory for ``node_id``.

    Raises:
        ValueError: a file is missing, unreadable or readable by others; the
            message says which and how to fix it.
    """
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(f"certificates must be a directory path, got {directory!r}")
    if "/" in node_id or "\\" in node_id or node_id.startswith("."):
        raise ValueError(f"certificates: node id {node_id!r} cannot name a file; rename the node")
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"certificates: {str(root)!r} is not a directory")
    server = _pair(root / f"{SERVER_CERTIFICATE}.key_secret", "the server key pair")
    client = _pair(root / f"{node_id}.key_secret", f"node {node_id!r}'s key pair")
    members: dict[bytes, str] = {}
    for path in sorted(root.glob("*.key")):
        if path.stem == SERVER_CERTIFICATE:
            continue
        try:
            public, _ = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"certificates: cannot read {str(path)!r}: {exc}") from None
        members[z85.decode(public)] = path.stem
    if members.get(z85.decode(client.public)) != node_id:
        raise ValueError(
            f"certificates: {str(root / (node_id + '.key'))!r} must hold node {node_id!r}'s "
            "public key (the other nodes admit it from there)"
        )
    return Certificates(server, client, members)
