"""A process the crash tests SIGKILL while it saves (see test_crash.py).

Usage: ``python _crash_child.py KIND PATH INCARNATION``, KIND one of ``file``,
``sqlite``, ``sqlite-delta`` or ``incarnation``.

It loads what PATH holds (or starts at age 0 of INCARNATION), prints
``START <incarnation> <age>``, then loops forever:
mutate a counter through a DStateNode (which saves it before publishing) and
print ``ACK <age>``. A line is printed only after its save returned, so every
ACK is an acknowledged mutation. The ``incarnation`` kind prints
``ACK <incarnation>`` for every ``fresh()`` value instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from dstate_core import DeltaDistributedState, StateConfig
from dstate_core.persistence import FilePersistence
from dstate_core.persistence._incarnations import IncarnationFile
from dstate_core.persistence._sqlite import SqlitePersistence
from dstate_core.testing import TestClock, local_cluster

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


def bump(state: CrashCounter) -> int:
    """A ``mutate_with_delta`` closure: the value follows the age."""
    state.value += 1
    return state.value


def run_states(kind: str, path: Path, incarnation: int) -> None:
    """Mutate through a real DStateNode, so the engine's persist-before-publish path runs.

    The node's clock starts at ``incarnation`` ms and there is no ``data_dir``,
    so a fresh start takes that same incarnation: a load that failed (the
    engine logs it and starts fresh) shows up only as ``START`` at age 0, which
    the crash test catches by comparing the age with the one it loaded.
    """
    backend = open_backend(kind, path)
    with local_cluster(["solo"], clock=TestClock(wall_ms=incarnation)) as cluster:
        shard = cluster.node("solo").register(CrashCounter, StateConfig(persistence=backend))
        own = shard.state
        if own.value.value != own.generation.age:
            print(f"BAD value {own.value.value} at {own.generation}", flush=True)
            sys.exit(3)
        print(f"START {own.generation.incarnation} {own.generation.age}", flush=True)
        while True:
            generation = shard.mutate_with_delta(bump)
            print(f"ACK {generation.age}", flush=True)


def main(argv: list[str]) -> None:
    kind, path, incarnation = argv[1], Path(argv[2]), int(argv[3])
    if kind == "incarnation":
        run_incarnations(path)
    else:
        run_states(kind, path, incarnation)


if __name__ == "__main__":
    main(sys.argv)
