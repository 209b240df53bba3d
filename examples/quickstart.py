"""The README's quick start as a runnable module: three nodes, one replicated counter.

Node ``a`` bumps its own counter; node ``b`` sums every node's counter from its
local views and prints ``1``. The cluster is the deterministic one from
``dstate_core.testing`` (a virtual clock and a simulated network), so the
``run_until_idle()`` calls are where messages move.

Run it: ``python -m examples.quickstart``

The code between the ``fmt`` markers is the README's block verbatim, with its
``with`` block inside ``main()``; ``tests/examples`` fails if they drift apart.
"""

# fmt: off
from typing import ClassVar

from dstate_core import DistributedState, StateConfig, SyncStrategy
from dstate_core.testing import local_cluster


class Counter(DistributedState):
    NAME: ClassVar[str] = "counter"      # unique across the cluster
    value: int = 0


def bump(state: Counter) -> None:        # mutate in place (or return a new state)
    state.value += 1


def main() -> None:
    """Run the quick start; prints 1."""
    with local_cluster(["a", "b", "c"]) as cluster:      # deterministic, in-process
        shards = {n: cluster.node(n).register(Counter, StateConfig(
            sync_strategy=SyncStrategy.active_push())) for n in cluster.node_ids}
        cluster.run_until_idle()                          # join exchange

        shards["a"].mutate(bump)                          # single writer: a owns its shard
        cluster.run_until_idle()                          # deliver the push

        total = shards["b"].query(                        # local read, staleness-bounded
            lambda views: sum(v.value.value for v in views.values()), max_staleness=2.0)
        print(total)                                      # 1
# fmt: on


if __name__ == "__main__":
    main()
