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

:class:`NodeHandle` starts such a process and drives it from Python::

    with NodeHandle.start("a", 19001, states=["dstate_core.testing:TestState"]) as a:
        a.ready()
        a.request("mutate", state="test_state", fn="increment", args=[1])
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dstate_core.process import (
    CliError,
    NodeOptions,
    NodeProcess,
    RunRecord,
    check_run_dir,
    claim_port,
    default_run_dir,
    wait_reachable,
)
from dstate_core.process import (
    NodeHandle as BaseNodeHandle,
)
from dstate_core.process import start_time as _start_time

from ._runtime import ThespianRuntime
from ._thespian import failure_detection_bound

__all__ = ["NodeHandle", "ThespianNodeOptions", "ThespianNodeProcess"]


@dataclass(frozen=True)
class ThespianNodeOptions:
    """A Thespian node's own checked options (see ``python -m dstate_thespian node --help``)."""

    admin_port: int
    convention: str | None
    leader: bool
    host: str
    join_timeout: float = 10.0
    run_dir: Path | None = None


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
        self._run_dir = check_run_dir(thespian.run_dir or default_run_dir("dstate-thespian"))
        self._record_path = RunRecord.path(self._run_dir, thespian.admin_port)

    def prepare(self) -> None:
        """Claim the admin port; a member waits until its leader is reachable."""
        opts = self.thespian
        note = claim_port(
            opts.admin_port, self._run_dir, "admin port", "--admin-port", "actor system"
        )
        if note:
            self._log.warning("%s", note)
        member = not opts.leader and opts.convention is not None
        if member and not wait_reachable(
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
            self._log.warning("cannot write the run record %s: %s", self._record_path, exc)

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
                self._log.warning("processes %s outlived the shutdown", left)
        record = RunRecord.read(self._record_path)
        if record is not None and record.pid == os.getpid():
            with contextlib.suppress(OSError):
                self._record_path.unlink()


class NodeHandle(BaseNodeHandle):
    """A Thespian node process. Create it with :meth:`start`."""

    @classmethod
    def start(
        cls,
        node_id: str,
        admin_port: int,
        *,
        states: Sequence[str],
        convention: int | str | None = None,
        options: Sequence[str] = (),
        exit_on_eof: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> NodeHandle:
        """Start ``python -m dstate_thespian node`` (it runs until stopped).

        Args:
            node_id, admin_port, states: ``--node-id``, ``--admin-port``, ``--state`` s.
            convention: the leader's ``"host:port"``, or its port on 127.0.0.1.
            options: more command-line options (``--data-dir``...).
            exit_on_eof: pass ``--exit-on-eof``: the node stops if this process dies.
            env: environment variables added to this process's.
            cwd: the node's working directory (where ``--state`` modules import from).
        """
        args = [sys.executable, "-m", "dstate_thespian", "node", "--node-id", node_id]
        args += ["--admin-port", str(admin_port)]
        if convention is not None:
            where = f"127.0.0.1:{convention}" if isinstance(convention, int) else convention
            args += ["--convention", where]
        for state in states:
            args += ["--state", state]
        if exit_on_eof:
            args.append("--exit-on-eof")
        args += list(options)
        handle = cls.launch(args, node_id, env=env, cwd=cwd)
        handle.admin_port = admin_port
        return handle

    #: The node's Thespian admin port.
    admin_port: int = 0
