"""Processes and ports, read from ``/proc``: who runs, who listens, and safe killing.

A pid is only ever signalled after its start time (``/proc/PID/stat`` field 22)
was checked against the one recorded, so a recycled pid is never hit. Where
``/proc`` is missing (not Linux), liveness falls back to ``kill(pid, 0)`` and
start times are not checked.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from pathlib import Path

__all__ = [
    "children",
    "cmdline",
    "descendants",
    "free_port",
    "kill_pids",
    "listener_pids",
    "pid_alive",
    "port_bindable",
    "port_open",
    "start_time",
    "stat",
]

_PROC = os.path.isdir("/proc/self")


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on now (on every interface, as Thespian binds).

    Picked at random below the system's ephemeral range (where the ports of
    outgoing connections come from), so another process's connection cannot
    take it between this call and the bind that uses it; the ephemeral range
    only if none is free there.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(64):
        port = rng.randint(_FIRST_PICKED_PORT, low - 1)
        if port_bindable(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        found: int = sock.getsockname()[1]
        return found


#: The lowest port :func:`free_port` picks (below it: well-known services).
_FIRST_PICKED_PORT = 10_000


def _ephemeral_low() -> int:
    """The first port of the system's ephemeral range (Linux's default elsewhere)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
    return low if low > _FIRST_PICKED_PORT + 1000 else 32_768


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_bindable(port: int, host: str = "") -> bool:
    """True if a listener could bind ``host:port`` now (as Thespian does: ``SO_REUSEADDR``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError:
            return False
        return True


def stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, start time)`` of a process, or None if it does not exist (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def start_time(pid: int) -> int:
    """The start time of ``pid`` in clock ticks since boot (0 if unknown)."""
    found = stat(pid)
    return 0 if found is None else found[2]


def pid_alive(pid: int, started: int | None = None) -> bool:
    """True if ``pid`` runs (a zombie does not), and started at ``started`` if given (and not 0)."""
    if pid <= 0:
        return False
    if not _PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    found = stat(pid)
    if found is None or found[0] in ("Z", "X"):
        return False
    return not started or found[2] == started


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (empty without /proc)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                info = stat(int(entry))
                if info is not None and info[1] == pid:
                    found.append(int(entry))
    return found


def descendants(pids: list[int]) -> list[int]:
    """Every process below ``pids`` (children, their children...), without ``pids``."""
    found: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        kids = [k for k in children(pid) if k not in found]
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid``, space-separated ("" if unknown)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def listener_pids(port: int) -> list[int]:
    """Processes we can see that hold a TCP socket listening on ``port`` (any address)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fds = os.listdir(f"/proc/{entry}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                        pids.append(int(entry))
                        break
                except OSError:
                    continue
    return sorted(pids)


def kill_pids(pids: dict[int, int], wait: float = 3.0) -> list[int]:
    """``kill -9`` each ``pid: start time`` that still runs; wait for them to go.

    Returns:
        The pids still running after ``wait`` seconds (normally none).
    """
    for pid, started in sorted(pids.items()):
        if pid != os.getpid() and pid_alive(pid, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while True:
        left = [pid for pid, started in sorted(pids.items()) if pid_alive(pid, started)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)
