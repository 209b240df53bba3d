"""``NodeHandle``: start a node process (``python -m dstate_<runtime> node``) and drive it.

For tests, benchmarks and demos. A handle starts the node in its own session
(so a Ctrl-C meant for the caller does not reach it), reads its JSON lines on
a thread, and sends requests with ids (see :mod:`dstate_core.process._control`
for the commands). Times in events and replies are the host's
``time.monotonic()``, the same clock as the caller's on one host. Each
runtime's package offers a ``NodeHandle.start`` that builds its command line.

Example::

    with NodeHandle.launch([sys.executable, "-m", "dstate_thespian", "node", ...], "a") as a:
        a.ready()
        a.request("mutate", state="test_state", fn="increment", args=[1])
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, Self

from ._processes_and_ports import cmdline, kill_pids, pid_alive, port_open, start_time

__all__ = ["NodeHandle", "NodeHandleError"]

#: How long a node process may take to print ``ready``.
READY_TIMEOUT = 20.0

Event = dict[str, Any]


class NodeHandleError(AssertionError):
    """A node process did not do what was asked (the end of its stderr is in the message)."""


class NodeHandle:
    """One node process and the pipes to it. Create it with :meth:`start`.

    Concurrency: thread-safe; replies and events are collected by reader threads.
    """

    def __init__(self, node_id: str, args: Sequence[str], proc: Any) -> None:
        self.node_id = node_id
        self.args = list(args)
        self.proc: subprocess.Popen[str] = proc
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[Event] = []
        self._stderr: list[str] = []
        self._ids = itertools.count(1)
        self._stdout_done = False
        self._ready: Event | None = None
        self._system: dict[int, int] = {}  # actor-system pid: start time, from ``ready``
        #: Set once the node's stderr has ended (every line is in :attr:`stderr`).
        self.stderr_closed = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    @classmethod
    def launch(
        cls,
        args: Sequence[str],
        node_id: str,
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Start the node process ``args`` (a whole command line; it runs until stopped).

        Args:
            args: the command, e.g. ``[sys.executable, "-m", "dstate_pykka", "node", ...]``.
            node_id: the node's id (for messages).
            env: environment variables added to this process's.
            cwd: the node's working directory (where ``--state`` modules import from).
        """
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        return cls(node_id, args, proc)

    # -- reading ----------------------------------------------------------------------

    def _read_stdout(self) -> None:
        stream: IO[str] | None = self.proc.stdout
        assert stream is not None
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"event": "garbage", "line": line}
            if not isinstance(message, dict):
                message = {"event": "garbage", "line": line}
            with self._cond:
                if "ok" in message and isinstance(message.get("id"), int):
                    self._replies[message["id"]] = message
                else:
                    self._events.append(message)
                    if message.get("event") == "ready":
                        pids = message.get("pids", [])
                        self._system = {p: start_time(p) for p in pids if isinstance(p, int)}
                        self._ready = message
                self._cond.notify_all()
        with self._cond:
            self._stdout_done = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        stream: IO[str] | None = self.proc.stderr
        assert stream is not None
        for line in stream:
            with self._cond:
                self._stderr.append(line.rstrip("\n"))
        self.stderr_closed.set()

    @property
    def events(self) -> list[Event]:
        """Every event line so far (a copy)."""
        with self._cond:
            return list(self._events)

    @property
    def stderr(self) -> list[str]:
        """The node's stderr lines so far (a copy)."""
        with self._cond:
            return list(self._stderr)

    @property
    def ready_event(self) -> Event | None:
        """The ``ready`` event, once it came."""
        return self._ready

    def describe(self) -> str:
        """The node, its exit status and the end of its stderr (for error messages)."""
        tail = "\n".join(self.stderr[-15:])
        return f"node {self.node_id!r} (exit status {self.proc.poll()}), stderr:\n{tail}"

    # -- waiting ------------------------------------------------------------------------

    def ready(self, timeout: float = READY_TIMEOUT) -> Event:
        """Wait for the ``ready`` event and return it.

        Raises:
            NodeHandleError: the node exited first, or did not get ready in time.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._ready is not None or self.proc.poll() is not None, timeout
            )
            if self._ready is not None:
                return self._ready
        if self.proc.poll() is None:
            raise NodeHandleError(f"not ready within {timeout} s: {self.describe()}")
        self.stderr_closed.wait(1.0)
        raise NodeHandleError(f"exited before ready: {self.describe()}")

    @property
    def pid(self) -> int:
        """The node process."""
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """The node's other processes (e.g. a Thespian actor system's), from ``ready``."""
        return list(self.ready().get("pids", []))

    def wait_event(self, predicate: Callable[[Event], bool], timeout: float) -> Event | None:
        """The first event (so far or to come) matching ``predicate``; None after ``timeout``."""
        found: list[Event] = []

        def match() -> bool:
            found[:] = [e for e in self._events if predicate(e)][:1]
            return bool(found)

        with self._cond:
            self._cond.wait_for(match, timeout)
        return found[0] if found else None

    def send(self, cmd: str, /, **fields: Any) -> int:
        """Send a request without waiting; returns its id (see :meth:`reply`).

        Raises:
            NodeHandleError: the node's stdin is closed.
        """
        rid = next(self._ids)
        line = json.dumps({"id": rid, "cmd": cmd, **fields}) + "\n"
        stream: IO[str] | None = self.proc.stdin
        assert stream is not None
        try:
            with self._cond:
                stream.write(line)
                stream.flush()
        except (OSError, ValueError) as exc:
            raise NodeHandleError(f"cannot write to {self.describe()}: {exc}") from None
        return rid

    def reply(self, rid: int, reply_timeout: float = 15.0, check: bool = True) -> dict[str, Any]:
        """Wait for the reply to request ``rid``.

        Raises:
            NodeHandleError: no reply within ``reply_timeout`` seconds, or (with
                ``check``) a failed request.
        """
        with self._cond:
            self._cond.wait_for(lambda: rid in self._replies or self._stdout_done, reply_timeout)
            reply = self._replies.pop(rid, None)
        if reply is None:
            raise NodeHandleError(
                f"no reply to request {rid} within {reply_timeout} s: {self.describe()}"
            )
        if check and not reply["ok"]:
            raise NodeHandleError(f"request {rid} failed on {self.node_id!r}: {reply['error']}")
        return reply

    def request(
        self, cmd: str, /, *, reply_timeout: float = 15.0, check: bool = True, **fields: Any
    ) -> Any:
        """Send ``{"cmd": cmd, **fields}`` and wait for its reply (see :meth:`reply`).

        ``fields`` may include a ``timeout`` (the ``wait`` command's); how long
        this call waits for the reply is ``reply_timeout``.
        """
        return self.reply(self.send(cmd, **fields), reply_timeout, check)

    # -- ending ---------------------------------------------------------------------------

    def kill(self) -> float:
        """``kill -9`` the node process only (its actor system notices); returns the time."""
        at = time.monotonic()
        self.proc.kill()
        self.proc.wait(10)
        return at

    def kill_all(self) -> float:
        """``kill -9`` the node process and its other processes at once (a host crash)."""
        self.ready()
        at = time.monotonic()
        self.proc.kill()
        kill_pids(self._system)
        self.proc.wait(10)
        return at

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` (SIGTERM, SIGINT) and return the exit status.

        Raises:
            NodeHandleError: the node did not exit within ``timeout``.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeHandleError(f"did not exit on {sig}: {self.describe()}") from None

    def close_stdin(self, timeout: float = 15.0) -> int:
        """Close stdin (with ``--exit-on-eof`` the node stops) and return the exit status."""
        with contextlib.suppress(OSError, AttributeError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeHandleError(f"did not exit at the end of stdin: {self.describe()}") from None

    def leftovers(self) -> list[str]:
        """What of this node still runs or listens (empty once it is all gone)."""
        left = []
        if self.proc.poll() is None:
            left.append(f"node process {self.proc.pid}")
        left += [f"pid {p} ({cmdline(p)[:60]})" for p in self._system_alive()]
        ready = self._ready
        if ready is not None:
            for port in ready.get("listening", []):
                if isinstance(port, int) and port_open(port):
                    left.append(f"port {port}")
        return left

    def _system_alive(self) -> list[int]:
        return [pid for pid, started in sorted(self._system.items()) if pid_alive(pid, started)]

    def close(self, timeout: float = 15.0) -> None:
        """Stop the node cleanly if it runs; kill whatever is left after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(NodeHandleError):
                self.close_stdin(timeout)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        deadline = time.monotonic() + timeout
        while self._system_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        kill_pids(self._system)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node_id!r} pid {self.proc.pid}>"
