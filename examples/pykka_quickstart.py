"""The README's quick start on Pykka: three nodes on real threads, one replicated counter.

Node ``a`` bumps its own counter; node ``b`` sums every node's counter from its
local views and prints ``1``, as the deterministic quick start does. The
difference: here every node's actors run on their own threads and messages
move in real time, so instead of ``run_until_idle()`` the code waits (with a
deadline) for the join exchange and for ``a``'s push to reach ``b``.

Run it: ``python -m examples.pykka_quickstart``
"""

from __future__ import annotations

from typing import ClassVar

from dstate_core import DistributedState, StateConfig, SyncStrategy
from dstate_pykka import local_cluster

#: Seconds to wait for something that normally takes a millisecond.
DEADLINE = 5.0


class Counter(DistributedState):
    NAME: ClassVar[str] = "counter"  # unique across the cluster
    value: int = 0


def bump(state: Counter) -> None:  # mutate in place (or return a new state)
    state.value += 1


def main() -> None:
    """Run the quick start on Pykka threads; prints 1."""
    with local_cluster(["a", "b", "c"]) as cluster:  # one process, a thread per actor
        shards = {
            n: cluster.node(n).register(
                Counter, StateConfig(sync_strategy=SyncStrategy.active_push())
            )
            for n in cluster.node_ids
        }
        joined = cluster.wait_until(  # join exchange: every node sees every node
            lambda: all(len(s.snapshot()) == 3 for s in shards.values()), DEADLINE
        )
        if not joined:
            raise RuntimeError("the join exchange did not finish in time")

        generation = shards["a"].mutate(bump)  # single writer: a owns its shard
        pushed = cluster.wait_until(  # the push travels asynchronously
            lambda: shards["b"].snapshot()["a"].generation == generation, DEADLINE
        )
        if not pushed:
            raise RuntimeError("a's push did not reach b in time")

        total = shards["b"].query(  # local read, staleness-bounded
            lambda views: sum(v.value.value for v in views.values()), max_staleness=2.0
        )
        print(total)  # 1


if __name__ == "__main__":
    main()
