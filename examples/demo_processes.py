"""``python -m examples.demo --adapter thespian|network``: the demo's nodes as processes.

Three node processes host ``examples.node_resource:NodeResource`` on the
change feed. A launcher (``examples/demo_launchers.py``) says how one is
started:

- ``thespian``: ``python -m dstate_thespian node``; a leads the Thespian
  convention, b and c join it;
- ``network``: ``python -m dstate_pykka node`` over
  :class:`dstate_core.net.TcpNetwork`, each on a free port of 127.0.0.1,
  encrypted with a cluster secret generated for the run (a file of mode
  600); a starts the cluster, b and c join through a's address.

This process only drives the nodes through their JSON control channels
(:class:`dstate_core.process.NodeHandle`): one thread per node sends its
simulated load as ``mutate`` requests, and every screen asks each node for a
``query`` of its views, whose result is both the table and the route (the
least-loaded node in that node's own data).

The scenario, with ``D`` = ``--duration`` (>= 8 s):

1. at 0.3 D, c's node process is killed (``kill -9``) and a and b report c
   ``left``. Thespian: c's gateway sees the process die and leaves the
   convention (about 0.5 s on loopback; a whole-host crash would take up to
   the convention's detection bound, ~7 s, and the run waits for it).
   Network: a and b's failure detector misses c's answers (within about
   ``--failure-timeout``, 1 s here, plus 0.5 s);
2. at 0.55 D, but not before a and b both saw c leave, c is restarted with
   the same id (Thespian: the same port; network: a new free port, seeded
   through a) and no ``--data-dir``, so a fresh incarnation: they report it
   ``joined`` and every node gets every view again;
3. at D, once c rejoined, the load stops; the demo waits until every node
   holds every owner's latest generation, prints the health of each node,
   then stops every node process (closing its stdin: a clean shutdown) and
   checks that no process or port is left.

Exit status 0 when every step happened, 1 otherwise (what failed is printed).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dstate_core.process import NodeHandle, NodeHandleError

from .demo import NODES, ROUTE_STALENESS, Display, LoadSimulator, ViewRow, node_table, render
from .demo_launchers import FEED_INTERVAL, LAUNCHERS, LEADER, NodeLauncher
from .node_resource import NodeResource

__all__ = ["ProcessCluster", "run_processes"]

STATE = NodeResource.NAME
VICTIM = "c"
STRATEGY_TEXT = (
    f"change feed (batch {FEED_INTERVAL}s) + lazy pull; screens query max_staleness="
    f"{ROUTE_STALENESS}s"
)
#: How long one control request may take (a query pulling from a dying peer waits for it).
REPLY_TIMEOUT = 10.0
#: How long the join exchange (at start, and after the restart) may take.
JOIN_TIMEOUT = 15.0
#: After the kill, how much longer than the launcher's detection bound to wait for ``left``.
LEFT_SLACK = 3.0
#: The shortest time the leave stays on screen before c is restarted.
SHOW_LEFT = 1.5
#: How long the end waits for every node to hold every owner's latest generation.
CONVERGE_TIMEOUT = 10.0

Frame = tuple[dict[str, ViewRow], str]


class LoadPort:
    """Publishes one node's load as ``mutate`` requests to its current process.

    ``handle`` is None while the node is down. A failed request to the current
    process is recorded in :attr:`errors` and raised (ending the simulator);
    one cut short by the demo's own kill is not an error.

    Concurrency: called on the node's simulator thread; the demo swaps ``handle``.
    """

    def __init__(self) -> None:
        self.handle: NodeHandle | None = None
        self.applied = 0
        self.errors: list[str] = []

    def __call__(self, cpu_pct: float, mem_used_mb: int) -> None:
        handle = self.handle
        if handle is None:
            return
        try:
            handle.request(
                "mutate",
                state=STATE,
                fn="set_load",
                args=[cpu_pct, mem_used_mb],
                reply_timeout=REPLY_TIMEOUT,
            )
        except NodeHandleError as exc:
            if self.handle is handle:
                self.errors.append(str(exc).splitlines()[0])
                raise
            return
        self.applied += 1


class ProcessCluster:
    """The three node processes; every process it started is stopped by :meth:`close`.

    Args:
        launcher: how a node process is started.
    """

    def __init__(self, launcher: NodeLauncher) -> None:
        self.launcher = launcher
        self.nodes: dict[str, NodeHandle] = {}  # the live ones
        self.started: list[NodeHandle] = []

    def spawn(self, node: str) -> NodeHandle:
        """Start ``node``'s process (it joins the cluster); does not wait."""
        handle = self.launcher.spawn(node)
        self.started.append(handle)
        return handle

    def start(self) -> None:
        """Start the leader, then the members; return once every node holds every view.

        Raises:
            NodeHandleError: a node did not start, or the join exchange did not finish.
        """
        self.spawn(LEADER).ready()
        members = [self.spawn(node) for node in NODES if node != LEADER]
        for handle in [self.started[0], *members]:
            handle.ready()
            self.nodes[handle.node_id] = handle
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not full(self.read_all()):
            if time.monotonic() > deadline:
                raise NodeHandleError(f"the nodes did not exchange views within {JOIN_TIMEOUT} s")
            time.sleep(0.05)

    def read(self, node: str) -> Frame:
        """``node``'s views (older ones pulled first) and where it routes, from one ``query``."""
        reply = self.nodes[node].request(
            "query",
            state=STATE,
            max_staleness=ROUTE_STALENESS,
            on_stale="return",
            reply_timeout=REPLY_TIMEOUT,
        )
        rows = {owner: ViewRow.from_json(view) for owner, view in reply["views"].items()}
        # As node_resource.least_loaded: the lowest CPU, then memory.
        route = min(rows, key=lambda owner: (rows[owner].cpu_pct, rows[owner].mem_used_mb))
        return rows, route

    def read_all(self) -> dict[str, Frame]:
        """:meth:`read` of every live node."""
        return {node: self.read(node) for node in self.nodes}

    def close(self, timeout: float = 10.0) -> list[str]:
        """Stop every node process (members first), clean up after killed ones; what is left."""
        for handle in sorted(self.started, key=lambda h: h.node_id == LEADER):
            handle.close(timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = [
                f"{h.node_id}: {item}" for h in self.started for item in self.launcher.leftovers(h)
            ]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


def full(frames: Mapping[str, Frame]) -> bool:
    """True if every node runs and holds a view of every node."""
    return len(frames) == len(NODES) and all(len(rows) == len(NODES) for rows, _ in frames.values())


def converged(frames: Mapping[str, Frame]) -> bool:
    """True if every node holds each owner's view at the owner's own generation."""
    return full(frames) and all(
        rows[owner].generation == frames[owner][0][owner].generation
        for rows, _ in frames.values()
        for owner in NODES
    )


class CrashScenario:
    """Kills c's process, restarts it once a and b saw it leave, watches it rejoin.

    :meth:`step` runs once per screen; :attr:`done` once c rejoined or a step
    timed out (said in :attr:`failures`).
    """

    def __init__(
        self, cluster: ProcessCluster, duration: float, loads: Mapping[str, LoadPort]
    ) -> None:
        self._cluster = cluster
        self._loads = loads
        self.kill_at, self.restart_at = 0.3 * duration, 0.55 * duration
        self._bound = cluster.launcher.detection_bound(cluster.nodes[LEADER].ready())
        self._survivors = [cluster.nodes[n] for n in NODES if n != VICTIM]
        self._step = "up"
        self._at = 0.0  # when the current step began (monotonic)
        self._shown = 0.0  # when a and b had both seen c leave
        self.failures: list[str] = []
        pids = " ".join(f"{n}={h.pid}" for n, h in cluster.nodes.items())
        self.phase = f"processes {pids} up; c is killed at t={self.kill_at:.1f}s"

    @property
    def done(self) -> bool:
        """True once c rejoined (or gave up)."""
        return self._step == "done"

    def _seen(self, event: str) -> list[float]:
        """When each survivor reported ``event`` about c since the current step began."""
        times = []
        for handle in self._survivors:
            found = handle.wait_event(
                lambda e: e.get("event") == event and e["node"] == VICTIM and e["t"] >= self._at, 0
            )
            if found is not None:
                times.append(found["t"] - self._at)
        return times

    def step(self, elapsed: float, frames: Mapping[str, Frame]) -> str:
        """Advance the scenario; returns the phase text."""
        now = time.monotonic()
        if self._step == "up" and elapsed >= self.kill_at:
            handle = self._cluster.nodes.pop(VICTIM)
            self._loads[VICTIM].handle = None
            self._at, self._step = handle.kill(), "killed"
            self.phase = f"c killed (kill -9 of pid {handle.pid}): will a and b notice?"
        elif self._step == "killed":
            seen = self._seen("left")
            if len(seen) == len(self._survivors):
                self._step, self._shown = "left", now
                restart = max(self.restart_at, elapsed + SHOW_LEFT)
                self.phase = (
                    f"a and b saw c leave {max(seen):.2f}s after the kill "
                    f"({self._cluster.launcher.how_they_notice}); restart at t={restart:.1f}s"
                )
            elif now - self._at > self._bound + LEFT_SLACK:
                self.failures.append(
                    f"a and b did not both report c leaving within {self._bound + LEFT_SLACK:g}s"
                )
                self._step, self._shown = "left", now
        elif self._step == "left" and elapsed >= self.restart_at and now >= self._shown + SHOW_LEFT:
            self._at = time.monotonic()
            handle = self._cluster.spawn(VICTIM)
            handle.ready()
            self._cluster.nodes[VICTIM] = self._loads[VICTIM].handle = handle
            self._step = "restarted"
            note = self._cluster.launcher.restart_note(handle)
            self.phase = f"c restarted (pid {handle.pid}, {note}): rejoining..."
        elif self._step == "restarted":
            seen = self._seen("joined")
            if len(seen) == len(self._survivors) and full(frames):
                self._step = "done"
                self.phase = (
                    f"c rejoined: a and b saw it join {max(seen):.2f}s after the restart; "
                    "all views back"
                )
            elif now - self._at > JOIN_TIMEOUT:
                self.failures.append(f"c did not rejoin within {JOIN_TIMEOUT:g}s of its restart")
                self._step = "done"
        return self.phase


def tables(frames: Mapping[str, Frame]) -> list[Table]:
    """One table per node; a node without a process shows as down."""
    now = time.monotonic()
    return [
        node_table(node, *frames[node], now)
        if node in frames
        else node_table(node, {}, "", now, down="process killed")
        for node in NODES
    ]


def run_processes(args: argparse.Namespace, console: Console) -> int:
    """Run the process demo (see the module docstring); returns the exit status."""
    stop = threading.Event()
    loads = {node: LoadPort() for node in NODES}
    simulators = [
        LoadSimulator(loads[node], args.seed * 10 + i, stop) for i, node in enumerate(NODES)
    ]
    with tempfile.TemporaryDirectory(prefix="dstate-demo-") as tmp:
        cluster = ProcessCluster(LAUNCHERS[args.adapter](Path(tmp)))
        try:
            failures = _drive(args, console, cluster, loads, simulators, stop)
        except NodeHandleError as exc:  # a node process failed to start or to answer
            failures = [str(exc)]
        finally:
            stop.set()
            for simulator in simulators:
                if simulator.is_alive():
                    simulator.join(timeout=REPLY_TIMEOUT)
            left = cluster.close()
    statuses = {h.node_id: h.proc.returncode for h in cluster.nodes.values()}
    failures += [f"load updates to {n} failed: {e[0]}" for n, p in loads.items() if (e := p.errors)]
    console.print(f"load updates applied: { {n: p.applied for n, p in loads.items()} }")
    if set(statuses.values()) != {0}:
        failures.append(f"node processes did not exit cleanly: exit statuses {statuses}")
    if left:
        failures.append(f"left behind: {left}")
    else:
        console.print(f"stopped every node process: none left (exit statuses {statuses})")
    for failure in failures:
        console.print(f"[red]FAILED:[/] {failure}")
    return 1 if failures else 0


def _drive(
    args: argparse.Namespace,
    console: Console,
    cluster: ProcessCluster,
    loads: Mapping[str, LoadPort],
    simulators: list[LoadSimulator],
    stop: threading.Event,
) -> list[str]:
    """Start the nodes, run the scenario on screen, converge; returns what failed."""
    title = cluster.launcher.title
    console.print(f"starting 3 node processes ({cluster.launcher.how_they_join})...")
    cluster.start()
    for node, simulator in zip(NODES, simulators, strict=True):
        loads[node].handle = cluster.nodes[node]
        loads[node](round(simulator.cpu, 1), simulator.mem)  # the first screen shows loads
        simulator.start()
    scenario = CrashScenario(cluster, args.duration, loads)
    start = time.monotonic()
    frames = cluster.read_all()
    with Display(console, args.plain, args.duration) as display:
        while (elapsed := time.monotonic() - start) < args.duration or not scenario.done:
            phase = scenario.step(elapsed, frames)
            frames = cluster.read_all()  # may wait for a pull: show when the data was read
            elapsed = time.monotonic() - start
            screen = render(title, STRATEGY_TEXT, tables(frames), phase, elapsed, args.duration)
            display.show(screen, phase, elapsed)
            time.sleep(0.25)
    stop.set()
    for simulator in simulators:
        simulator.join(timeout=REPLY_TIMEOUT)

    def health() -> dict[str, str]:
        return {node: h.request("health")["status"] for node, h in cluster.nodes.items()}

    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while time.monotonic() < deadline:
        if converged(frames := cluster.read_all()) and set(health().values()) == {"HEALTHY"}:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    console.print(render(title, STRATEGY_TEXT, tables(frames), "finished", elapsed, args.duration))
    failures = list(scenario.failures)
    if converged(frames):
        ages = ", ".join(f"{node} at age {frames[node][0][node].generation[1]}" for node in NODES)
        console.print(f"converged: every node holds {ages} (each owner's own generation)")
    else:
        failures.append(f"the views did not converge within {CONVERGE_TIMEOUT:g}s")
    status = health()
    console.print(f"health: {status}")
    if set(status.values()) != {"HEALTHY"}:
        failures.append(f"not every node is healthy: {status}")
    return failures
