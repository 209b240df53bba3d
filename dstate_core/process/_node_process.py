"""One node as an operating-system process: start, serve, stop, on any runtime.

:class:`NodeProcess` turns checked :class:`~._options.NodeOptions` into a
running node; a runtime's subclass says how its runtime starts, joins its
cluster and stops (:meth:`NodeProcess.start_runtime` and friends):

1. :meth:`~NodeProcess.prepare` checks what must be true before the runtime
   starts (a free port, a reachable seed...);
2. :meth:`~NodeProcess.start_runtime` starts the runtime *without* joining the
   cluster; then the :class:`~dstate_core.DStateNode` is built and every state
   registered, and only then :meth:`~NodeProcess.join` makes the node a member,
   so peers find its inbox and states when they see it join;
3. the control channel (:mod:`~._control`) is served until SIGINT, SIGTERM,
   SIGHUP, a ``shutdown`` command or (with ``exit_on_eof``) the end of stdin;
   then the node and its runtime shut down cleanly.

The signal handlers are in place from the start of step 1: a signal while
starting cuts the start short, and the node stops as cleanly as later on.
Processes forked meanwhile get the previous handlers back.

Errors the user can fix are :class:`~._options.CliError` (exit status 2); they
are all raised before the runtime starts, or after it is stopped again, so a
failed start leaves no process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO

from .._logs import NodeLog
from ..model._config import ChangeFeedConfig, StateConfig
from ..model._errors import DStateError
from ..model._persistence import StatePersistence
from ..persistence import FilePersistence, SqlitePersistence
from ..runtime._protocol import ActorRuntime, ClusterEvent, NodeJoined, NodeLeft
from ..shell._node import DStateNode
from ._control import Controller, Emitter, generation_json, serve_lines
from ._options import STRATEGIES, CliError, NodeOptions, StateSpec

__all__ = ["NodeProcess", "run_node_command", "state_file_name"]

#: How long a node process waits for its members' views before it says ``ready`` anyway.
READY_WAIT = 10.0

#: The signals that stop a node process.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def state_file_name(state_name: str) -> str:
    """The file a state's own shard is kept in, under ``--data-dir``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", state_name) + ".state"


