"""Cluster join convergence on the deterministic runtime: 10 and 50 nodes, time and memory.

Run: ``python -m bench.join``. Not a test.

``N`` nodes start together on ``dstate_core.testing.local_cluster`` with a
one-way network delay of ``uniform(0, 2 ms)`` per message (``set_faults(delay=...)``),
every node registers ``TestState``, and the cluster is advanced 1 ms at a
time until every node's view map holds all ``N`` nodes. Reported:

* wall seconds from creating the cluster to convergence (median of runs);
* virtual seconds from the first registration to convergence;
* cross-node messages sent for it;
* memory per node: ``tracemalloc`` traced memory after convergence minus
  before building the cluster, divided by ``N`` (a separate run, since
  tracing slows everything down).

Baseline: the 10-node cluster in the same run.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from dataclasses import dataclass

from bench._report import Table, Tick, fmt_bytes, fmt_seconds, no_tick, print_tables, ratio
from dstate_core import StateConfig, SyncStrategy
from dstate_core.testing import TestState, local_cluster

__all__ = ["STEPS", "main", "tables"]

SIZES = (10, 50)
REPEATS = 3
DELAY = 0.002  # max one-way delay per message (virtual seconds)
STEP = 0.001
#: Virtual seconds after which a join that has not converged is an error.
DEADLINE = 30.0
STEPS = len(SIZES) * 2


@dataclass
class Join:
    """One join of ``nodes`` nodes."""

    nodes: int
    wall_s: float
    virtual_s: float
    messages: int
    snapshots: int


def join(nodes: int) -> Join:
    """Start ``nodes`` nodes, register everywhere, advance until every view map is full."""
    ids = [f"n{i:03d}" for i in range(nodes)]
    config = StateConfig(sync_strategy=SyncStrategy.active_push())
    start = time.perf_counter()
    with local_cluster(ids) as cluster:
        cluster.set_faults(delay=DELAY)
        began = cluster.clock.now()
        shards = [cluster.node(n).register(TestState, config) for n in ids]
        while any(len(shard.snapshot()) < nodes for shard in shards):
            if cluster.clock.now() - began > DEADLINE:
                raise RuntimeError(f"{nodes} nodes did not converge in {DEADLINE} virtual s")
            cluster.advance(STEP)
        wall = time.perf_counter() - start
        snapshots = sum(shard.metrics().snapshots_sent for shard in shards)
        return Join(nodes, wall, cluster.clock.now() - began, cluster.messages_sent, snapshots)


def memory_per_node(nodes: int) -> float:
    """Traced bytes held per node once ``nodes`` nodes have converged."""
    ids = [f"n{i:03d}" for i in range(nodes)]
    config = StateConfig(sync_strategy=SyncStrategy.active_push())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with local_cluster(ids) as cluster:
            shards = [cluster.node(n).register(TestState, config) for n in ids]
            cluster.run_until_idle()
            if any(len(shard.snapshot()) < nodes for shard in shards):
                raise RuntimeError(f"{nodes} nodes did not converge")
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / nodes


def tables(tick: Tick = no_tick) -> list[Table]:
    """Measure each cluster size and return the table."""
    joins: dict[int, list[Join]] = {}
    memory: dict[int, float] = {}
    for nodes in SIZES:
        joins[nodes] = [join(nodes) for _ in range(REPEATS)]
        tick(f"join of {nodes} nodes")
        memory[nodes] = memory_per_node(nodes)
        tick(f"memory of {nodes} nodes")
    table = Table(
        "Join convergence, deterministic runtime",
        f"N nodes start together, each registers `TestState`, with a one-way delay of "
        f"uniform(0, {DELAY * 1000:g} ms) per message; the cluster advances {STEP * 1000:g} ms "
        "at a time until every node's view map holds all N nodes. Wall time is from creating "
        f"the cluster to convergence (median of {REPEATS}); memory per node is `tracemalloc` "
        f"growth over building and converging the cluster, / N. Baseline: {SIZES[0]} nodes.",
        [
            "nodes",
            "wall to converge",
            "vs baseline",
            "virtual time",
            "messages",
            "memory per node",
            "memory vs baseline",
        ],
    )
    base = SIZES[0]
    base_wall = statistics.median(j.wall_s for j in joins[base])
    for nodes in SIZES:
        wall = statistics.median(j.wall_s for j in joins[nodes])
        table.add(
            f"{nodes}",
            fmt_seconds(wall),
            ratio(wall, base_wall),
            fmt_seconds(statistics.median(j.virtual_s for j in joins[nodes])),
            f"{joins[nodes][0].messages:,}",
            fmt_bytes(memory[nodes]),
            ratio(memory[nodes], memory[base]),
        )
    table.notes.append(
        "Every node holds a view of every node, so the join sends O(N^2) messages and each "
        "node's memory grows with N."
    )
    last = joins[SIZES[-1]][0]
    links = last.nodes * (last.nodes - 1)
    table.notes.append(
        f"Per directed link the join sent {last.messages / links:.2f} messages, "
        f"{last.snapshots / links:.2f} of them snapshots: each node pushes its snapshot to "
        "every peer and, having no view of that peer yet, also pulls the peer's snapshot at "
        "once (a probe: request + reply), so on a loss-free network every snapshot "
        "arrives twice."
    )
    return [table]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
