"""Network addresses on the command line: ``host:port``, and which of them are this machine's."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

from ._processes_and_ports import port_open

__all__ = ["is_local_address", "normalize_address", "route_to", "wait_reachable"]


def normalize_address(address: str | tuple[str, int]) -> str:
    """``"host:port"`` from either form.

    Raises:
        ValueError: not a host and a port in 1..65535.
    """
    if isinstance(address, tuple) and len(address) == 2:
        host, port = address
    elif isinstance(address, str) and address.count(":") == 1:
        host, _, text = address.partition(":")
        port = int(text) if text.isdigit() else -1
    else:
        raise ValueError(f"an address is 'host:port' or (host, port), got {address!r}")
    if not isinstance(host, str) or not host or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"an address is 'host:port' or (host, port), got {address!r}")
    return f"{host}:{port}"


def is_local_address(host: str) -> bool:
    """True if ``host`` names an address of this machine (one we can bind)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    for info in infos:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((str(info[4][0]), 0))
            except OSError:
                continue
            return True
    return False


def route_to(host: str, port: int) -> str:
    """The local address that traffic to ``host`` leaves from (127.0.0.1 if unknown)."""
    try:
        if ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            return "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))  # UDP: no packet is sent
            return str(sock.getsockname()[0])
    except (OSError, ValueError):
        return "127.0.0.1"


def wait_reachable(address: str, timeout: float, stop: threading.Event) -> bool:
    """True once ``address`` (``host:port``) accepts connections, or ``stop`` is set;
    False after ``timeout`` seconds."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if port_open(int(port), host, timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            return False
        stop.wait(0.1)
    return True
