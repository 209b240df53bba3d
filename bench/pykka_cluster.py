"""Mutation throughput and push visibility latency on a 3-node Pykka cluster.

Run: ``python -m bench.pykka_cluster [--mutations N] [--samples N] [--rounds N]``.
Not a test.

Both runtimes run the same 3-node cluster (nodes ``a``, ``b``, ``c``) with
one :class:`~dstate_core.testing.TestState` under active push, in this
process, in alternating rounds (so a noisy neighbour hits both alike):

* **Pykka** (``dstate_pykka.local_cluster``): real threads. ``a`` mutates
  from the main thread; pushes travel asynchronously.
* **deterministic** (``dstate_core.testing.local_cluster``): everything in
  the calling thread, driven in a loop of ``mutate`` + ``run_until_idle``.

Figures:

* *mutate calls/s*: back-to-back ``mutate`` calls on ``a``, timed until the
  loop ends (Pykka only: the deterministic runtime delivers nothing until it
  is driven).
* *mutations/s, delivered*: the same loop timed until the last generation is
  in both peers' view maps (for the deterministic runtime, each mutation is
  followed by ``run_until_idle``).
* *visibility latency*: one mutation at a time; a ``subscribe()`` callback
  on peer ``b`` records ``time.perf_counter()`` when ``a``'s new generation
  arrives; the latency is that minus the moment ``mutate`` was called (as
  a bare message's latency counts from before its send). The callback runs
  on the shard's notifier, one mailbox hop after the view is published, so
  this slightly overstates when a query could have seen it.

Throughputs are the median over rounds; latency percentiles pool every
round's samples.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dstate_core import StateConfig, StateViewObject, SyncStrategy
from dstate_core.testing import TestState
from dstate_core.testing import local_cluster as deterministic_cluster
from dstate_core.testing._cluster_base import LocalClusterBase
from dstate_pykka import local_cluster as pykka_cluster

NODES = ["a", "b", "c"]
CONFIG = StateConfig(sync_strategy=SyncStrategy.active_push())
WARMUP = 50
#: How long the Pykka cluster may take to show one generation on a peer.
VISIBILITY_DEADLINE = 10.0


@dataclass
class Result:
    """One runtime's figures."""

    mutate_calls_per_s: float | None
    delivered_per_s: float
    latencies_s: list[float]

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies (``q`` in 0..100)."""
        data = sorted(self.latencies_s)
        rank = max(1, min(len(data), round(q / 100 * len(data) + 0.5)))
        return data[rank - 1]


class _Arrivals:
    """A subscribe callback: when each generation age of ``source`` arrived (perf_counter)."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._cond = threading.Condition()
        self._at: dict[int, float] = {}

    def __call__(self, node_id: str, old: StateViewObject[Any] | None, new: Any) -> None:
        if node_id != self._source or new is None:
            return
        now = time.perf_counter()
        with self._cond:
            self._at[new.generation.age] = now
            self._cond.notify_all()

    def wait_for(self, age: int, timeout: float) -> float:
        """When ``age`` arrived; waits up to ``timeout`` seconds for it."""
        with self._cond:
            if not self._cond.wait_for(lambda: age in self._at, timeout):
                raise TimeoutError(f"generation age {age} never reached the peer")
            return self._at[age]

    def get(self, age: int) -> float | None:
        with self._cond:
            return self._at.get(age)


def _visible(shards: dict[str, Any], age: int) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            (view := shards[peer].snapshot().get("a")) is not None and view.generation.age >= age
            for peer in ("b", "c")
        )

    return check


def _joined(shards: dict[str, Any]) -> Callable[[], bool]:
    return lambda: all(sorted(s.snapshot()) == NODES for s in shards.values())


def _register(cluster: LocalClusterBase) -> dict[str, Any]:
    return {node: cluster.node(node).register(TestState, CONFIG) for node in NODES}


