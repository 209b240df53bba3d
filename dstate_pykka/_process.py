"""A Pykka node as an operating-system process (``python -m dstate_pykka node``).

:class:`PykkaNodeProcess` is the core's :class:`~dstate_core.process.NodeProcess`
on a :class:`~._runtime.PykkaRuntime` over a :class:`~dstate_core.net.TcpNetwork`:
it listens (port 0 picks a free one; ``ready`` says which), registers the
states, then joins the cluster through its seeds. A cluster that refuses it
(its node id is taken by a live process, or its secret is not the cluster's)
is a user error: one line on stderr, exit status 2.

:class:`PykkaNodeHandle` starts such a process and drives it from Python::

    with PykkaNodeHandle.start("a", states=["dstate_core.testing:TestState"],
                               insecure=True) as a:
        address = a.ready()["address"]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dstate_core.net import JoinRefusedError, TcpNetwork
from dstate_core.process import CliError, NodeOptions, NodeProcess
from dstate_core.process import NodeHandle as BaseNodeHandle

from ._runtime import PykkaRuntime

__all__ = ["PykkaNetOptions", "PykkaNodeHandle", "PykkaNodeProcess"]


@dataclass(frozen=True)
class PykkaNetOptions:
    """A Pykka node's network options (see ``python -m dstate_pykka node --help``)."""

    listen: str
    seeds: tuple[str, ...] = ()
    advertise: str | None = None
    insecure: bool = False
    certificates: Path | None = None
    failure_timeout: float = 1.0
    join_timeout: float = 10.0


class PykkaNodeProcess(NodeProcess):
    """A node process on a Pykka runtime over the network.

    Args:
        options: the shared checked options.
        net: the network options.
        out: where control replies and events go (stdout).
    """

    runtime: PykkaRuntime | None

    def __init__(self, options: NodeOptions, net: PykkaNetOptions, out: TextIO) -> None:
        super().__init__(options, out)
        self.net = net
        self.network: TcpNetwork | None = None

    def start_runtime(self) -> PykkaRuntime:
        """Listen, and start the runtime (not yet a cluster member)."""
        net = self.net
        try:
            self.network = TcpNetwork(
                self.options.node_id,
                net.listen,
                net.seeds,
                cluster_secret=None if net.insecure else self.options.cluster_secret,
                advertise=net.advertise,
                failure_timeout=net.failure_timeout,
                insecure=net.insecure,
                certificates=net.certificates,
            )
        except (ValueError, TypeError) as exc:
            raise CliError(str(exc)) from None
        try:
            return PykkaRuntime(self.options.node_id, network=self.network, join=False)
        except BaseException:
            self.network.close()
            raise

    def join(self) -> None:
        """Join through the seeds (a signal cuts the wait short).

        Raises:
            CliError: the cluster refused this node.
        """
        assert self.runtime is not None
        try:
            joined = self.runtime.join_cluster(self.net.join_timeout, cancel=self.stop_requested)
        except JoinRefusedError as exc:
            raise CliError(str(exc)) from None
        if not joined and not self.stop_requested.is_set():
            assert self.network is not None
            rejected = self.network.counters()["rejected"]
            self._log.warning(
                "no seed of %s answered within %g s; running alone and still trying%s",
                ", ".join(self.net.seeds),
                self.net.join_timeout,
                f" (rejected so far: {rejected})" if rejected else "",
            )

    def runtime_failure(self) -> str | None:
        """The cluster refused this node after it started (e.g. every seed refused its key)."""
        return None if self.network is None else self.network.refused

    def runtime_status(self) -> dict[str, Any]:
        """Address, incarnation, members, peers and the network's counters."""
        network, runtime = self.network, self.runtime
        assert network is not None and runtime is not None
        return {
            "address": network.address,
            "pids": [os.getpid()],
            "listening": [int(network.address.rpartition(":")[2])],
            "secure": network.secure,
            "incarnation": network.incarnation,
            "members": network.members(),
            "peers": runtime.peers,
            "network": network.counters(),
            "runtime_drops": runtime.drops,
        }

    def ready_fields(self) -> dict[str, Any]:
        """The failure detector's bound."""
        return {"failure_timeout": self.net.failure_timeout}


class PykkaNodeHandle(BaseNodeHandle):
    """A Pykka node process. Create it with :meth:`start`."""

    @classmethod
    def start(
        cls,
        node_id: str,
        *,
        states: Sequence[str],
        listen: str = "127.0.0.1:0",
        seeds: Sequence[str] = (),
        secret_file: str | os.PathLike[str] | None = None,
        options: Sequence[str] = (),
        exit_on_eof: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> PykkaNodeHandle:
        """Start ``python -m dstate_pykka node`` (it runs until stopped).

        Args:
            node_id, states, listen, seeds: ``--node-id``, ``--state`` s, ``--listen``,
                ``--seed`` s.
            secret_file: ``--secret-file``; None passes ``--insecure`` (loopback only).
            options: more command-line options (``--data-dir``...).
            exit_on_eof: pass ``--exit-on-eof``: the node stops if this process dies.
            env: environment variables added to this process's.
            cwd: the node's working directory (where ``--state`` modules import from).
        """
        args = [sys.executable, "-m", "dstate_pykka", "node", "--node-id", node_id]
        args += ["--listen", listen]
        for seed in seeds:
            args += ["--seed", seed]
        args += ["--insecure"] if secret_file is None else ["--secret-file", str(secret_file)]
        for state in states:
            args += ["--state", state]
        if exit_on_eof:
            args.append("--exit-on-eof")
        args += list(options)
        return cls.launch(args, node_id, env=env, cwd=cwd)

    @property
    def address(self) -> str:
        """The node's ``host:port`` from its ``ready`` event."""
        return str(self.ready()["address"])
