"""Exact or approximate? Two counters on one Pykka cluster, side by side, measured.

Node ``a`` bumps a counter as fast as it can while node ``b`` keeps reading it,
once with each strategy:

* **exact**: active push + SQLite persistence. Every mutation is saved
  (fsync) and then pushed to every peer at once: ``b`` is at most a few
  milliseconds behind, and each mutation costs one message per peer.
* **approx**: the change feed with lazy pull, no persistence. A mutation only
  notes "``a`` changed"; one batch per ``batch_interval`` tells the peers,
  and ``b`` pulls the value when a query finds its view pending. Mutations
  run much faster and cost almost no messages, but ``b`` lags by up to one
  batch interval.

For each it prints the throughput (mutations/s), how far ``b``'s answer is
behind ``a`` (in generations and in seconds, averaged over ``b``'s reads), the
messages sent between the nodes, and how long ``b`` took to catch up after the
last write. Real threads and a real clock: the numbers vary from run to run.

Run it: ``python -m examples.counters [--duration 2.0] [--batch-interval 0.2]``
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dstate_core import (
    ChangeFeedConfig,
    DistributedState,
    Shard,
    SqlitePersistence,
    StateConfig,
    StateViewObject,
    SyncStrategy,
)
from dstate_pykka import PykkaCluster, local_cluster


class ExactCounter(DistributedState):
    NAME: ClassVar[str] = "exact_counter"
    value: int = 0


class ApproxCounter(DistributedState):
    NAME: ClassVar[str] = "approx_counter"
    value: int = 0


def bump(state: ExactCounter | ApproxCounter) -> None:
    state.value += 1


def generation_of_a(views: Mapping[str, StateViewObject[Any]]) -> int:
    """A query projection: the generation of ``a``'s counter that this node has."""
    age: int = views["a"].generation.age
    return age


def value_of_a(views: Mapping[str, StateViewObject[Any]]) -> int:
    """A query projection: ``a``'s counter as this node sees it."""
    value: int = views["a"].value.value
    return value


@dataclass
class Result:
    """What one measured run of a counter gives."""

    mutations: int
    seconds: float
    lag_generations: list[int]
    lag_seconds: list[float]
    messages: int
    catch_up: float
    final_a: int
    final_b: int

    @property
    def rate(self) -> float:
        return self.mutations / self.seconds


def measure(
    cluster: PykkaCluster, writer: Shard[Any], reader: Shard[Any], seconds: float
) -> Result:
    """``writer`` bumps for ``seconds`` in a thread while ``reader`` samples how far behind."""
    committed_at: dict[int, float] = {}  # generation age -> when the writer's mutate returned
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            committed_at[writer.mutate(bump).age] = time.monotonic()

    messages_before = cluster.messages_sent
    first = writer.state.generation.age
    thread = threading.Thread(target=write, name="writer")
    start = time.monotonic()
    thread.start()
    lag_generations: list[int] = []
    lag_seconds: list[float] = []
    while (now := time.monotonic()) < start + seconds:
        seen = reader.query(
            generation_of_a, max_staleness=1.0
        )  # pulls if the feed announced a change
        latest = writer.state.generation.age
        lag_generations.append(max(0, latest - seen))
        # Stale since the first generation b has not seen was committed:
        lag_seconds.append(max(0.0, now - committed_at.get(seen + 1, now)))
        time.sleep(0.005)  # b reads about 200 times a second
    stop.set()
    thread.join()
    elapsed = time.monotonic() - start
    final_a = writer.state.value.value
    stopped = time.monotonic()
    caught_up = cluster.wait_until(
        lambda: reader.query(value_of_a, max_staleness=1.0) == final_a, 5.0
    )
    catch_up = time.monotonic() - stopped if caught_up else float("nan")
    return Result(
        mutations=writer.state.generation.age - first,
        seconds=elapsed,
        lag_generations=lag_generations,
        lag_seconds=lag_seconds,
        messages=cluster.messages_sent - messages_before,
        catch_up=catch_up,
        final_a=final_a,
        final_b=reader.snapshot()["a"].value.value,
    )


LABELS = (
    "mutations/s",
    "b behind a: generations avg / max",
    "b behind a: ms avg / max",
    "messages a<->b",
    "messages per mutation",
    "b caught up after the last write (ms)",
    "final value on a / on b",
)


def cells(r: Result) -> list[str]:
    """One column of the report, in the order of :data:`LABELS`."""

    def avg(values: list[int] | list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return [
        f"{r.rate:,.0f}",
        f"{avg(r.lag_generations):,.1f} / {max(r.lag_generations, default=0):,}",
        f"{avg(r.lag_seconds) * 1e3:,.1f} / {max(r.lag_seconds, default=0.0) * 1e3:,.1f}",
        f"{r.messages:,}",
        f"{r.messages / max(r.mutations, 1):.3f}",
        f"{r.catch_up * 1e3:,.1f}",
        f"{r.final_a:,} / {r.final_b:,}",
    ]


def report(exact: Result, approx: Result, batch_interval: float) -> None:
    """Print the two runs side by side."""
    print(f"{'':38}{'exact (push+SQLite)':>22}{f'approx (feed {batch_interval}s)':>22}")
    for label, left, right in zip(LABELS, cells(exact), cells(approx), strict=True):
        print(f"{label:38}{left:>22}{right:>22}")
    speedup = approx.rate / exact.rate
    share = approx.messages / max(approx.mutations, 1) / (exact.messages / max(exact.mutations, 1))
    print(
        f"\napprox ran {speedup:.1f}x the mutations/s at {share:.1%} of the messages per "
        "mutation;\nits reader trailed by up to one batch interval instead of milliseconds"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="exact vs approximate replicated counters")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds in all (split)")
    parser.add_argument("--batch-interval", type=float, default=0.2, help="change-feed batch (s)")
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be > 0")
    feed = ChangeFeedConfig(batch_interval=args.batch_interval)
    print(f"2 Pykka nodes: a bumps each counter for {args.duration / 2:.1f}s, b reads it")
    with (
        tempfile.TemporaryDirectory(prefix="dstate-counters-") as tmp,
        local_cluster(["a", "b"], change_feed=feed) as cluster,
    ):
        databases = {node: SqlitePersistence(Path(tmp) / f"{node}.sqlite") for node in "ab"}
        exact = {
            node: cluster.node(node).register(
                ExactCounter,
                StateConfig(sync_strategy=SyncStrategy.active_push(), persistence=databases[node]),
            )
            for node in "ab"
        }
        approx = {
            node: cluster.node(node).register(
                ApproxCounter, StateConfig(sync_strategy=SyncStrategy.feed_lazy_pull())
            )
            for node in "ab"
        }
        shards: list[Shard[Any]] = [*exact.values(), *approx.values()]
        cluster.wait_until(lambda: all(len(s.snapshot()) == 2 for s in shards), 5.0)
        exact_result = measure(cluster, exact["a"], exact["b"], args.duration / 2)
        approx_result = measure(cluster, approx["a"], approx["b"], args.duration / 2)
        report(exact_result, approx_result, args.batch_interval)
        for database in databases.values():
            database.close()
        with SqlitePersistence(Path(tmp) / "a.sqlite") as on_disk:  # a backend works on its own
            stored = on_disk.load()
        assert stored is not None
        value, age = stored.value["value"], stored.generation.age
        print(f"\nexact counter on disk (a.sqlite): value {value:,} at generation {age:,}")


if __name__ == "__main__":
    main()
