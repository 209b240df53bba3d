"""A process the crash tests SIGKILL while it saves (see test_persistence_crash.py).

Usage: ``python _crash_child.py KIND PATH INCARNATION``, KIND one of ``file``,
``sqlite``, ``sqlite-delta`` or ``incarnation``.

It loads what PATH holds (or starts at age 0 of INCARNATION), prints
``START <incarnation> <age>``, then loops forever: mutate a counter, save it,
print ``ACK <age>``. A line is printed only after its save returned, so every
ACK is an acknowledged mutation. The ``incarnation`` kind prints
``ACK <incarnation>`` for every ``fresh()`` value instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from dstate_core import DeltaDistributedState, Generation, StateObject
from dstate_core._file_persistence import FilePersistence
from dstate_core._incarnation_store import IncarnationFile
from dstate_core._sqlite_persistence import SqlitePersistence

PAD = "x" * 2048  # big enough that a torn write would show


class CounterView(BaseModel):
    value: int = 0


class CounterDelta(BaseModel):
    value: int


class CrashCounter(DeltaDistributedState):
    """A counter whose value always equals its generation's age."""

    NAME = "crash_counter"
    View: ClassVar[type[BaseModel]] = CounterView
    Delta: ClassVar[type[BaseModel]] = CounterDelta
    value: int = 0
    pad: str = PAD

    def project_view(self) -> CounterView:
        return CounterView(value=self.value)

    @classmethod
    def project_delta(cls, change: Any) -> CounterDelta:
        return CounterDelta(value=change)

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> CounterView:
        return CounterView(value=delta.value)

    @classmethod
    def apply_state_delta(cls, state: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
        return {**state, "value": delta["value"]}


def open_backend(kind: str, path: Path) -> Any:
    """The backend under test, as the crash test and the child both open it."""
    if kind == "file":
        return FilePersistence(path, "crash_counter")
    if kind == "sqlite":
        return SqlitePersistence(path, state_type=CrashCounter, delta_log=False)
    if kind == "sqlite-delta":
        return SqlitePersistence(path, state_type=CrashCounter, checkpoint_every=7)
    raise ValueError(f"unknown backend kind {kind!r}")


def run_incarnations(path: Path) -> None:
    source = IncarnationFile(path.parent, path.name).source()
    print(f"START {source.last} 0", flush=True)
    while True:
        value = source.fresh(wall_ms=0)  # a clock stuck in the past: always last + 1
        print(f"ACK {value}", flush=True)


def run_states(kind: str, path: Path, incarnation: int) -> None:
    backend = open_backend(kind, path)
    loaded = backend.load()
    if loaded is None:
        state = CrashCounter()
        generation = Generation(incarnation, 0)
        created = time.time_ns() // 1_000_000
    else:
        state = CrashCounter.from_storage(loaded.value, loaded.storage_version)
        generation = loaded.generation
        created = loaded.created_time
        if state.value != generation.age:
            print(f"BAD value {state.value} at {generation}", flush=True)
            sys.exit(3)
    print(f"START {generation.incarnation} {generation.age}", flush=True)
    while True:
        new = state.model_copy(update={"value": state.value + 1})
        generation = generation.next()
        now = time.time_ns() // 1_000_000
        backend.save(
            StateObject(generation, CrashCounter.STORAGE_VERSION, new, created, now),
            CrashCounter.project_delta(new.value),
        )
        print(f"ACK {generation.age}", flush=True)
        state = new


def main(argv: list[str]) -> None:
    kind, path, incarnation = argv[1], Path(argv[2]), int(argv[3])
    if kind == "incarnation":
        run_incarnations(path)
    else:
        run_states(kind, path, incarnation)


if __name__ == "__main__":
    main(sys.argv)
