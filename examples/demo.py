"""`make demo`: a live 3-node cluster replicating each node's load, on real actors.

Each node publishes a ``NodeResource`` with a simulated load and routes work
to the least-loaded node from its local views. The terminal shows, per node,
its view of every node (load, generation, staleness), the strategy in use and
where it would route. It ends by itself.

``--adapter pykka`` (the default): three nodes in this process on Pykka
threads (everything that crosses nodes is encoded bytes). Midway node c is
partitioned away for a few seconds, then healed.

``--adapter thespian``: three node processes (``python -m dstate_thespian
node``) driven through their JSON control channels
(``examples/demo_processes.py``). Midway node c's process is killed
(``kill -9``), the others see it leave, then it is restarted under the same id
and rejoins. Each step waits for the one before it, so a slow machine
stretches the run; ``--duration`` must be at least 8 s.

``--adapter network``: the same scenario on three Pykka node processes over
the network (``python -m dstate_pykka node``: ZeroMQ on 127.0.0.1, encrypted
with a cluster secret generated for the run); a and b's failure detector
notices the kill within about a second.

    python -m examples.demo [--duration 20] [--adapter pykka|thespian|network] [--plain]
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dstate_core import ChangeFeedConfig, StateConfig, StateViewObject, SyncStrategy
from dstate_pykka import PykkaCluster, local_cluster

from .node_resource import NodeResource, least_loaded

NODES = ("a", "b", "c")
STRATEGY = SyncStrategy.feed_with_periodic_sync(1.0)
STRATEGY_TEXT = "change feed (batch 0.2s) + lazy pull, full sync every 1s, pull on query"
ROUTE_STALENESS = 1.5
#: The shortest ``--duration`` with room to kill, restart and rejoin a node process.
PROCESS_MIN_DURATION = 8.0


@dataclass(frozen=True)
class ViewRow:
    """One node's view of one owner, as a table shows it (built from either adapter)."""

    cpu_pct: float
    mem_used_mb: int
    generation: tuple[int, int]  # (incarnation, age)
    pending: bool  # a newer generation was announced by the feed and not pulled yet
    synced_at: float  # the host's time.monotonic() when the view was last confirmed

    @classmethod
    def from_view(cls, view: StateViewObject[Any]) -> ViewRow:
        """A row from an in-process view."""
        return cls(
            view.value.cpu_pct,
            view.value.mem_used_mb,
            (view.generation.incarnation, view.generation.age),
            view.pending_remote_generation is not None,
            view.synced_at,
        )

    @classmethod
    def from_json(cls, view: Mapping[str, Any]) -> ViewRow:
        """A row from one view of a node process's ``views``/``query`` reply."""
        incarnation, age = view["generation"]
        return cls(
            float(view["value"]["cpu_pct"]),
            int(view["value"]["mem_used_mb"]),
            (int(incarnation), int(age)),
            view["pending"] is not None,
            float(view["synced_at"]),
        )


def node_table(
    node: str, rows: Mapping[str, ViewRow], route: str, now: float, down: str = ""
) -> Table:
    """One node's view of the cluster (``down``: why the node has no views now)."""
    head = f"[red]{down}[/]" if down else f"routes to [bold]{route}[/]"
    table = Table(title=f"node {node}  ->  {head}", title_justify="left")
    for column in ("node", "cpu", "memory", "generation", "staleness"):
        table.add_column(column, justify="right" if column != "node" else "left")
    # A node that left is in no view map: its row goes (a node that is down lists them all).
    for owner in NODES if down else [n for n in NODES if n in rows or n == node]:
        row = rows.get(owner)
        if row is None:
            table.add_row(owner, "-", "-", "-", Text("down" if down else "no view", style="red"))
            continue
        age = 0.0 if owner == node else now - row.synced_at
        style = "green" if age <= ROUTE_STALENESS else "red"
        table.add_row(
            owner + (" (self)" if owner == node else ""),
            f"{row.cpu_pct:5.1f}%",
            f"{row.mem_used_mb:6d} MB",
            f"{row.generation[1]}{' *' if row.pending else ''}",
            Text("local" if owner == node else f"{age:4.1f}s", style=style),
        )
    return table


def render(
    title: str, strategy: str, tables: Sequence[Table], phase: str, elapsed: float, duration: float
) -> Group:
    """The whole screen: header plus one table per node."""
    header = Text.assemble(
        (f"dstate live demo: {title}", "bold"),
        f"   t={elapsed:4.1f}s / {duration:.0f}s\n",
        ("strategy: ", "bold"),
        f"{strategy}\n",
        ("phase: ", "bold"),
        phase,
        "\n(* = change announced by the feed, not pulled yet; red = stale)",
    )
    return Group(header, *tables)


class Display:
    """The live screen or, with ``plain``, a printed screen per phase and per quarter run."""

    def __init__(self, console: Console, plain: bool, duration: float) -> None:
        self.console = console
        # Transient: the final screen is printed once, after the live one is gone.
        self._live = None if plain else Live(console=console, refresh_per_second=4, transient=True)
        self._every = duration / 4
        self._next = 0.0
        self._phase = ""

    def show(self, screen: Group, phase: str, elapsed: float) -> None:
        """Update the live screen, or print ``screen`` if the phase changed or it is time."""
        if self._live is not None:
            self._live.update(screen)
        elif elapsed >= self._next or phase != self._phase:
            self.console.print(screen)
            self._phase, self._next = phase, elapsed + self._every

    def __enter__(self) -> Display:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()


