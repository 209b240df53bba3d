"""How the process demo (``examples/demo_processes.py``) starts its node processes.

One launcher per ``--adapter`` that runs nodes as processes; the scenario
only needs to start a node (:meth:`NodeLauncher.spawn`) and to know how soon
a killed one is noticed, where a restarted one listens and what a stopped
one may leave behind.

- :class:`ThespianNodes`: ``python -m dstate_thespian node`` on fixed free
  ports; a leads the Thespian convention, b and c join it; a restarted node
  takes its old port again.
- :class:`NetworkNodes`: ``python -m dstate_pykka node`` on
  ``127.0.0.1:0`` (a free port, which its ``ready`` event says), encrypted
  and authenticated with a cluster secret written for this run (mode 600);
  a starts the cluster and every other node, a restarted one too, joins
  through a's address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from dstate_core.process import NodeHandle, free_port, port_open
from dstate_pykka import PykkaNodeHandle
from dstate_thespian import NodeHandle as ThespianNodeHandle

from .demo import NODES
from .network_cluster import write_secret

__all__ = [
    "FEED_INTERVAL",
    "LAUNCHERS",
    "LEADER",
    "NetworkNodes",
    "NodeLauncher",
    "ThespianNodes",
]

ROOT = Path(__file__).resolve().parents[1]
STATE_SPEC = "examples.node_resource:NodeResource@feed"
#: Every node's ``--feed-interval`` (seconds).
FEED_INTERVAL = 0.2
#: The network nodes' ``--failure-timeout`` (seconds).
FAILURE_TIMEOUT = 1.0
#: The node that starts the cluster (and is never killed).
LEADER = "a"


class NodeLauncher(Protocol):
    """How the demo starts one node process, and what to say about it."""

    #: The screen's title.
    title: str
    #: How the nodes find each other (printed before they start).
    how_they_join: str
    #: Why the survivors noticed the kill (shown with the time they took).
    how_they_notice: str

    def spawn(self, node: str) -> NodeHandle:
        """Start ``node``'s process (it joins the cluster); does not wait for ``ready``."""
        ...

    def detection_bound(self, ready: Mapping[str, Any]) -> float:
        """The longest a kill -9 may take to be noticed, from a node's ``ready`` event."""
        ...

    def restart_note(self, handle: NodeHandle) -> str:
        """Where a restarted node listens, compared with before (after its ``ready``)."""
        ...

    def leftovers(self, handle: NodeHandle) -> list[str]:
        """What of ``handle``'s node still runs or listens."""
        ...


class ThespianNodes:
    """``python -m dstate_thespian node`` processes; a leads the convention.

    Args:
        run_dir: the nodes' ``--run-dir`` (where they record their pids).
    """

    title = "3 node processes (Thespian)"
    how_they_join = "a leads the Thespian convention"
    how_they_notice = "its gateway saw it die"

    def __init__(self, run_dir: Path) -> None:
        self.ports = {node: free_port() for node in NODES}
        self._run_dir = run_dir

    def spawn(self, node: str) -> NodeHandle:
        return ThespianNodeHandle.start(
            node,
            self.ports[node],
            states=[STATE_SPEC],
            convention=self.ports[LEADER],
            options=("--feed-interval", str(FEED_INTERVAL), "--run-dir", str(self._run_dir)),
            cwd=ROOT,
        )

    def detection_bound(self, ready: Mapping[str, Any]) -> float:
        return float(ready["detection_bound"])

    def restart_note(self, handle: NodeHandle) -> str:
        return "same id and port"

    def leftovers(self, handle: NodeHandle) -> list[str]:
        return handle.leftovers()


class NetworkNodes:
    """``python -m dstate_pykka node`` processes on 127.0.0.1; b and c join through a.

    Args:
        tmp: a private directory for the generated cluster secret.
    """

    title = "3 node processes (Pykka over the network)"
    how_they_join = (
        "each on a free port of 127.0.0.1, encrypted with a generated cluster secret; "
        "b and c join through a's address"
    )
    how_they_notice = f"their failure detector, --failure-timeout {FAILURE_TIMEOUT:g}s"

    def __init__(self, tmp: Path) -> None:
        self._secret = write_secret(tmp)
        self._started: dict[str, list[NodeHandle]] = {}  # each node's processes, in order

    def spawn(self, node: str) -> NodeHandle:
        leader = self._started.get(LEADER)
        seeds = [str(leader[-1].ready()["address"])] if node != LEADER and leader else []
        handle = PykkaNodeHandle.start(
            node,
            states=[STATE_SPEC],
            seeds=seeds,
            secret_file=self._secret,
            options=(
                *("--feed-interval", str(FEED_INTERVAL)),
                *("--failure-timeout", str(FAILURE_TIMEOUT)),
            ),
            cwd=ROOT,
        )
        self._started.setdefault(node, []).append(handle)
        return handle

    def detection_bound(self, ready: Mapping[str, Any]) -> float:
        # A kill -9 is noticed within failure_timeout + 0.5 s (docs/network.md).
        return float(ready["failure_timeout"]) + 0.5

    def restart_note(self, handle: NodeHandle) -> str:
        before = self._started[handle.node_id][-2].ready()["address"]
        return f"same id, new address {handle.ready()['address']} instead of {before}"

    def leftovers(self, handle: NodeHandle) -> list[str]:
        # The ready event lists no ports to check: the address is the one.
        left = handle.leftovers()
        ready = handle.ready_event
        host, _, port = str(ready["address"] if ready else "").rpartition(":")
        if port and port_open(int(port), host):
            left.append(f"port {port}")
        return left


#: ``--adapter`` -> the launcher, given a private temporary directory.
LAUNCHERS: dict[str, Callable[[Path], NodeLauncher]] = {
    "thespian": ThespianNodes,
    "network": NetworkNodes,
}
