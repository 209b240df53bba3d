"""One node as an operating-system process: start, serve, stop (``python -m dstate_thespian node``).

:class:`NodeProcess` turns checked :class:`NodeOptions` into a running node:

1. claims the admin port: a stale actor system left there by an earlier run
   (its run record names a node process that is gone) is killed first;
   anything else on the port is an error;
2. a member waits (up to ``join_timeout``) until the leader's port accepts
   connections, else it is an error;
3. starts a :class:`ThespianRuntime` (the actor system forks here, before any
   thread of ours exists), writes the run record, builds the
   :class:`DStateNode`, registers the states, and only then joins the cluster
   (:meth:`ThespianRuntime.join_cluster`), so peers find its inbox and states
   when they see it join;
4. serves the control channel (:mod:`dstate_thespian._control`) until
   SIGINT, SIGTERM, SIGHUP, a ``shutdown`` command or (with ``exit_on_eof``)
   the end of stdin; then shuts the node and its actor system down cleanly.

The signal handlers are in place from the start of step 1: a signal while
starting cuts the start short, and the node stops as cleanly as later on.
Processes forked meanwhile (the actor system's) get the previous handlers back.

Errors the user can fix are :class:`CliError` (exit status 2); they are all
raised before the actor system starts, or after it is stopped again, so a
failed start leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from dstate_core import (
    ChangeFeedConfig,
    DistributedState,
    DStateError,
    DStateNode,
    FilePersistence,
    NodeJoined,
    NodeLeft,
    StateConfig,
    SyncStrategy,
)
from dstate_core.runtime import ClusterEvent

from ._control import Controller, Emitter, generation_json, serve_lines
from ._procs import cmdline, kill_pids, listener_pids, pid_alive, port_bindable, port_open
from ._procs import start_time as _start_time
from ._runtime import ThespianRuntime
from ._thespian import failure_detection_bound

__all__ = [
    "STRATEGIES",
    "CliError",
    "NodeOptions",
    "NodeProcess",
    "RunRecord",
    "StateSpec",
    "claim_admin_port",
    "default_run_dir",
]

_log = logging.getLogger("dstate.thespian.node")

#: The sync strategies a ``--state`` may name after ``@``.
STRATEGIES = {"push": SyncStrategy.active_push, "feed": SyncStrategy.feed_lazy_pull}

#: How long claiming a port waits for a killed stale system to free it.
_FREE_WAIT = 5.0
#: The signals that stop a node process.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CliError(Exception):
    """A problem the user can fix (a bad option, a busy port...): one line, exit status 2."""


@dataclass(frozen=True)
class StateSpec:
    """One ``--state``: the class and its sync strategy (``"push"`` or ``"feed"``)."""

    state_type: type[DistributedState]
    strategy: str
    text: str


@dataclass(frozen=True)
class NodeOptions:
    """A node process's checked options (see ``python -m dstate_thespian node --help``)."""

    node_id: str
    admin_port: int
    convention: str | None
    leader: bool
    host: str
    states: Sequence[StateSpec]
    data_dir: Path | None = None
    cluster_secret: bytes | None = None
    feed_interval: float = 1.0
    join_timeout: float = 10.0
    run_dir: Path | None = None
    control: str = "stdio"
    exit_on_eof: bool = False


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


