"""A step-by-step walkthrough: a 3-node cluster replicating each node's load.

Every node publishes a ``NodeResource`` (CPU, memory) and decides locally
where to route the next job (the least-loaded node). After each step the demo
prints, per node, its routing choice and its view of every node: load,
generation and how stale the view is. The cluster is the deterministic one
from ``dstate_core.testing``: a virtual clock and a simulated network, so the
run is the same every time.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from dstate_core import StalePeerError, StateConfig, StateViewObject, SyncStrategy
from dstate_core.testing import DeterministicCluster, local_cluster

from .node_resource import NodeResource, least_loaded

NODES = ("a", "b", "c")


def _row(node: str, views: Mapping[str, StateViewObject[Any]], now: float, route: str) -> str:
    cells = []
    for owner in NODES:
        view = views.get(owner)
        if view is None:
            cells.append(f"{owner}: ---".ljust(30))
            continue
        load = view.value
        stale = "now" if owner == node else f"{now - view.synced_at:4.1f}s"
        pending = "*" if view.pending_remote_generation else " "
        cells.append(
            f"{owner}: {load.cpu_pct:5.1f}% {load.mem_used_mb:5d}MB g{view.generation.age:<2}"
            f"{pending}{stale:>5}"
        )
    return f"  {node}  -> {route:<3} | " + " | ".join(cells)


def show(cluster: DeterministicCluster, title: str, max_staleness: float) -> None:
    """Print every node's routing choice and view table."""
    now = cluster.clock.now()
    print(f"\n[t={now:5.1f}s] {title}")
    print("  node route | views (cpu, memory, generation, staleness; * = change announced)")
    for node in cluster.node_ids:
        shard = cluster.node(node).lookup(NodeResource.NAME)
        try:
            route = shard.query(least_loaded, max_staleness=max_staleness)
        except StalePeerError:
            # A peer is unreachable: fall back to what this node already knows.
            route = shard.query(least_loaded, max_staleness=float("inf")) + "!"
        print(_row(node, shard.snapshot(), cluster.clock.now(), route))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="simulated network seed")
    args = parser.parse_args(argv)
    strategy = SyncStrategy.feed_with_periodic_sync(2.0)
    config = StateConfig(sync_strategy=strategy, pull_timeout=0.5)
    print("dstate demo: 3 nodes replicate their load (change feed + lazy pull, full sync every 2s)")
    print("each node routes to the least-loaded node using only local memory ('!' = stale views)")
    with local_cluster(list(NODES), seed=args.seed, failure_timeout=3.0) as cluster:
        shards = {node: cluster.node(node).register(NodeResource, config) for node in NODES}
        cluster.run_until_idle()
        show(cluster, "cluster formed: every node holds every node's (idle) view", 5.0)

        loads = {"a": (70.0, 3000), "b": (20.0, 1000), "c": (45.0, 2000)}
        for node, (cpu, mem) in loads.items():
            shards[node].mutate_with_delta(NodeResource.set_load(cpu, mem))
        show(cluster, "loads published locally; peers not told yet", float("inf"))
        cluster.advance(1.0)
        show(cluster, "the change feed announced them; queries pull what is pending", 5.0)

        shards["b"].mutate_with_delta(NodeResource.set_load(20.0, 8000))
        cluster.run_until_idle()
        show(cluster, "b's memory jumped by 7 GB: pushed IMMEDIATELY, no pull needed", 5.0)

        shards["b"].mutate_with_delta(NodeResource.set_load(21.0, 8000))
        cluster.advance(0.5)
        show(cluster, "b's CPU wiggled by 1 point: SUPPRESSED, nothing sent", 5.0)

        cluster.partition(["c"], ["a", "b"])
        shards["c"].mutate_with_delta(NodeResource.set_load(5.0, 500))
        cluster.advance(4.0)
        show(cluster, "c is partitioned away and became idle; a and b cannot see it", 1.0)

        cluster.heal()
        cluster.advance(2.0)
        show(cluster, "partition healed: the periodic full sync converges everyone", 5.0)
        print("\nEvery node agrees on where to route, from local memory.")


if __name__ == "__main__":
    main()
