"""A Thespian node as an operating-system process (``python -m dstate_thespian node``).

:class:`ThespianNodeProcess` is the core's
:class:`~dstate_core.process.NodeProcess` on a :class:`ThespianRuntime` with
its own multiprocTCPBase actor system:

1. before anything starts, it claims the admin port: a stale actor system left
   there by an earlier run (its run record names a node process that is gone)
   is killed first; anything else on the port is an error; a member then waits
   (up to ``join_timeout``) until the leader's port accepts connections;
2. it starts the runtime (the actor system forks here, before any thread of
   ours exists) without joining, writes the run record, and joins the
   convention once the states are registered;
3. on the way out it stops the actor system, checks its processes are gone and
   removes the run record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dstate_core.process import (
    CliError,
    NodeOptions,
    NodeProcess,
    cmdline,
    kill_pids,
    listener_pids,
    pid_alive,
    port_bindable,
    port_open,
)
from dstate_core.process import start_time as _start_time

from ._runtime import ThespianRuntime
from ._thespian import failure_detection_bound

__all__ = [
    "RunRecord",
    "ThespianNodeOptions",
    "ThespianNodeProcess",
    "claim_admin_port",
    "default_run_dir",
]

_log = logging.getLogger("dstate.thespian.node")

#: How long claiming a port waits for a killed stale system to free it.
_FREE_WAIT = 5.0


@dataclass(frozen=True)
class ThespianNodeOptions:
    """A Thespian node's own checked options (see ``python -m dstate_thespian node --help``)."""

    admin_port: int
    convention: str | None
    leader: bool
    host: str
    join_timeout: float = 10.0
    run_dir: Path | None = None


# -- run records ------------------------------------------------------------------------


def default_run_dir() -> Path:
    """Where run records live: ``$XDG_RUNTIME_DIR/dstate-thespian`` or a per-user temp dir."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "dstate-thespian"
    return Path(tempfile.gettempdir()) / f"dstate-thespian-{os.getuid()}"


def _check_run_dir(run_dir: Path) -> Path:
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
    """What a running node leaves in the run dir: its pid and its actor system's pids.

    Attributes:
        node: the node id.
        pid: the node process.
        started: its start time (``/proc`` ticks; 0 if unknown).
        system: the actor system's processes, ``pid: start time``.
    """

    node: str
    pid: int
    started: int
    system: dict[int, int]

    @staticmethod
    def path(run_dir: Path, admin_port: int) -> Path:
        """The record file of the node on ``admin_port``."""
        return run_dir / f"admin-{admin_port}.json"

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


def claim_admin_port(admin_port: int, run_dir: Path) -> str | None:
    """Make sure ``admin_port`` is free, killing a stale actor system a dead node left there.

    Returns:
        A note saying what was cleaned up, or None if the port was free.

    Raises:
        CliError: the port is held by a live node or by something that is not ours.
    """
    if port_bindable(admin_port):
        return None
    path = RunRecord.path(run_dir, admin_port)
    record = RunRecord.read(path)
    if record is not None and record.owner_alive():
        raise CliError(
            f"admin port {admin_port} is in use by dstate node {record.node!r} "
            f"(pid {record.pid}): stop it first or pick another --admin-port"
        )
    if record is not None:
        with contextlib.suppress(OSError):
            path.unlink()  # its node is gone: the record is stale either way
        stale = {pid: started for pid, started in record.system.items() if pid_alive(pid, started)}
        if stale:
            kill_pids(stale)
            deadline = time.monotonic() + _FREE_WAIT
            while not port_bindable(admin_port) and time.monotonic() < deadline:
                time.sleep(0.02)
            if port_bindable(admin_port):
                return (
                    f"stopped the stale actor system of node {record.node!r} on admin port "
                    f"{admin_port} (its node process {record.pid} is gone)"
                )
    holders = listener_pids(admin_port)
    who = f" by pid {holders[0]} ({cmdline(holders[0])[:60]})" if holders else ""
    raise CliError(f"admin port {admin_port} is in use{who}: pick another --admin-port")


def _wait_reachable(address: str, timeout: float, stop: threading.Event) -> bool:
    """True once ``address`` accepts connections (or ``stop`` is set); False after ``timeout``."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if port_open(int(port), host, timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            return False
        stop.wait(0.1)
    return True