class LoadSimulator(threading.Thread):
    """Moves one node's load around at random and hands it to ``publish(cpu_pct, mem_mb)``.

    Concurrency: its own thread; ``publish`` raising ends it (the node is going away).
    """

    def __init__(
        self, publish: Callable[[float, int], object], seed: int, stop: threading.Event
    ) -> None:
        super().__init__(name=f"load-{seed}", daemon=True)
        self._publish = publish
        self._rng = random.Random(seed)
        self._halt = stop
        self.cpu = self._rng.uniform(20, 80)
        self.mem = self._rng.randrange(1000, 8000)

    def run(self) -> None:
        rng = self._rng
        while not self._halt.wait(rng.uniform(0.05, 0.25)):
            self.cpu = min(99.0, max(1.0, self.cpu + rng.gauss(0, 6)))
            if rng.random() < 0.05:
                self.mem = rng.randrange(500, 16000)  # a big jump: pushed immediately
            try:
                self._publish(round(self.cpu, 1), self.mem)
            except Exception:
                return


def pykka_tables(cluster: PykkaCluster) -> list[Table]:
    """Each node's table; its route is ``least_loaded`` over the same views."""
    tables = []
    for node in cluster.node_ids:
        shard = cluster.node(node).lookup(NodeResource.NAME)
        route, rows = shard.query(
            lambda views: (least_loaded(views), {o: ViewRow.from_view(views[o]) for o in views}),
            max_staleness=ROUTE_STALENESS,
            on_stale="return",
        )
        tables.append(node_table(node, rows, route, time.monotonic()))
    return tables


def run_pykka(args: argparse.Namespace, console: Console) -> int:
    """Three Pykka nodes in this process; c is partitioned away, then healed.

    Returns 0, or 1 when a node is still not HEALTHY 5 s after the run.
    """
    partition_at, heal_at = args.duration * 0.35, args.duration * 0.6
    stop = threading.Event()
    config = StateConfig(sync_strategy=STRATEGY, pull_timeout=0.3, default_staleness=2.0)
    options = {"change_feed": ChangeFeedConfig(batch_interval=0.2), "failure_timeout": 2.0}
    title = "3 Pykka nodes in this process"
    with local_cluster(list(NODES), **options) as cluster:
        shards = {node: cluster.node(node).register(NodeResource, config) for node in NODES}

        def publisher(node: str) -> Callable[[float, int], object]:
            return lambda cpu, mem: shards[node].mutate_with_delta(NodeResource.set_load(cpu, mem))

        loads = [LoadSimulator(publisher(n), args.seed * 10 + i, stop) for i, n in enumerate(NODES)]
        for simulator in loads:
            simulator.start()
        start = time.monotonic()
        phase = "all nodes connected"
        partitioned = healed = False
        try:
            with Display(console, args.plain, args.duration) as display:
                while (elapsed := time.monotonic() - start) < args.duration:
                    if not partitioned and elapsed >= partition_at:
                        cluster.partition(["c"], ["a", "b"])
                        partitioned, phase = True, "c is partitioned away: its views go stale"
                    if partitioned and not healed and elapsed >= heal_at:
                        cluster.heal()
                        healed, phase = True, "healed: the next full sync converges everyone"
                    screen = render(
                        title, STRATEGY_TEXT, pykka_tables(cluster), phase, elapsed, args.duration
                    )
                    display.show(screen, phase, elapsed)
                    time.sleep(0.25)
        finally:
            stop.set()
            for simulator in loads:
                simulator.join(timeout=2.0)

        def health() -> dict[str, str]:
            return {node: cluster.node(node).health_check().status.name for node in NODES}

        deadline = time.monotonic() + 5.0  # let the last full sync land after the heal
        while set(health().values()) != {"HEALTHY"} and time.monotonic() < deadline:
            time.sleep(0.05)
        final = pykka_tables(cluster)
        console.print(render(title, STRATEGY_TEXT, final, "finished", args.duration, args.duration))
        status = health()
        console.print(f"health: {status}")
    unhealthy = {node: name for node, name in status.items() if name != "HEALTHY"}
    if unhealthy:
        console.print(f"[red]FAILED:[/] not every node was HEALTHY 5 s after the end: {unhealthy}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 when every step happened)."""
    parser = argparse.ArgumentParser(
        description="dstate live demo: 3 nodes share their load; one is cut off, then recovers.",
        epilog=f"With --adapter thespian or network each node is its own process; node c is killed "
        f"(kill -9) and restarted, and --duration must be >= {PROCESS_MIN_DURATION:g} s.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help=f"seconds to run (default 20; >= {PROCESS_MIN_DURATION:g} with node processes)",
    )
    parser.add_argument(
        "--adapter",
        choices=("pykka", "thespian", "network"),
        default="pykka",
        help="pykka: 3 nodes in this process, c partitioned and healed (default); "
        "thespian: 3 Thespian node processes, c killed and restarted; "
        "network: the same with 3 Pykka node processes over TCP",
    )
    parser.add_argument("--plain", action="store_true", help="print snapshots, no live screen")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error("--duration must be > 0 seconds")
    if args.adapter != "pykka" and args.duration < PROCESS_MIN_DURATION:
        parser.error(
            f"--duration must be >= {PROCESS_MIN_DURATION:g} seconds with --adapter {args.adapter} "
            f"(node c's process is killed, seen leaving, restarted and rejoins), "
            f"got {args.duration:g}"
        )
    console = Console()
    try:
        if args.adapter == "pykka":
            return run_pykka(args, console)
        from .demo_processes import run_processes

        return run_processes(args, console)
    except KeyboardInterrupt:
        console.print("interrupted: every node was stopped")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
