"""Replicated mutations/s on 3 nodes, per dstate runtime, beside PySyncObj (Raft) in the same run.

Run: ``python -m bench.mutation_throughput``. Not a test.

dstate side (``bench.pykka_cluster``'s measurements, nodes ``a``, ``b``, ``c``,
one ``TestState`` under active push, ``a`` mutating):

* deterministic runtime: ``mutate`` + ``run_until_idle`` in a loop;
* Pykka runtime: ``mutate`` in a loop, timed until both peers hold the last
  generation; then one mutation at a time for the visibility latency;
* Thespian runtime: only when ``dstate_thespian.local_cluster`` exists and works.

PySyncObj side: three ``SyncObj`` counters in this process on 127.0.0.1
(free ports), one ``@replicated`` increment, two configurations:

* default (``appendEntriesUseBatch=True``, PySyncObj's throughput setting):
  N async increments on the leader, timed until all three counters hold N;
* ``appendEntriesUseBatch=False`` (its latency setting): the same, and
  ``sync=True`` calls one at a time (commit on a majority, applied on the leader).

The guarantees differ: Raft orders every increment through one leader and
commits it on a majority; dstate has one writer per shard and pushes each
mutation to every peer with no consensus round. The PySyncObj rows show what
a replicated counter costs in Python on this machine, not the same contract.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from bench._report import (
    Table,
    Tick,
    fmt_rate,
    fmt_seconds,
    no_tick,
    print_tables,
    ratio,
    wait_until,
)
from bench.pykka_cluster import Result, measure_deterministic, measure_pykka

__all__ = ["STEPS", "main", "tables"]

ROUNDS = 5
MUTATIONS = 2000
LATENCY_SAMPLES = 200
THESPIAN_MUTATIONS = 500
THESPIAN_SAMPLES = 50
RAFT_INCREMENTS = 2000
RAFT_SYNC_SAMPLES = 200
#: sync=True with batched appends waits for the next append period (0.1 s): few samples.
RAFT_SYNC_SAMPLES_BATCHED = 10
#: Seconds a PySyncObj cluster may take to elect a leader, or to replicate a run.
RAFT_DEADLINE = 15.0

STEPS = 2 * ROUNDS + 1 + 2


@dataclass
class RaftResult:
    """One PySyncObj configuration's figures."""

    pipelined_per_s: list[float]
    sync_latencies_s: list[float]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _raft_counters(batched: bool) -> Iterator[list[Any]]:
    """Three replicated counters on loopback; always destroyed on the way out."""
    from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str]) -> None:
            conf = SyncObjConf(appendEntriesUseBatch=batched, dynamicMembershipChange=False)
            super().__init__(me, partners, conf=conf)
            self._count = 0

        @replicated  # type: ignore[untyped-decorator]
        def increment(self) -> int:
            self._count += 1
            return self._count

        def count(self) -> int:
            return self._count

    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(3)]
    counters: list[Any] = []
    try:
        for address in addresses:
            counters.append(Counter(address, [a for a in addresses if a != address]))
        yield counters
    finally:
        for counter in counters:
            counter.destroy_synchronous()


def _leader(counters: list[Any]) -> Any:
    deadline = time.monotonic() + RAFT_DEADLINE
    while time.monotonic() < deadline:
        leaders = [c for c in counters if c._isLeader()]
        if len(leaders) == 1 and all(c.isReady() for c in counters):
            return leaders[0]
        time.sleep(0.01)
    raise TimeoutError(f"PySyncObj elected no leader within {RAFT_DEADLINE} s")


def _wait_all(counters: list[Any], count: int) -> None:
    deadline = time.monotonic() + RAFT_DEADLINE
    while any(c.count() < count for c in counters):
        if time.monotonic() > deadline:
            counts = [c.count() for c in counters]
            raise TimeoutError(f"PySyncObj counters stuck at {counts}, expected {count}")
        time.sleep(0.0005)


def measure_raft(batched: bool, sync_samples: int, tick: Tick) -> RaftResult:
    """Pipelined increments/s (until all 3 hold the count) and sync=True call latencies."""
    result = RaftResult([], [])
    with _raft_counters(batched) as counters:
        leader = _leader(counters)
        for _ in range(50):  # warm-up
            leader.increment(sync=True, timeout=RAFT_DEADLINE)
        for _ in range(ROUNDS):
            base = leader.count()
            start = time.perf_counter()
            for _ in range(RAFT_INCREMENTS):
                leader.increment()
            _wait_all(counters, base + RAFT_INCREMENTS)
            result.pipelined_per_s.append(RAFT_INCREMENTS / (time.perf_counter() - start))
        for _ in range(sync_samples):
            start = time.perf_counter()
            leader.increment(sync=True, timeout=RAFT_DEADLINE)
            result.sync_latencies_s.append(time.perf_counter() - start)
    tick(f"PySyncObj batched={batched}")
    return result


