"""Fast-path query cost against a plain dict read of the same snapshot (3 and 100 peers).

Run: ``python -m bench.query_fast_path``. Prints medians of repeated timing
runs and the ratio to the baseline measured in the same process. Not a test.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from typing import Any

from dstate_core import StateConfig, SyncStrategy
from dstate_core.testing import TestState, local_cluster

REPEATS = 7


def _median_ns(fn: Callable[[], Any], number: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=REPEATS)
    return statistics.median(runs) / number * 1e9


def measure(peers: int, number: int = 100_000) -> dict[str, float]:
    """Median ns per call of: a dict read, a query reading one view, a query scanning all."""
    ids = [f"n{i:03d}" for i in range(peers + 1)]
    config = StateConfig(sync_strategy=SyncStrategy.active_push())
    with local_cluster(ids) as cluster:
        shards = [cluster.node(node).register(TestState, config) for node in ids]
        cluster.run_until_idle()
        shard = shards[0]
        views = dict(shard.snapshot())
        target = ids[-1]

        def read_one(v: Any) -> int:
            return v[target].value.value  # type: ignore[no-any-return]

        def scan_all(v: Any) -> int:
            return min(x.value.value for x in v.values())  # type: ignore[no-any-return]

        return {
            "dict read (baseline)": _median_ns(lambda: views[target].value.value, number),
            "query, read one view": _median_ns(
                lambda: shard.query(read_one, max_staleness=60.0), number
            ),
            "dict scan of all views": _median_ns(lambda: scan_all(views), number // 10),
            "query, scan all views": _median_ns(
                lambda: shard.query(scan_all, max_staleness=60.0), number // 10
            ),
        }


def main() -> None:
    print("fast-path query vs dict read on the same snapshot (median ns per call)")
    for peers in (3, 100):
        results = measure(peers)
        base = results["dict read (baseline)"]
        scan = results["dict scan of all views"]
        print(f"\n{peers} peers")
        for name, ns in results.items():
            ref = scan if "scan" in name else base
            print(f"  {name:<26} {ns:9.0f} ns   x{ns / ref:5.2f}")


if __name__ == "__main__":
    main()
