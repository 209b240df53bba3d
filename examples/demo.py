"""`make demo`: a live 3-node cluster replicating each node's load, on real actors.

Three nodes run in this process on the Pykka adapter (threads; everything that
crosses nodes is encoded bytes). Each publishes a ``NodeResource`` with a
simulated load and routes work to the least-loaded node from its local views.
The terminal shows, per node, its view of every node (load, generation,
staleness), the strategy in use and where it would route. Midway one node is
partitioned away for a few seconds, then healed. It ends by itself.

    python -m examples.demo [--duration 20] [--adapter pykka|thespian] [--plain]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dstate_core import ChangeFeedConfig, StateConfig, StateViewObject, SyncStrategy
from dstate_core._local_cluster import LocalClusterBase

from .node_resource import NodeResource, least_loaded

NODES = ("a", "b", "c")
STRATEGY = SyncStrategy.feed_with_periodic_sync(1.0)
STRATEGY_TEXT = "change feed (batch 0.2s) + lazy pull, full sync every 1s, pull on query"
ROUTE_STALENESS = 1.5


class LoadSimulator(threading.Thread):
    """Moves one node's load around at random and publishes it."""

    def __init__(self, shard: Any, seed: int, stop: threading.Event) -> None:
        super().__init__(name=f"load-{seed}", daemon=True)
        self._shard = shard
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
                self._shard.mutate_with_delta(NodeResource.set_load(round(self.cpu, 1), self.mem))
            except Exception:  # the node is shutting down
                return


def node_table(node: str, views: Mapping[str, StateViewObject[Any]], route: str) -> Table:
    """One node's view of the cluster."""
    now = time.monotonic()
    table = Table(title=f"node {node}  ->  routes to [bold]{route}[/]", title_justify="left")
    for column in ("node", "cpu", "memory", "generation", "staleness"):
        table.add_column(column, justify="right" if column != "node" else "left")
    for owner in NODES:
        view = views.get(owner)
        if view is None:
            table.add_row(owner, "-", "-", "-", Text("no view", style="red"))
            continue
        age = 0.0 if owner == node else now - view.synced_at
        style = "green" if age <= ROUTE_STALENESS else "red"
        mark = " *" if view.pending_remote_generation else ""
        table.add_row(
            owner + (" (self)" if owner == node else ""),
            f"{view.value.cpu_pct:5.1f}%",
            f"{view.value.mem_used_mb:6d} MB",
            f"{view.generation.age}{mark}",
            Text("local" if owner == node else f"{age:4.1f}s", style=style),
        )
    return table


def render(cluster: LocalClusterBase, phase: str, elapsed: float, duration: float) -> Group:
    """The whole screen: header plus one table per node."""
    tables = []
    for node in cluster.node_ids:
        shard = cluster.node(node).lookup(NodeResource.NAME)
        route = shard.query(least_loaded, max_staleness=ROUTE_STALENESS, on_stale="return")
        tables.append(node_table(node, shard.snapshot(), route))
    header = Text.assemble(
        ("dstate live demo", "bold"),
        f"   t={elapsed:4.1f}s / {duration:.0f}s   strategy: {STRATEGY_TEXT}\n",
        ("phase: ", "bold"),
        phase,
        "   (* = change announced by the feed, not pulled yet; red = stale)",
    )
    return Group(header, *tables)


@contextlib.contextmanager
def open_cluster(adapter: str) -> Iterator[LocalClusterBase]:
    """A 3-node cluster on the chosen adapter."""
    options: dict[str, Any] = {
        "change_feed": ChangeFeedConfig(batch_interval=0.2),
        "failure_timeout": 2.0,
    }
    if adapter == "pykka":
        from dstate_pykka import local_cluster
    else:
        from dstate_thespian import local_cluster  # type: ignore[attr-defined]
    with local_cluster(list(NODES), **options) as cluster:
        yield cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dstate live demo")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run")
    parser.add_argument("--adapter", choices=("pykka", "thespian"), default="pykka")
    parser.add_argument("--plain", action="store_true", help="print snapshots, no live screen")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be > 0 seconds")
    console = Console()
    partition_at, heal_at = args.duration * 0.35, args.duration * 0.6
    stop = threading.Event()
    config = StateConfig(sync_strategy=STRATEGY, pull_timeout=0.3, default_staleness=2.0)
    with open_cluster(args.adapter) as cluster:
        shards = {node: cluster.node(node).register(NodeResource, config) for node in NODES}
        loads = [LoadSimulator(shards[n], args.seed * 10 + i, stop) for i, n in enumerate(NODES)]
        for simulator in loads:
            simulator.start()
        start = time.monotonic()
        phase = "all nodes connected"
        partitioned = healed = False
        live = None if args.plain else Live(console=console, refresh_per_second=4)
        try:
            if live is not None:
                live.start()
            next_plain, printed_phase = 0.0, ""
            while (elapsed := time.monotonic() - start) < args.duration:
                if not partitioned and elapsed >= partition_at:
                    cluster.partition(["c"], ["a", "b"])  # type: ignore[attr-defined]
                    partitioned, phase = True, "c is partitioned away: its views go stale"
                if partitioned and not healed and elapsed >= heal_at:
                    cluster.heal()  # type: ignore[attr-defined]
                    healed, phase = True, "healed: the next full sync converges everyone"
                screen = render(cluster, phase, elapsed, args.duration)
                if live is not None:
                    live.update(screen)
                elif elapsed >= next_plain or phase != printed_phase:
                    console.print(screen)
                    printed_phase, next_plain = phase, elapsed + args.duration / 4
                time.sleep(0.25)
        finally:
            if live is not None:
                live.stop()
            stop.set()
            for simulator in loads:
                simulator.join(timeout=2.0)

        def health() -> dict[str, str]:
            return {node: cluster.node(node).health_check().status.name for node in NODES}

        deadline = time.monotonic() + 5.0  # let the last full sync land after the heal
        while set(health().values()) != {"HEALTHY"} and time.monotonic() < deadline:
            time.sleep(0.05)
        console.print(render(cluster, "finished", args.duration, args.duration))
        console.print(f"health: {health()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