def _file_name(state_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", state_name) + ".state"


# -- the process --------------------------------------------------------------------------


class NodeProcess:
    """A node hosting the given states, driven by signals and the control channel.

    Args:
        options: checked options.
        out: where control replies and events go (stdout).

    Concurrency: :meth:`start` and :meth:`run` run on the main thread (signal
    handlers need it); commands run on a reader thread.
    """

    def __init__(self, options: NodeOptions, out: TextIO) -> None:
        self.options = options
        self.emitter = Emitter(out)
        self.runtime: ThespianRuntime | None = None
        self.node: DStateNode | None = None
        self._run_dir = _check_run_dir(options.run_dir or default_run_dir())
        self._record_path = RunRecord.path(self._run_dir, options.admin_port)
        self._stop = threading.Event()
        self._why = ""
        self._controller: Controller | None = None
        self._previous_handlers: dict[int, Any] = {}

    # -- start --------------------------------------------------------------------

    def start(self) -> None:
        """Handle the stop signals, claim the port, register the states, join the cluster.

        A stop signal meanwhile cuts it short (:meth:`run` then stops at once).

        Raises:
            CliError: the port is busy, the leader unreachable, or a state does not register.
        """
        opts = self.options
        self._handle_signals()
        note = claim_admin_port(opts.admin_port, self._run_dir)
        if note:
            _log.warning("%s", note)
        member = not opts.leader and opts.convention is not None
        if member and not _wait_reachable(str(opts.convention), opts.join_timeout, self._stop):
            raise CliError(
                f"convention leader {opts.convention} is not reachable (nothing accepted a "
                f"connection within {opts.join_timeout:g} s): start it first or fix --convention"
            )
        if self._stop.is_set():
            return
        try:
            self.runtime = ThespianRuntime(
                opts.node_id,
                admin_port=opts.admin_port,
                convention_address=None if opts.leader else opts.convention,
                host=opts.host,
                join_timeout=opts.join_timeout,
                join=False,
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None
        try:
            self._write_record()
            try:
                self.node = DStateNode(
                    self.runtime,
                    change_feed=ChangeFeedConfig(batch_interval=opts.feed_interval),
                    cluster_secret=opts.cluster_secret,
                    data_dir=opts.data_dir,
                )
            except (DStateError, ValueError, TypeError) as exc:
                raise CliError(str(exc)) from None
            for spec in opts.states:
                self._register(self.node, spec)
            # Only now do peers see this node: its inbox and states are there for their
            # join exchange.
            if not self._stop.is_set():
                self.runtime.join_cluster(cancel=self._stop)
        except BaseException:
            self._stop_node()
            raise

    def _register(self, node: DStateNode, spec: StateSpec) -> None:
        persistence = None
        if self.options.data_dir is not None:
            path = self.options.data_dir / _file_name(spec.state_type.NAME)
            persistence = FilePersistence(path, spec.state_type.NAME)
        config = StateConfig(sync_strategy=STRATEGIES[spec.strategy](), persistence=persistence)
        try:
            node.register(spec.state_type, config)
        except (DStateError, ValueError, TypeError) as exc:
            raise CliError(f"--state {spec.text}: {exc}") from None

    def _write_record(self) -> None:
        assert self.runtime is not None
        pid = os.getpid()
        system = {p: _start_time(p) for p in self.runtime.pids}
        record = RunRecord(self.options.node_id, pid, _start_time(pid), system)
        try:
            record.write(self._record_path)
        except OSError as exc:
            _log.warning("cannot write the run record %s: %s", self._record_path, exc)

    # -- run ------------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        """Ask :meth:`run` to shut down (any thread, or a signal handler)."""
        if not self._stop.is_set():
            self._why = why
            self._stop.set()

    def run(self, stdin: TextIO | None) -> int:
        """Serve until asked to stop, then shut down cleanly; returns the exit status (0).

        Stops at once if a signal cut :meth:`start` short.
        """
        if self._stop.is_set():
            return self._stopped()
        assert self.runtime is not None and self.node is not None
        runtime, node = self.runtime, self.node
        self._controller = Controller(
            node, self.emitter, self.status, lambda: self.request_stop("shutdown command")
        )
        self.emitter.event(
            "ready",
            **self.status(),
            detection_bound=failure_detection_bound(),
            states={
                name: generation_json(shard.state.generation)
                for name, shard in sorted(node.states.items())
            },
        )
        subscription = runtime.cluster_events.subscribe(self._on_cluster_event)
        if stdin is not None and self.options.control == "stdio":
            reader = threading.Thread(
                target=self._read, args=(stdin,), name="dstate-control", daemon=True
            )
            reader.start()
        while not self._stop.wait(0.2):
            pass
        runtime.cluster_events.unsubscribe(subscription)
        return self._stopped()

    def _stopped(self) -> int:
        _log.info("node %r stopping: %s", self.options.node_id, self._why)
        self.emitter.event("stopping", reason=self._why)
        self._stop_node()
        self.emitter.event("stopped")
        return 0

    def _read(self, stdin: TextIO) -> None:
        assert self._controller is not None
        try:
            serve_lines(stdin, self._controller)
        except (OSError, ValueError) as exc:
            _log.warning("the control channel failed: %s", exc)
        if self.options.exit_on_eof:
            self.request_stop("stdin closed")

    def _handle_signals(self) -> None:
        """Make :data:`_STOP_SIGNALS` call :meth:`request_stop` (main thread; idempotent)."""
        if self._previous_handlers:
            return
        for signum in _STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        # Thespian forks the actor system from this process: give it the handlers it had.
        os.register_at_fork(after_in_child=self._unhandle_signals)

    def _unhandle_signals(self) -> None:
        """In a forked child: put back the handlers :meth:`_handle_signals` replaced."""
        for signum, previous in self._previous_handlers.items():
            if signal.getsignal(signum) == self._on_signal:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)

    def _on_cluster_event(self, event: ClusterEvent) -> None:
        if isinstance(event, NodeJoined):
            self.emitter.event("joined", node=event.node_id)
        elif isinstance(event, NodeLeft):
            self.emitter.event("left", node=event.node_id)

    def status(self) -> dict[str, Any]:
        """The node's process-level facts (the ``status`` reply adds the states)."""
        runtime = self.runtime
        assert runtime is not None
        return {
            "node": self.options.node_id,
            "pid": os.getpid(),
            "leader": self.options.leader,
            "convention": self.options.convention,
            "admin_port": runtime.admin_port,
            "gateway_port": runtime.gateway_port,
            "incarnation": runtime.incarnation,
            "pids": runtime.pids,
            "peers": runtime.peers,
            "runtime_drops": runtime.drops,
            "messages_sent": runtime.messages_sent,
            "bytes_sent": runtime.bytes_sent,
        }

    def _stop_node(self) -> None:
        """Shut the node and the actor system down; remove the run record (idempotent)."""
        if self._controller is not None:
            self._controller.close()
        if self.node is not None:
            self.node.shutdown()
        if self.runtime is not None:
            self.runtime.shutdown()
            left = self.runtime.alive_pids()
            if left:  # pragma: no cover (shutdown kills stragglers)
                _log.warning("processes %s outlived the shutdown", left)
        record = RunRecord.read(self._record_path)
        if record is not None and record.pid == os.getpid():
            with contextlib.suppress(OSError):
                self._record_path.unlink()