# -- the process --------------------------------------------------------------------------


class ThespianNodeProcess(NodeProcess):
    """A node process on its own Thespian actor system.

    Args:
        options: the shared checked options.
        thespian: the Thespian-specific ones.
        out: where control replies and events go (stdout).
    """

    runtime: ThespianRuntime | None

    def __init__(self, options: NodeOptions, thespian: ThespianNodeOptions, out: TextIO) -> None:
        super().__init__(options, out)
        self.thespian = thespian
        self._run_dir = _check_run_dir(thespian.run_dir or default_run_dir())
        self._record_path = RunRecord.path(self._run_dir, thespian.admin_port)

    def prepare(self) -> None:
        """Claim the admin port; a member waits until its leader is reachable."""
        opts = self.thespian
        note = claim_admin_port(opts.admin_port, self._run_dir)
        if note:
            _log.warning("%s", note)
        member = not opts.leader and opts.convention is not None
        if member and not _wait_reachable(
            str(opts.convention), opts.join_timeout, self.stop_requested
        ):
            raise CliError(
                f"convention leader {opts.convention} is not reachable (nothing accepted a "
                f"connection within {opts.join_timeout:g} s): start it first or fix --convention"
            )

    def start_runtime(self) -> ThespianRuntime:
        """Start the actor system and gateway (not yet in the convention); write the record."""
        opts = self.thespian
        try:
            runtime = ThespianRuntime(
                self.options.node_id,
                admin_port=opts.admin_port,
                convention_address=None if opts.leader else opts.convention,
                host=opts.host,
                join_timeout=opts.join_timeout,
                join=False,
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None
        self._write_record(runtime)
        return runtime

    def join(self) -> None:
        """Join the convention (a signal cuts the wait short)."""
        assert self.runtime is not None
        self.runtime.join_cluster(cancel=self.stop_requested)

    def _write_record(self, runtime: ThespianRuntime) -> None:
        pid = os.getpid()
        system = {p: _start_time(p) for p in runtime.pids}
        record = RunRecord(self.options.node_id, pid, _start_time(pid), system)
        try:
            record.write(self._record_path)
        except OSError as exc:
            _log.warning("cannot write the run record %s: %s", self._record_path, exc)

    def runtime_status(self) -> dict[str, Any]:
        """Leader, convention, ports, incarnation, pids, peers and traffic counters."""
        runtime = self.runtime
        assert runtime is not None
        return {
            "leader": self.thespian.leader,
            "convention": self.thespian.convention,
            "admin_port": runtime.admin_port,
            "gateway_port": runtime.gateway_port,
            "listening": [p for p in (runtime.admin_port, runtime.gateway_port) if p],
            "incarnation": runtime.incarnation,
            "pids": runtime.pids,
            "peers": runtime.peers,
            "runtime_drops": runtime.drops,
            "messages_sent": runtime.messages_sent,
            "bytes_sent": runtime.bytes_sent,
        }

    def ready_fields(self) -> dict[str, Any]:
        """The convention's crash-detection bound."""
        return {"detection_bound": failure_detection_bound()}

    def stop_runtime(self) -> None:
        """Shut the actor system down; remove the run record (idempotent)."""
        if self.runtime is not None:
            self.runtime.shutdown()
            left = self.runtime.alive_pids()
            if left:  # pragma: no cover (shutdown kills stragglers)
                _log.warning("processes %s outlived the shutdown", left)
        record = RunRecord.read(self._record_path)
        if record is not None and record.pid == os.getpid():
            with contextlib.suppress(OSError):
                self._record_path.unlink()
