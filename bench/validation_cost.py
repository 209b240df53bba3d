"""What "valid commits only" costs: checking a mutation's result against its model.

Run: ``python -m bench.validation_cost``. Not a test.

Before a mutation is committed, every field that differs from the committed
state is validated (``dstate_core.model._validate.validate_changes``); in a
list or dict of models, only the changed elements. Timed here on its own, on
a copy already mutated, for a small state and for a large one (a 1,000-entry
``dict[str, int]`` and a 200-model list), against validating the whole state
(``model_validate`` of its dump) in the same run: what checking without
knowing what changed would cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from bench._report import Table, Tick, fmt_seconds, no_tick, print_tables, ratio
from dstate_core import DistributedState
from dstate_core.model._copy import copy_model
from dstate_core.model._validate import validate_changes

__all__ = ["STEPS", "main", "tables"]

#: Mutated copies validated per case (each copy is validated once).
COPIES = 300


class Crew(BaseModel):
    """One element of the large state's list."""

    rank: int = 0
    name: str = ""


class SmallState(DistributedState):
    NAME: ClassVar[str] = "bench_validate_small"
    count: int = 0
    load: float = 0.0


class LargeState(DistributedState):
    NAME: ClassVar[str] = "bench_validate_large"
    count: int = 0
    tags: dict[str, int] = Field(default_factory=lambda: {f"t{i}": i for i in range(1000)})
    crew: list[Crew] = Field(default_factory=lambda: [Crew(rank=i) for i in range(200)])


def _set_count(state: Any) -> None:
    state.count += 1


def _set_tag(state: Any) -> None:
    state.tags["t5"] = 6


def _set_crew_rank(state: Any) -> None:
    state.crew[57].rank = 1000


#: (row label, state, the change)
CASES: list[tuple[str, BaseModel, Callable[[Any], None]]] = [
    ("small state, one int", SmallState(), _set_count),
    ("large state, one int", LargeState(), _set_count),
    ("large state, one dict entry", LargeState(), _set_tag),
    ("large state, one field of one model in the list", LargeState(), _set_crew_rank),
]
STEPS = len(CASES)


def _median_each(fn: Callable[[Any], None], inputs: list[Any]) -> float:
    times = []
    for item in inputs:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def tables(tick: Tick = no_tick) -> list[Table]:
    """Time every case and return the table."""
    table = Table(
        "Valid commits only: validating a mutation's result",
        "Median time to validate one mutated copy: `validate_changes` checks the fields that "
        "differ from the committed state (in a list or dict of models, the changed elements). "
        f"Baseline, same run: validating the whole state (`model_validate` of its dump). "
        f"{COPIES} copies per case. The large state holds a 1,000-entry `dict[str, int]` and "
        "a list of 200 models.",
        ["change", "validate what changed", "whole state (baseline)", "vs baseline"],
    )
    for label, state, change in CASES:
        copies = []
        for _ in range(COPIES):
            copy = copy_model(state)
            change(copy)
            copies.append(copy)
        changed = _median_each(lambda c, s=state: validate_changes(c, s), copies)  # type: ignore[misc]
        whole = _median_each(lambda c: type(c).model_validate(c.model_dump()), copies)
        table.add(label, fmt_seconds(changed), fmt_seconds(whole), ratio(changed, whole))
        tick(label)
    table.notes.append(
        "Unchanged fields cost one comparison each (models by their fields, in C), so the "
        "large state pays for comparing its containers even when one int changed."
    )
    return [table]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
