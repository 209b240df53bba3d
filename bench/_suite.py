"""The benchmark list behind ``python -m bench``, and tables for the older scripts.

``bench.query_fast_path`` and ``bench.persistence`` print their own text; the
two functions here run the same measurements (their ``measure``, timing and
backend helpers) and return :class:`~bench._report.Table` rows instead.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import (
    batches,
    change_feed,
    delta_bytes,
    hot_path,
    join,
    membership_traffic,
    mutation_cost,
    mutation_throughput,
    network_processes,
    node_memory,
    persistence,
    thespian_processes,
    validation_cost,
)
from bench._report import Table, Tick, fmt_bytes, fmt_rate, fmt_seconds, ratio

__all__ = ["BENCHMARKS", "Benchmark", "persistence_tables", "query_tables"]

QUERY_PEERS = (3, 100)
#: Saves per backend and record size (``bench.persistence --quick``).
PERSISTENCE_SAVES = persistence.QUICK_SAVES


@dataclass(frozen=True)
class Benchmark:
    """One entry of the suite: its module name, step count and table function."""

    name: str
    steps: int
    run: Callable[[Tick], list[Table]]


def query_tables(tick: Tick) -> list[Table]:
    """``bench.query_fast_path.measure`` at 3 and 100 peers, as one table."""
    from bench.query_fast_path import REPEATS, measure

    table = Table(
        "Fast-path query vs a dict read",
        "A query whose views are all fresh runs the projection in the caller's thread on the "
        "published snapshot: no message, no lock. Median ns per call over "
        f"{REPEATS} timing runs, deterministic cluster. Baselines, in the same run on the same "
        "snapshot: a plain dict read of one view (for `query, read one view`) and a dict scan "
        "of all views (for `query, scan all views`).",
        ["peers", "case", "median per call", "vs baseline"],
    )
    for peers in QUERY_PEERS:
        results = measure(peers)
        base = results["dict read (baseline)"]
        scan = results["dict scan of all views"]
        for name, seconds_ns in results.items():
            reference = scan if "scan" in name else base
            table.add(
                str(peers),
                name,
                fmt_seconds(seconds_ns * 1e-9),
                ratio(seconds_ns, reference),
            )
        tick(f"query fast path, {peers} peers")
    table.notes.append(
        "The fast-path overhead (query minus dict read) should not grow with the peer count."
    )
    return [table]


def persistence_tables(tick: Tick) -> list[Table]:
    """``bench.persistence`` (quick counts): save latency per backend beside bare fsync."""
    from bench import persistence as p
    from dstate_core import Generation, StateObject
    from dstate_core.persistence import FilePersistence
    from dstate_core.persistence._sqlite import SqlitePersistence

    table = Table(
        "Persistence: save latency per backend",
        "`save()` of a ~1 KB and a ~100 KB state (including `to_storage()` and msgpack "
        "encoding), in the system temp directory. Median over "
        + " / ".join(f"{n} saves ({fmt_bytes(s)})" for s, n in PERSISTENCE_SAVES.items())
        + "; p99 interpolated between ranks. Baseline: a bare `pwrite` + `fsync` of the "
        "same number of bytes in the same directory, same run.",
        ["record", "backend", "saves/s (median)", "p50", "p99", "vs bare write+fsync"],
    )
    for size, count in PERSISTENCE_SAVES.items():
        state = p.make_state(size)
        with tempfile.TemporaryDirectory(prefix="dstate-bench-") as raw:
            directory = Path(raw)
            probe = FilePersistence(directory / "probe.rec")
            probe.save(StateObject(Generation(p.INCARNATION, 1), 1, state, 0, 0), None)
            record = probe.path.stat().st_size
            sqlite_full = SqlitePersistence(directory / "full.db", delta_log=False)
            sqlite_delta = SqlitePersistence(directory / "delta.db", state_type=p.BenchState)
            try:
                cases: list[tuple[str, Callable[[int], None]]] = [
                    ("bare write+fsync (baseline)", p.bare_fsync(directory, record)),
                    ("bare atomic replace", p.bare_atomic(directory, record)),
                    ("`FilePersistence`", p.backend_saves(probe, state, False)),
                    (
                        "`SqlitePersistence`, full checkpoint",
                        p.backend_saves(sqlite_full, state, False),
                    ),
                    (
                        "`SqlitePersistence`, delta log (checkpoint every 100)",
                        p.backend_saves(sqlite_delta, state, True),
                    ),
                ]
                base = 0.0
                for name, run in cases:
                    samples = p.timed(run, count)
                    median = statistics.median(samples)
                    base = base or median
                    table.add(
                        fmt_bytes(record),
                        name,
                        fmt_rate(1 / median),
                        fmt_seconds(median),
                        fmt_seconds(p.percentile(samples, 0.99)),
                        ratio(median, base),
                    )
            finally:
                sqlite_full.close()
                sqlite_delta.close()
        tick(f"persistence, {fmt_bytes(record)}")
    table.notes.append(
        "fsync cost depends on the disk and file system under the temp directory; compare "
        "rows within one run, not across machines."
    )
    return [table]


BENCHMARKS: list[Benchmark] = [
    Benchmark("query_fast_path", len(QUERY_PEERS), query_tables),
    Benchmark("mutation_throughput", mutation_throughput.STEPS, mutation_throughput.tables),
    Benchmark("change_feed", change_feed.STEPS, change_feed.tables),
    Benchmark("delta_bytes", delta_bytes.STEPS, delta_bytes.tables),
    Benchmark("join", join.STEPS, join.tables),
    Benchmark("membership_traffic", membership_traffic.STEPS, membership_traffic.tables),
    Benchmark("hot_path", hot_path.STEPS, hot_path.tables),
    Benchmark("mutation_cost", mutation_cost.STEPS, mutation_cost.tables),
    Benchmark("validation_cost", validation_cost.STEPS, validation_cost.tables),
    Benchmark("persistence", len(PERSISTENCE_SAVES), persistence_tables),
    Benchmark("batches", batches.STEPS, batches.tables),
    Benchmark("node_memory", node_memory.STEPS, node_memory.tables),
    Benchmark("thespian_processes", thespian_processes.STEPS, thespian_processes.tables),
    Benchmark("network_processes", network_processes.STEPS, network_processes.tables),
]