class NodeProcess:
    """A node hosting the given states, driven by signals and the control channel.

    Args:
        options: the checked shared options.
        out: where control replies and events go (stdout).

    Concurrency: :meth:`start` and :meth:`run` run on the main thread (signal
    handlers need it); commands run on a reader thread.
    """

    def __init__(self, options: NodeOptions, out: TextIO) -> None:
        self.options = options
        self._log = NodeLog("dstate.node", options.node_id)
        self.emitter = Emitter(out)
        self.runtime: ActorRuntime | None = None
        self.node: DStateNode | None = None
        self.stop_requested = threading.Event()
        self._why = ""
        self._status = 0
        self._metrics_server: Any = None
        self._controller: Controller | None = None
        self._previous_handlers: dict[int, Any] = {}

    # -- what a runtime's subclass provides -----------------------------------------

    def prepare(self) -> None:
        """Checks before the runtime starts (raise :class:`CliError`)."""

    def start_runtime(self) -> ActorRuntime:
        """Start the runtime, not yet a cluster member (raise :class:`CliError`)."""
        raise NotImplementedError

    def join(self) -> None:
        """Make the node a cluster member (its states are registered)."""

    def runtime_status(self) -> dict[str, Any]:
        """The runtime's facts for ``status`` and ``ready`` (ports, peers, pids...)."""
        return {}

    def ready_fields(self) -> dict[str, Any]:
        """Extra fields of the ``ready`` event."""
        return {}

    def runtime_failure(self) -> str | None:
        """Why the runtime cannot go on (the cluster refused it, say); checked while serving."""
        return None

    def stop_runtime(self) -> None:
        """Shut the runtime down (idempotent)."""
        if self.runtime is not None:
            self.runtime.shutdown()

    # -- start ----------------------------------------------------------------------

    def start(self) -> None:
        """Handle the stop signals, start the runtime, register the states, join the cluster.

        A stop signal meanwhile cuts it short (:meth:`run` then stops at once).

        Raises:
            CliError: a check failed, or a state does not register.
        """
        self._handle_signals()
        self.prepare()
        if self.stop_requested.is_set():
            return
        self.runtime = self.start_runtime()
        try:
            opts = self.options
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
            if opts.metrics_port is not None:
                self._serve_metrics(self.node, opts.metrics_port)
            # Only now do peers see this node: its inbox and states are there for their
            # join exchange.
            if not self.stop_requested.is_set():
                self.join()
                self._wait_ready(self.node)
        except BaseException:
            self._stop_node()
            raise

    def _wait_ready(self, node: DStateNode) -> None:
        """``ready`` goes out once the node holds every member's views (or after a while)."""
        ready = node.wait_ready(READY_WAIT, cancel=self.stop_requested)
        if not ready and not self.stop_requested.is_set():
            self._log.warning(
                "not every member's views arrived within %g s; ready anyway",
                READY_WAIT,
            )

    def _serve_metrics(self, node: DStateNode, port: int) -> None:
        from ..metrics import serve_metrics

        try:
            self._metrics_server = serve_metrics(node, port)
        except OSError as exc:
            raise CliError(f"--metrics-port {port}: cannot listen: {exc.strerror}") from None

    def _register(self, node: DStateNode, spec: StateSpec) -> None:
        persistence: StatePersistence | None = None
        data_dir, name = self.options.data_dir, spec.state_type.NAME
        if data_dir is not None and self.options.persistence == "sqlite":
            persistence = SqlitePersistence(data_dir / f"{state_file_name(name)}.sqlite3", name)
        elif data_dir is not None:
            persistence = FilePersistence(data_dir / state_file_name(name), name)
        config = StateConfig(sync_strategy=STRATEGIES[spec.strategy](), persistence=persistence)
        try:
            node.register(spec.state_type, config)
        except (DStateError, ValueError, TypeError) as exc:
            raise CliError(f"--state {spec.text}: {exc}") from None

    # -- run ------------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        """Ask :meth:`run` to shut down (any thread, or a signal handler)."""
        if not self.stop_requested.is_set():
            self._why = why
            self.stop_requested.set()

    def run(self, stdin: TextIO | None) -> int:
        """Serve until asked to stop, then shut down cleanly; returns the exit status (0,
        or 2 if :meth:`runtime_failure` reported one).

        Stops at once if a signal cut :meth:`start` short.
        """
        if self.stop_requested.is_set():
            return self._stopped()
        assert self.runtime is not None and self.node is not None
        runtime, node = self.runtime, self.node
        self._controller = Controller(
            node, self.emitter, self.status, lambda: self.request_stop("shutdown command")
        )
        self.emitter.event(
            "ready",
            **self.status(),
            **self.ready_fields(),
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
        while not self.stop_requested.wait(0.2):
            failure = self.runtime_failure()
            if failure is not None:
                print(f"error: {failure}", file=sys.stderr, flush=True)
                self._status = 2
                self.request_stop(failure)
        runtime.cluster_events.unsubscribe(subscription)
        return self._stopped()

    def _stopped(self) -> int:
        self._log.info("stopping: %s", self._why)
        self.emitter.event("stopping", reason=self._why)
        self._stop_node()
        self.emitter.event("stopped")
        return self._status

    def _read(self, stdin: TextIO) -> None:
        assert self._controller is not None
        try:
            serve_lines(stdin, self._controller)
        except (OSError, ValueError) as exc:
            self._log.warning("the control channel failed: %s", exc)
        if self.options.exit_on_eof:
            self.request_stop("stdin closed")

    def _handle_signals(self) -> None:
        """Make :data:`_STOP_SIGNALS` call :meth:`request_stop` (main thread; idempotent)."""
        if self._previous_handlers:
            return
        for signum in _STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        # A runtime may fork (Thespian's actor system): give the child the handlers it had.
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
        return {"node": self.options.node_id, "pid": os.getpid(), **self.runtime_status()}

    def _stop_node(self) -> None:
        """Shut the node and its runtime down (idempotent)."""
        if self._controller is not None:
            self._controller.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        if self.node is not None:
            self.node.shutdown()
        self.stop_runtime()


def run_node_command(
    parser: argparse.ArgumentParser,
    build: Callable[[argparse.Namespace], NodeProcess],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, start the node process ``build`` makes, serve it; the exit status.

    0 after a clean stop, 2 for anything the user must fix (one line on stderr
    saying what), 130 on Ctrl-C while starting, 1 for an unexpected failure.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    prog = f"{parser.prog} {args.command}"
    try:
        process = build(args)
        process.start()
    except CliError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return process.run(sys.stdin)
