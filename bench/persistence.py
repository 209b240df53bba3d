"""Persistence cost: saves/s and save latency per backend, beside a bare write+fsync.

Run with ``python -m bench.persistence`` (``--quick`` for fewer saves). For a
state of about 1 KB and 100 KB it times ``save()`` of

* ``FilePersistence``: temp file, fsync, rename, fsync the directory;
* ``SqlitePersistence`` writing a full checkpoint every save (``delta_log=False``);
* ``SqlitePersistence`` with the delta log (a small delta per save, a
  checkpoint every 100),

and, in the same run and directory, the floor each one pays:

* ``bare write+fsync``: ``pwrite`` + ``fsync`` of a record's worth of bytes
  into an open file;
* ``bare atomic replace``: what ``FilePersistence`` must do at least (temp
  file, write, fsync, rename, directory fsync) without encoding.

"cost x bare" is the mean save time over the mean bare write+fsync of the
same size (saves/s is its inverse). p99 is interpolated between ranks (see
:func:`percentile`). Each timed save
includes the state's ``to_storage()`` and msgpack encoding, as in a mutation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from dstate_core import DeltaDistributedState, Generation, StateObject
from dstate_core.persistence import FilePersistence
from dstate_core.persistence._sqlite import SqlitePersistence

INCARNATION = 1_700_000_000_000
#: Saves per record size with ``--quick`` (and in ``python -m bench``): enough
#: that p99 is not just the slowest save.
QUICK_SAVES = {1_000: 200, 100_000: 100}


class BenchView(BaseModel):
    counter: int = 0


class BenchDelta(BaseModel):
    counter: int


class BenchState(DeltaDistributedState):
    """A counter plus ``blob`` padding that sets the state's size."""

    NAME = "bench"
    View: ClassVar[type[BaseModel]] = BenchView
    Delta: ClassVar[type[BaseModel]] = BenchDelta
    counter: int = 0
    blob: list[str] = []

    def project_view(self) -> BenchView:
        return BenchView(counter=self.counter)

    @classmethod
    def project_delta(cls, change: Any) -> BenchDelta:
        return BenchDelta(counter=change)

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> BenchView:
        return BenchView(counter=delta.counter)

    @classmethod
    def apply_state_delta(cls, state: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
        return {**state, "counter": delta["counter"]}


def make_state(size: int) -> BenchState:
    """A state whose stored form is about ``size`` bytes (64-byte strings)."""
    return BenchState(blob=[f"{i:08d}" + "x" * 56 for i in range(max(1, size // 66))])


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile, interpolated linearly between the closest ranks.

    The same as ``statistics.quantiles(samples, n=100, method="inclusive")``
    at ``fraction=k/100``: with 100 samples p99 lies between the two slowest,
    so it is not simply the maximum.
    """
    if not samples:
        raise ValueError("percentile() needs at least one sample")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    ordered = sorted(samples)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timed(run: Callable[[int], None], count: int, warmup: int = 5) -> list[float]:
    """Seconds per call of ``run(i)`` for ``count`` calls after a warm-up."""
    for i in range(warmup):
        run(i)
    samples = []
    for i in range(warmup, warmup + count):
        start = time.perf_counter()
        run(i)
        samples.append(time.perf_counter() - start)
    return samples


def bare_fsync(directory: Path, size: int) -> Callable[[int], None]:
    fd = os.open(directory / "bare.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    data = b"\x5a" * size

    def run(_: int) -> None:
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    return run


def bare_atomic(directory: Path, size: int) -> Callable[[int], None]:
    data = b"\x5a" * size
    target = directory / "atomic.bin"
    temp = directory / "atomic.bin.tmp"

    def run(_: int) -> None:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(temp, target)
        dfd = os.open(directory, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)

    return run


def backend_saves(backend: Any, state: BenchState, with_delta: bool) -> Callable[[int], None]:
    states = [state.model_copy(update={"counter": i}) for i in range(2)]

    def run(i: int) -> None:
        value = states[i % 2]
        delta = BenchDelta(counter=i) if with_delta else None
        backend.save(
            StateObject(Generation(INCARNATION, i + 1), 1, value, INCARNATION, INCARNATION + i),
            delta,
        )

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer saves per measurement")
    parser.add_argument("--dir", default=None, help="where to write (default: the temp dir)")
    args = parser.parse_args(argv)
    counts = QUICK_SAVES if args.quick else {1_000: 1000, 100_000: 300}
    print(
        f"{'record':>7} {'backend':<28} {'saves/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cost x bare':>11}"
    )
    for size, count in counts.items():
        state = make_state(size)
        with tempfile.TemporaryDirectory(prefix="dstate-bench-", dir=args.dir) as raw:
            directory = Path(raw)
            probe = FilePersistence(directory / "probe.rec")
            probe.save(StateObject(Generation(INCARNATION, 1), 1, state, 0, 0), None)
            record_size = probe.path.stat().st_size
            sqlite_full = SqlitePersistence(directory / "full.db", delta_log=False)
            sqlite_delta = SqlitePersistence(directory / "delta.db", state_type=BenchState)
            cases: list[tuple[str, Callable[[int], None]]] = [
                ("bare write+fsync", bare_fsync(directory, record_size)),
                ("bare atomic replace", bare_atomic(directory, record_size)),
                ("FilePersistence", backend_saves(probe, state, False)),
                ("Sqlite full checkpoint", backend_saves(sqlite_full, state, False)),
                ("Sqlite delta log (ckpt/100)", backend_saves(sqlite_delta, state, True)),
            ]
            base_mean = 0.0
            for name, run in cases:
                samples = timed(run, count)
                mean = statistics.fmean(samples)
                base_mean = base_mean or mean
                print(
                    f"{record_size / 1000:>5.0f}KB {name:<28} {1 / mean:>9.0f} "
                    f"{statistics.median(samples) * 1e3:>8.3f} "
                    f"{percentile(samples, 0.99) * 1e3:>8.3f} {mean / base_mean:>11.1f}"
                )
            sqlite_full.close()
            sqlite_delta.close()


if __name__ == "__main__":
    main()
