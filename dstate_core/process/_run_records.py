"""Run records: what a node process leaves behind so a later start can clean up after a crash.

A node whose runtime starts helper processes that outlive it (Thespian's
actor systems daemonize) writes a :class:`RunRecord` naming itself and them,
in a private run directory, keyed by the port it holds. A new start on that
port reads the record: if the node process is gone but its helpers still hold
the port, :func:`claim_port` kills them; anything else on the port is an error
that says what holds it. Pids are checked against their start times first, so
a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ._options import CliError
from ._processes_and_ports import cmdline, kill_pids, listener_pids, pid_alive, port_bindable

__all__ = ["RunRecord", "check_run_dir", "claim_port", "default_run_dir"]

#: How long claiming a port waits for killed stale helpers to free it.
_FREE_WAIT = 5.0


def default_run_dir(app: str) -> Path:
    """Where run records live: ``$XDG_RUNTIME_DIR/<app>`` or a per-user temp dir."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / app
    return Path(tempfile.gettempdir()) / f"{app}-{os.getuid()}"


def check_run_dir(run_dir: Path) -> Path:
    """``run_dir``, created (mode 700) if needed, once it is checked to be this user's.

    Raises:
        CliError: it cannot be used, or belongs to another user.
    """
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = run_dir.stat()
    except OSError as exc:
        raise CliError(f"cannot use run dir {str(run_dir)!r}: {exc.strerror or exc}") from None
    if info.st_uid != os.getuid():
        raise CliError(f"run dir {str(run_dir)!r} belongs to another user: pass --run-dir")
    return run_dir


@dataclass(frozen=True)
class RunRecord:
    """What a running node leaves in the run dir: its pid and its helpers' pids.

    Attributes:
        node: the node id.
        pid: the node process.
        started: its start time (``/proc`` ticks; 0 if unknown).
        system: the helper processes (e.g. an actor system's), ``pid: start time``.
    """

    node: str
    pid: int
    started: int
    system: dict[int, int]

    @staticmethod
    def path(run_dir: Path, port: int) -> Path:
        """The record file of the node holding ``port``."""
        return run_dir / f"admin-{port}.json"

    @classmethod
    def read(cls, path: Path) -> RunRecord | None:
        """The record at ``path``, or None if missing or unreadable."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                str(raw["node"]),
                int(raw["pid"]),
                int(raw["started"]),
                {int(pid): int(started) for pid, started in raw["system"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def write(self, path: Path) -> None:
        """Write atomically (a temp file renamed over ``path``)."""
        data = {
            "node": self.node,
            "pid": self.pid,
            "started": self.started,
            "system": {str(pid): started for pid, started in self.system.items()},
        }
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temp, path)

    def owner_alive(self) -> bool:
        """True while the node process that wrote this record runs."""
        return pid_alive(self.pid, self.started)


def claim_port(
    port: int, run_dir: Path, what: str, option: str, helpers: str = "helper processes"
) -> str | None:
    """Make sure ``port`` is free, killing stale helpers a dead node left holding it.

    Args:
        what, option, helpers: the port's name, its option and the helpers in
            messages (``"admin port"``, ``"--admin-port"``, ``"actor system"``).

    Returns:
        A note saying what was cleaned up, or None if the port was free.

    Raises:
        CliError: the port is held by a live node or by something that is not ours.
    """
    if port_bindable(port):
        return None
    path = RunRecord.path(run_dir, port)
    record = RunRecord.read(path)
    if record is not None and record.owner_alive():
        raise CliError(
            f"{what} {port} is in use by dstate node {record.node!r} "
            f"(pid {record.pid}): stop it first or pick another {option}"
        )
    if record is not None:
        with contextlib.suppress(OSError):
            path.unlink()  # its node is gone: the record is stale either way
        stale = {pid: started for pid, started in record.system.items() if pid_alive(pid, started)}
        if stale:
            kill_pids(stale)
            deadline = time.monotonic() + _FREE_WAIT
            while not port_bindable(port) and time.monotonic() < deadline:
                time.sleep(0.02)
            if port_bindable(port):
                return (
                    f"stopped the stale {helpers} of node {record.node!r} on {what} "
                    f"{port} (its node process {record.pid} is gone)"
                )
    holders = listener_pids(port)
    who = f" by pid {holders[0]} ({cmdline(holders[0])[:60]})" if holders else ""
    raise CliError(f"{what} {port} is in use{who}: pick another {option}")
