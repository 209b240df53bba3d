"""Network traffic of the change feed against active push: 10 states x 100 mutations/s.

Run: ``python -m bench.change_feed``. Not a test.

On the deterministic cluster (3 nodes, virtual time), 10 ``DistributedState``
types are registered on every node, and every node mutates each of its 10
shards 100 times per virtual second (one mutation per state every 10 ms, with
``cluster.advance(0.01)`` between rounds) for ``SECONDS`` virtual seconds
after 1.5 warm-up seconds. The figure is ``cluster.messages_sent`` (and ``bytes_sent``) per directed
link (node to one peer) per virtual second, after the join exchange. Rows:

* ``active_push()`` (baseline): every mutation goes to every peer;
* ``feed_lazy_pull()`` with ``ChangeFeedConfig(batch_interval=1.0)``: one
  batch per second per peer for all 10 states, nothing else;
* the same, plus every node querying every state once per virtual second with
  ``max_staleness=60`` (pending views are pulled: request + reply per peer).

Wall time per row is how long this process took to simulate it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench._report import Table, Tick, fmt_bytes, fmt_rate, fmt_seconds, no_tick, print_tables
from bench._report import ratio as _ratio
from dstate_core import ChangeFeedConfig, DistributedState, StateConfig, SyncStrategy
from dstate_core.testing import local_cluster

__all__ = ["STEPS", "main", "tables"]

NODES = ["a", "b", "c"]
STATE_TYPES = 10
RATE = 100  # mutations per second per state per node
SECONDS = 10
#: Virtual seconds of load before counting starts. The half second keeps the counting
#: window off the feed's batch edges (a batch leaves ~1 s after the first notification).
WARMUP_SECONDS = 1.5
STEPS = 3


class FeedState(DistributedState):
    """A small counter; ``NAME`` is set on each generated subclass."""

    value: int = 0
    load: float = 0.0


def _state_types() -> list[type[FeedState]]:
    return [
        type(f"FeedState{i}", (FeedState,), {"NAME": f"bench_feed_{i}", "__module__": __name__})
        for i in range(STATE_TYPES)
    ]


def _bump(state: FeedState) -> None:
    state.value += 1
    state.load = (state.value % 100) / 100


def _total(views: Mapping[str, Any]) -> int:
    return sum(int(v.value.value) for v in views.values())


@dataclass
class Traffic:
    """Messages and bytes per directed link per virtual second, and the wall time taken."""

    messages: float
    bytes: float
    mutations: int
    wall_s: float


def measure(strategy: SyncStrategy, query_every_second: bool) -> Traffic:
    """Drive the load for ``SECONDS`` virtual seconds; return the traffic per link per second."""
    types = _state_types()
    config = StateConfig(sync_strategy=strategy)
    feed = ChangeFeedConfig(batch_interval=1.0)
    with local_cluster(NODES, change_feed=feed) as cluster:
        shards = [[cluster.node(n).register(t, config) for t in types] for n in NODES]
        cluster.run_until_idle()
        step = 1.0 / RATE
        warmup_ticks = round(WARMUP_SECONDS * RATE)
        sent = sent_bytes = mutations = 0
        start = 0.0
        for tick in range(warmup_ticks + SECONDS * RATE):
            if tick == warmup_ticks:  # steady state from here
                sent, sent_bytes = cluster.messages_sent, cluster.bytes_sent
                mutations = 0
                start = time.perf_counter()
            for node_shards in shards:
                for shard in node_shards:
                    shard.mutate(_bump)
                    mutations += 1
            cluster.advance(step)
            if query_every_second and (tick + 1) % RATE == 0:
                for node_shards in shards:
                    for shard in node_shards:
                        total = shard.query(_total, max_staleness=60.0)
                        if total < tick + 1:  # at least the own shard's count
                            raise RuntimeError(f"query saw too few mutations: {total}")
        wall = time.perf_counter() - start
        links = len(NODES) * (len(NODES) - 1)
        return Traffic(
            (cluster.messages_sent - sent) / links / SECONDS,
            (cluster.bytes_sent - sent_bytes) / links / SECONDS,
            mutations,
            wall,
        )


def tables(tick: Tick = no_tick) -> list[Table]:
    """Measure the three rows and return the table."""
    push = measure(SyncStrategy.active_push(), query_every_second=False)
    tick("active push")
    feed = measure(SyncStrategy.feed_lazy_pull(), query_every_second=False)
    tick("feed, no queries")
    feed_q = measure(SyncStrategy.feed_lazy_pull(), query_every_second=True)
    tick("feed + queries")
    table = Table(
        "Change feed vs active push: messages per peer per second",
        f"{len(NODES)} nodes on the deterministic cluster, {STATE_TYPES} state types, each "
        f"mutated {RATE} times per virtual second on every node, for {SECONDS} virtual "
        "seconds after the join exchange and 1.5 warm-up seconds. Messages and bytes sent "
        "by one node to one peer per virtual second (`cluster.messages_sent` / 6 links / "
        "seconds). Baseline: active push.",
        ["strategy", "msgs/peer/s", "bytes/peer/s", "msgs vs push", "wall per mutation"],
    )
    rows = [
        ("`active_push()` (baseline)", push),
        ("`feed_lazy_pull()`, `batch_interval=1.0`, no queries", feed),
        ("`feed_lazy_pull()`, every node queries every state 1/s", feed_q),
    ]
    for name, traffic in rows:
        table.add(
            name,
            fmt_rate(traffic.messages, ""),
            fmt_bytes(traffic.bytes),
            _ratio(traffic.messages, push.messages),
            fmt_seconds(traffic.wall_s / traffic.mutations),
        )
    table.notes.append(
        "With queries, each pending peer view is pulled once per query (a request and a "
        "reply), so the pull traffic follows the query rate, not the mutation rate."
    )
    return [table]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
