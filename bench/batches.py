"""Batches: what pipelined mutations save and send, against blocking ones.

Run with ``python -m bench.batches``. A 3-node Pykka cluster in one process,
node ``a`` mutating. Two tables:

* **persisted mutations** (``TestState``): node ``a`` stores its shard with
  ``FilePersistence`` or ``SqlitePersistence`` in the system temp directory
  (every save fsyncs); saves are counted by a thin wrapper around the backend;
* **delta mutations** (``TestDeltaState``, no store): frames sent to the
  peers, counted by the in-process network.

Each runs the same mutations three ways:

* **blocking** (the baseline): ``mutate(fn)`` one after the other, so every
  mutation is its own save;
* **pipelined, a window of 32**: ``mutate(fn, block=False)`` with at most 32
  futures in flight (a writer that waits for its oldest one first);
* **pipelined, a burst**: ``mutate(fn, block=False)`` for all of them, then
  the last future.

Mutations that wait together in the shard's mailbox are saved as one batch.

Each row gives mutations/s until both peers hold the last generation and
the ratio to the blocking row of the same table.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bench._report import Table, Tick, fmt_rate, no_tick, print_tables, wait_until
from dstate_core import Generation, StateConfig
from dstate_core.persistence import FilePersistence
from dstate_core.persistence._sqlite import SqlitePersistence
from dstate_core.testing import TestDeltaState, TestState

__all__ = ["STEPS", "tables"]

#: Mutations per blocking run and per pipelined run; futures in flight in a window.
BLOCKING = 300
PIPELINED = 3_000
WINDOW = 32
MODES = ("blocking", "window", "burst")
BACKENDS = ("FilePersistence", "SqlitePersistence")
STEPS = len(BACKENDS) + 1
MODE_NAMES = {
    "blocking": "blocking (baseline)",
    "window": f"pipelined, {WINDOW} in flight",
    "burst": "pipelined, one burst",
}


class Run:
    """What one measured run gives: mutations/s, saves, frames to peers, mutations."""

    def __init__(self, rate: float, saves: int, frames: int, count: int) -> None:
        self.rate, self.saves, self.frames, self.count = rate, saves, frames, count


class CountingStore:
    """A backend whose saves are counted (the library sees the backend's own methods)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.saves = 0

    def save(self, state: Any, state_delta: Any) -> None:
        self.inner.save(state, state_delta)
        self.saves += 1

    def load(self) -> Any:
        return self.inner.load()


def _backend(name: str, directory: Path) -> Any:
    if name == "FilePersistence":
        return FilePersistence(directory / "a.rec", TestState.NAME)
    return SqlitePersistence(directory / "a.db", delta_log=False)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    wait_until(predicate, what, timeout, 0.0005)


def measure(backend: str | None, mode: str) -> Run:
    """One run in ``mode``: ``TestState`` stored by ``backend``, or ``TestDeltaState``
    with no store when ``backend`` is ``None``."""
    from dstate_pykka import local_cluster

    count = BLOCKING if mode == "blocking" else PIPELINED
    state: Any = TestState if backend is not None else TestDeltaState
    with (
        tempfile.TemporaryDirectory(prefix="dstate-bench-") as raw,
        local_cluster(["a", "b", "c"]) as cluster,
    ):
        inner = None if backend is None else _backend(backend, Path(raw))
        store = None if inner is None else CountingStore(inner)
        shards = {
            node: cluster.node(node).register(
                state, StateConfig(persistence=store) if node == "a" else StateConfig()
            )
            for node in ("a", "b", "c")
        }
        _wait(lambda: all("a" in shards[p].snapshot() for p in "bc"), "peers joined")
        seen = threading.Event()
        target: list[int] = []

        def on_view(node: str, old: Any, new: Any) -> None:
            if node == "a" and new is not None and target and new.generation.age >= target[0]:
                seen.set()

        shards["c"].subscribe(on_view)
        a = shards["a"]
        mutate: Callable[..., Any] = (
            (lambda **kw: a.mutate(TestState.increment(), **kw))
            if backend is not None
            else (lambda **kw: a.mutate_with_delta(TestDeltaState.bump("k", 1), **kw))
        )
        start_saves = 0 if store is None else store.saves
        start_frames = cluster.network.messages_sent
        start = time.perf_counter()
        if mode == "burst":
            futures = [mutate(block=False) for _ in range(count)]
            last = futures[-1].result(timeout=60).age
        elif mode == "window":
            flight: deque[Future[Generation]] = deque()
            for _ in range(count):
                if len(flight) == WINDOW:
                    flight.popleft().result(timeout=60)
                flight.append(mutate(block=False))
            last = flight[-1].result(timeout=60).age
        else:
            for _ in range(count):
                last = mutate().age
        target.append(last)
        if shards["c"].snapshot()["a"].generation.age < last:
            seen.wait(60)
        _wait(lambda: shards["b"].snapshot()["a"].generation.age >= last, "b caught up")
        elapsed = time.perf_counter() - start
        frames = cluster.network.messages_sent - start_frames
        saves = 0 if store is None else store.saves - start_saves
        if isinstance(inner, SqlitePersistence):
            inner.close()
    return Run(count / elapsed, saves, frames, count)


def tables(tick: Tick = no_tick) -> list[Table]:
    """Blocking vs pipelined: persisted mutations per backend, and delta mutations."""
    persisted = Table(
        "Persisted mutations: one save per mutation vs one per batch",
        f"3 Pykka nodes in one process, `TestState`; node `a` persists (every save fsyncs, "
        f"system temp directory). Blocking (baseline): {BLOCKING} `mutate(fn)` calls, one "
        f"save each. Pipelined: {PIPELINED} `mutate(fn, block=False)` calls, with at most "
        f"{WINDOW} futures in flight (window) or all at once (burst); mutations waiting "
        "together are one batch with one save. Rate until both peers hold the last generation.",
        ["backend", "mode", "mutations/s", "saves", "mutations per save", "vs blocking"],
    )
    for backend in BACKENDS:
        base = 0.0
        for mode in MODE_NAMES:
            run = measure(backend, mode)
            base = base or run.rate
            persisted.add(
                f"`{backend}`",
                MODE_NAMES[mode],
                fmt_rate(run.rate),
                f"{run.saves:,}",
                f"{run.count / max(run.saves, 1):.1f}",
                f"x{run.rate / base:.2f}",
            )
        tick(f"batches, {backend}")
    persisted.notes.append(
        "fsync cost depends on the disk under the temp directory; compare rows within one run."
    )
    deltas = Table(
        "Delta mutations: one frame per delta vs one per batch",
        "3 Pykka nodes in one process, `TestDeltaState` under active push, no store; the same "
        "modes and counts as above. Frames are what the in-process network carried to both "
        "peers; a batch's consecutive deltas leave as one frame per peer.",
        ["mode", "mutations/s", "frames to peers", "deltas per frame", "vs blocking"],
    )
    base = 0.0
    for mode in MODE_NAMES:
        run = measure(None, mode)
        base = base or run.rate
        deltas.add(
            MODE_NAMES[mode],
            fmt_rate(run.rate),
            f"{run.frames:,}",
            f"{2 * run.count / max(run.frames, 1):.1f}",
            f"x{run.rate / base:.2f}",
        )
    tick("batches, deltas")
    return [persisted, deltas]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
