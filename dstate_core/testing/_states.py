"""Sample state types for tests and demos (``docs/state-model.md``).

* :class:`TestState` — a simple state (every update is a full snapshot).
* :class:`TestDeltaState` — a delta-aware state with private fields
  (``secret``, ``history``) that must never leave the node.
* :class:`UrgentDeltaState` — :class:`TestDeltaState` whose ``sync_urgency``
  follows the changed key's prefix.

Deltas carry absolute values (the counter's new value and the new total), so
applying one twice is harmless; gap detection is still the engine's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from ..model._state import DeltaDistributedState, DistributedState
from ..model._urgency import SyncUrgency

__all__ = [
    "TestDeltaChange",
    "TestDeltaDelta",
    "TestDeltaState",
    "TestDeltaView",
    "TestState",
    "UrgentDeltaState",
]


class TestState(DistributedState):
    """A simple replicated state: an int, a label and a dict of counts.

    ``NAME = "test_state"``. Use :meth:`increment` for a ready-made mutation.
    """

    __test__ = False  # not a pytest test class

    NAME = "test_state"

    value: int = 0
    label: str = ""
    items: dict[str, int] = Field(default_factory=dict)

    @staticmethod
    def increment(amount: int = 1) -> Callable[[TestState], None]:
        """A closure for ``shard.mutate(...)`` that adds ``amount`` to ``value`` in place."""

        def mutation(state: TestState) -> None:
            state.value += amount

        return mutation


class TestDeltaView(BaseModel):
    """The public view of :class:`TestDeltaState`: the counters and their total."""

    __test__ = False  # not a pytest test class

    counters: dict[str, int] = Field(default_factory=dict)
    total: int = 0


class TestDeltaDelta(BaseModel):
    """One change of :class:`TestDeltaState`: ``counters[key]`` is now ``value``.

    Attributes:
        key: the counter that changed.
        value: its new absolute value.
        total: the new absolute total.
    """

    __test__ = False  # not a pytest test class

    key: str
    value: int
    total: int


@dataclass(frozen=True, slots=True)
class TestDeltaChange:
    """What a :class:`TestDeltaState` mutation returns (the input of ``project_delta``)."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    key: str
    value: int
    total: int


class TestDeltaState(DeltaDistributedState):
    """A delta-aware state with private fields (``NAME = "test_delta_state"``).

    Public (in the view): ``counters`` and ``total``. Private (never sent):
    ``secret`` and ``history`` (every amount applied, oldest first). Use
    :meth:`bump` to build mutations for ``shard.mutate_with_delta(...)``.
    """

    __test__ = False  # not a pytest test class

    NAME = "test_delta_state"
    View: ClassVar[type[BaseModel]] = TestDeltaView
    Delta: ClassVar[type[BaseModel]] = TestDeltaDelta

    secret: str = "s3cr3t-token"
    history: list[int] = Field(default_factory=list)
    counters: dict[str, int] = Field(default_factory=dict)
    total: int = 0

    @staticmethod
    def bump(key: str, amount: int = 1) -> Callable[[TestDeltaState], TestDeltaChange]:
        """A closure for ``shard.mutate_with_delta(...)``: add ``amount`` to ``counters[key]``.

        The closure mutates the state in place (counter, ``total`` and
        ``history``) and returns the :class:`TestDeltaChange`.
        """

        def mutation(state: TestDeltaState) -> TestDeltaChange:
            state.counters[key] = state.counters.get(key, 0) + amount
            state.total += amount
            state.history.append(amount)
            return TestDeltaChange(key, state.counters[key], state.total)

        return mutation

    def project_view(self) -> TestDeltaView:
        """The counters and total; ``secret`` and ``history`` stay private."""
        return TestDeltaView(counters=dict(self.counters), total=self.total)

    @classmethod
    def project_delta(cls, change: Any) -> TestDeltaDelta:
        """The delta for ``change``: a :class:`TestDeltaChange` or a ``(key, value, total)``."""
        if isinstance(change, TestDeltaDelta):
            return change
        if isinstance(change, TestDeltaChange):
            return TestDeltaDelta(key=change.key, value=change.value, total=change.total)
        key, value, total = change
        return TestDeltaDelta(key=key, value=value, total=total)

    @classmethod
    def apply_delta(cls, view: TestDeltaView, delta: TestDeltaDelta) -> TestDeltaView:
        """A new view with ``delta`` applied; ``view`` itself is left untouched."""
        counters = dict(view.counters)
        counters[delta.key] = delta.value
        return view.model_copy(update={"counters": counters, "total": delta.total})


class UrgentDeltaState(TestDeltaState):
    """:class:`TestDeltaState` whose sync urgency follows the key's prefix.

    ``NAME = "urgent_delta_state"``. Keys starting ``"now:"`` are
    ``IMMEDIATE``, ``"late:"`` ``delayed(0.5)``, ``"quiet:"`` ``SUPPRESS``;
    any other key is ``DEFAULT``.
    """

    NAME = "urgent_delta_state"

    #: The delay used for ``"late:"`` keys, in seconds.
    LATE_DELAY: ClassVar[float] = 0.5

    @classmethod
    def sync_urgency(cls, old_view: Any, new_view: Any, delta: Any) -> SyncUrgency:
        """The urgency chosen by the prefix of ``delta.key``."""
        key: str = delta.key
        if key.startswith("now:"):
            return SyncUrgency.IMMEDIATE
        if key.startswith("late:"):
            return SyncUrgency.delayed(cls.LATE_DELAY)
        if key.startswith("quiet:"):
            return SyncUrgency.SUPPRESS
        return SyncUrgency.DEFAULT