def measure_pykka(mutations: int, samples: int) -> Result:
    """Throughput and visibility latency on ``dstate_pykka.local_cluster``."""
    increment = TestState.increment(1)
    with pykka_cluster(NODES) as cluster:
        shards = _register(cluster)
        if not cluster.wait_until(_joined(shards), VISIBILITY_DEADLINE):
            raise RuntimeError("the Pykka cluster did not finish its join exchange")
        a = shards["a"]
        for _ in range(WARMUP):
            a.mutate(increment)

        start = time.perf_counter()
        for _ in range(mutations):
            generation = a.mutate(increment)
        looped = time.perf_counter()
        if not cluster.wait_until(_visible(shards, generation.age), VISIBILITY_DEADLINE):
            raise RuntimeError("the last mutation never reached both peers")
        delivered = time.perf_counter()

        arrivals = _Arrivals("a")
        shards["b"].subscribe(arrivals)
        latencies = []
        for i in range(WARMUP + samples):
            called = time.perf_counter()
            age = a.mutate(increment).age
            seen = arrivals.wait_for(age, VISIBILITY_DEADLINE)
            if i >= WARMUP:
                latencies.append(seen - called)
    return Result(mutations / (looped - start), mutations / (delivered - start), latencies)


def measure_deterministic(mutations: int, samples: int) -> Result:
    """The same figures on the deterministic runtime, driven by ``run_until_idle``."""
    increment = TestState.increment(1)
    with deterministic_cluster(NODES) as cluster:
        shards = _register(cluster)
        cluster.run_until_idle()
        if not _joined(shards)():
            raise RuntimeError("the deterministic cluster did not finish its join exchange")
        a = shards["a"]
        for _ in range(WARMUP):
            a.mutate(increment)
            cluster.run_until_idle()

        start = time.perf_counter()
        for _ in range(mutations):
            generation = a.mutate(increment)
            cluster.run_until_idle()
        delivered = time.perf_counter()
        if not _visible(shards, generation.age)():
            raise RuntimeError("the last mutation never reached both peers")

        arrivals = _Arrivals("a")
        shards["b"].subscribe(arrivals)
        latencies = []
        for i in range(WARMUP + samples):
            called = time.perf_counter()
            age = a.mutate(increment).age
            cluster.run_until_idle()
            seen = arrivals.get(age)
            if seen is None:
                raise RuntimeError(f"generation age {age} never reached the peer")
            if i >= WARMUP:
                latencies.append(seen - called)
    return Result(None, mutations / (delivered - start), latencies)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:10.1f} us"


def _ratio(pykka: float, det: float) -> str:
    return f"x{pykka / det:7.2f}" if det > 0 else "      -"


def report(pykka: Result, det: Result, mutations: int, samples: int, rounds: int) -> Iterator[str]:
    """The lines ``main`` prints."""
    yield (
        f"3-node cluster, active push, TestState: {rounds} rounds of {mutations} mutations, "
        f"{samples} latency samples per runtime "
        f"(Python {platform.python_version()}, {os.cpu_count()} CPUs)"
    )
    yield f"{'':34}{'pykka':>14}{'deterministic':>16}{'pykka/det':>11}"
    calls = pykka.mutate_calls_per_s or 0.0
    yield f"{'mutate calls/s (loop only)':34}{calls:14,.0f}{'-':>16}{'':>11}"
    yield (
        f"{'mutations/s, delivered to peers':34}{pykka.delivered_per_s:14,.0f}"
        f"{det.delivered_per_s:16,.0f}   {_ratio(pykka.delivered_per_s, det.delivered_per_s)}"
    )
    for q in (50, 99):
        p, d = pykka.percentile(q), det.percentile(q)
        yield f"{f'visibility latency p{q}':34}{_us(p):>14}{_us(d):>16}   {_ratio(p, d)}"


def combine(results: list[Result]) -> Result:
    """Median throughputs over rounds, every round's latency samples."""
    calls = [r.mutate_calls_per_s for r in results if r.mutate_calls_per_s is not None]
    return Result(
        statistics.median(calls) if calls else None,
        statistics.median(r.delivered_per_s for r in results),
        [x for r in results for x in r.latencies_s],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pykka_cluster",
        description="Mutation throughput and visibility latency: Pykka vs deterministic.",
    )
    parser.add_argument("--mutations", type=int, default=2000, help="throughput loop per round")
    parser.add_argument("--samples", type=int, default=300, help="latency samples per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per runtime")
    args = parser.parse_args(argv)
    if min(args.samples, args.mutations, args.rounds) < 1:
        parser.error("--mutations, --samples and --rounds must be >= 1")
    pykka: list[Result] = []
    det: list[Result] = []
    for _ in range(args.rounds):
        pykka.append(measure_pykka(args.mutations, args.samples))
        det.append(measure_deterministic(args.mutations, args.samples))
    lines = report(
        combine(pykka), combine(det), args.mutations, args.samples * args.rounds, args.rounds
    )
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