class _Captured(logging.Handler):
    """Keeps PySyncObj's log records instead of printing them over the progress bar."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _raft_log() -> Iterator[_Captured]:
    logger = logging.getLogger("pysyncobj")
    handler = _Captured()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _thespian_cluster() -> tuple[Callable[..., Any] | None, str]:
    """``dstate_thespian.local_cluster`` if it exists, else ``None`` and why not."""
    try:
        import dstate_thespian
    except ImportError as exc:
        return None, f"dstate_thespian does not import ({exc})"
    factory = getattr(dstate_thespian, "local_cluster", None)
    if factory is None:
        return None, "dstate_thespian has no local_cluster yet"
    return factory, ""


def measure_thespian(factory: Callable[..., Any]) -> Result:
    """The Pykka figures on the Thespian cluster (fewer mutations: its hops are slower)."""
    from dstate_core import StateConfig, SyncStrategy
    from dstate_core.testing import TestState

    config = StateConfig(sync_strategy=SyncStrategy.active_push())
    increment = TestState.increment(1)
    with factory(["a", "b", "c"]) as cluster:
        shards = {n: cluster.node(n).register(TestState, config) for n in ("a", "b", "c")}
        _poll(lambda: all(len(s.snapshot()) == 3 for s in shards.values()), "join")
        writer = shards["a"]

        def delivered(generation: Any) -> Callable[[], bool]:
            return lambda: all(shards[p].snapshot()["a"].generation >= generation for p in "bc")

        start = time.perf_counter()
        for _ in range(THESPIAN_MUTATIONS):
            generation = writer.mutate(increment)
        looped = time.perf_counter()
        _poll(delivered(generation), "delivery")
        done = time.perf_counter()

        arrived = threading.Condition()
        ages: set[int] = set()

        def on_view(node_id: str, old: Any, new: Any) -> None:
            if node_id == "a" and new is not None:
                with arrived:
                    ages.add(new.generation.age)
                    arrived.notify_all()

        shards["b"].subscribe(on_view)
        latencies = []
        for _ in range(THESPIAN_SAMPLES):
            called = time.perf_counter()
            age = writer.mutate(increment).age
            with arrived:
                if not arrived.wait_for(lambda age=age: age in ages, 10.0):  # type: ignore[misc]
                    raise TimeoutError(f"generation age {age} never reached b")
            latencies.append(time.perf_counter() - called)
    return Result(
        THESPIAN_MUTATIONS / (looped - start), THESPIAN_MUTATIONS / (done - start), latencies
    )


def _poll(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    wait_until(predicate, what, timeout, 0.001)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def tables(tick: Tick = no_tick) -> list[Table]:
    """Measure every runtime and PySyncObj; return the throughput and latency tables."""
    det: list[Result] = []
    pykka: list[Result] = []
    for i in range(ROUNDS):  # alternate, so a noisy neighbour hits both alike
        det.append(measure_deterministic(MUTATIONS, LATENCY_SAMPLES))
        tick(f"deterministic round {i + 1}")
        pykka.append(measure_pykka(MUTATIONS, LATENCY_SAMPLES))
        tick(f"pykka round {i + 1}")
    factory, why_not = _thespian_cluster()
    thespian: list[Result] = []
    if factory is not None:
        try:
            thespian = [measure_thespian(factory) for _ in range(ROUNDS)]
        except Exception as exc:
            thespian = []
            why_not = f"{type(exc).__name__}: {exc}"
    tick("thespian")
    with _raft_log() as raft_log:
        fast = measure_raft(False, RAFT_SYNC_SAMPLES, tick)
        batched = measure_raft(True, RAFT_SYNC_SAMPLES_BATCHED, tick)

    version = metadata.version("pysyncobj")
    baseline = statistics.median(batched.pipelined_per_s)
    throughput = Table(
        "Replicated mutations/s, 3 nodes in one process",
        f"Mutations (increments) per second until all 3 nodes hold the last one; median of "
        f"{ROUNDS} runs of {MUTATIONS:,} each. Baseline: PySyncObj {version} (Raft) with its "
        "default configuration, replicating the same counter on 3 `SyncObj` instances on "
        "127.0.0.1 in the same run. Raft commits through a leader on a majority; dstate has "
        "one writer per shard and no consensus round, so this is a cost reference, not the "
        "same guarantee.",
        ["system", "how", "mutations/s", "vs PySyncObj"],
    )
    det_rate = statistics.median(r.delivered_per_s for r in det)
    throughput.add(
        "dstate, deterministic",
        "`mutate` + `run_until_idle` (both peers updated) per mutation",
        fmt_rate(det_rate),
        ratio(det_rate, baseline),
    )
    pykka_rate = statistics.median(r.delivered_per_s for r in pykka)
    throughput.add(
        "dstate, Pykka",
        "`mutate` loop on `a`, until `b` and `c` hold the last generation",
        fmt_rate(pykka_rate),
        ratio(pykka_rate, baseline),
    )
    calls = [r.mutate_calls_per_s for r in pykka if r.mutate_calls_per_s is not None]
    if calls:
        call_rate = statistics.median(calls)
        throughput.add(
            "dstate, Pykka",
            "`mutate` calls/s (local commit; replication still in flight)",
            fmt_rate(call_rate),
            ratio(call_rate, baseline),
        )
    if thespian:
        rate = statistics.median(r.delivered_per_s for r in thespian)
        throughput.add(
            "dstate, Thespian",
            f"{THESPIAN_MUTATIONS} `mutate` calls on `a`, until `b` and `c` hold the last one",
            fmt_rate(rate),
            ratio(rate, baseline),
        )
        rate = statistics.median(r.mutate_calls_per_s or 0.0 for r in thespian)
        throughput.add(
            "dstate, Thespian",
            "`mutate` calls/s (local commit; replication still in flight)",
            fmt_rate(rate),
            ratio(rate, baseline),
        )
        throughput.notes.append(
            "Thespian: `local_cluster` defaults to `multiprocTCPBase`, so every push crosses "
            "Thespian's gateway actors over TCP between processes; `mutate` itself returns as "
            "fast as on Pykka."
        )
    else:
        throughput.notes.append(f"thespian: not available ({why_not})")
    throughput.add(
        f"PySyncObj {version}, default (baseline)",
        f"{RAFT_INCREMENTS:,} async increments on the leader, until all 3 hold the count",
        fmt_rate(baseline),
        "x1.00",
    )
    fast_rate = statistics.median(fast.pipelined_per_s)
    throughput.add(
        f"PySyncObj {version}, `appendEntriesUseBatch=False`",
        f"{RAFT_INCREMENTS:,} async increments on the leader, until all 3 hold the count",
        fmt_rate(fast_rate),
        ratio(fast_rate, baseline),
    )

    if raft_log.records:
        first = raft_log.records[0].getMessage()
        throughput.notes.append(
            f"PySyncObj logged {len(raft_log.records)} error(s) during its runs, e.g. "
            f"`{first[:120]}`; every run still reached its count on all 3 nodes."
        )

    latency = Table(
        "Latency of one replicated mutation, 3 nodes",
        "One mutation at a time. dstate: from calling `mutate` on `a` until a `subscribe` "
        "callback on `b` sees the new generation (one notifier hop late). PySyncObj: one "
        "`sync=True` increment on the leader (committed on a majority and applied on the "
        "leader). Baseline: PySyncObj with `appendEntriesUseBatch=False`, its low-latency "
        "setting.",
        ["system", "samples", "p50", "p99", "p50 vs PySyncObj"],
    )
    base_p50 = _percentile(fast.sync_latencies_s, 50)
    rows: list[tuple[str, list[float]]] = [
        ("dstate, deterministic (in-thread, no network)", _pool(det)),
        ("dstate, Pykka", _pool(pykka)),
        *([("dstate, Thespian (`multiprocTCPBase`)", _pool(thespian))] if thespian else []),
        (f"PySyncObj {version}, `appendEntriesUseBatch=False` (baseline)", fast.sync_latencies_s),
        (f"PySyncObj {version}, default (batched appends)", batched.sync_latencies_s),
    ]
    for name, samples in rows:
        p50 = _percentile(samples, 50)
        latency.add(
            name,
            f"{len(samples):,}",
            fmt_seconds(p50),
            fmt_seconds(_percentile(samples, 99)),
            ratio(p50, base_p50),
        )
    return [throughput, latency]


def _pool(results: list[Result]) -> list[float]:
    return [x for r in results for x in r.latencies_s]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
