"""The sample states of the test kit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core import DeltaDistributedState, DistributedState, SyncUrgency
from dstate_core.model._state import validate_state_type
from dstate_core.testing._states import (
    TestDeltaChange,
    TestDeltaDelta,
    TestDeltaState,
    TestDeltaView,
    TestState,
    UrgentDeltaState,
)

keys = st.text(alphabet="abc:", min_size=1, max_size=4)
amounts = st.integers(min_value=-1000, max_value=1000)
bumps = st.lists(st.tuples(keys, amounts), max_size=20)


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (TestState, "test_state"),
        (TestDeltaState, "test_delta_state"),
        (UrgentDeltaState, "urgent_delta_state"),
    ],
)
def test_names_and_registration(cls: type[DistributedState], name: str) -> None:
    assert name == cls.NAME
    assert cls.WIRE_VERSION == cls.STORAGE_VERSION == 1
    validate_state_type(cls)


@pytest.mark.parametrize(
    "cls",
    [
        TestState,
        TestDeltaState,
        UrgentDeltaState,
        TestDeltaView,
        TestDeltaDelta,
        TestDeltaChange,
    ],
)
def test_not_collected_by_pytest(cls: type) -> None:
    assert getattr(cls, "__test__", True) is False


class TestTestState:
    def test_defaults(self) -> None:
        state = TestState()
        assert (state.value, state.label, state.items) == (0, "", {})
        assert set(TestState.model_fields) == {"value", "label", "items"}

    def test_items_default_is_not_shared(self) -> None:
        first, second = TestState(), TestState()
        first.items["a"] = 1
        assert second.items == {}

    def test_increment(self) -> None:
        state = TestState(value=2)
        assert TestState.increment()(state) is None
        TestState.increment(5)(state)
        assert state.value == 8

    def test_is_a_simple_state(self) -> None:
        assert not issubclass(TestState, DeltaDistributedState)


class TestTestDeltaState:
    def test_defaults(self) -> None:
        state = TestDeltaState()
        assert state.secret == "s3cr3t-token"
        assert state.history == []
        assert state.counters == {}
        assert state.total == 0
        assert TestDeltaState.View is TestDeltaView
        assert TestDeltaState.Delta is TestDeltaDelta

    def test_view_hides_private_fields(self) -> None:
        state = TestDeltaState(secret="x", history=[1], counters={"a": 1}, total=1)
        view = state.project_view()
        assert view == TestDeltaView(counters={"a": 1}, total=1)
        assert set(view.model_dump()) == {"counters", "total"}

    def test_view_is_detached_from_the_state(self) -> None:
        state = TestDeltaState(counters={"a": 1}, total=1)
        view = state.project_view()
        TestDeltaState.bump("a")(state)
        assert view.counters == {"a": 1}

    def test_bump_mutates_in_place_and_returns_the_change(self) -> None:
        state = TestDeltaState()
        change = TestDeltaState.bump("a", 3)(state)
        assert change == TestDeltaChange("a", 3, 3)
        change = TestDeltaState.bump("b")(state)
        assert change == TestDeltaChange("b", 1, 4)
        change = TestDeltaState.bump("a", -1)(state)
        assert change == TestDeltaChange("a", 2, 3)
        assert state.counters == {"a": 2, "b": 1}
        assert state.total == 3
        assert state.history == [3, 1, -1]

    @pytest.mark.parametrize(
        "change",
        [TestDeltaChange("k", 2, 5), ("k", 2, 5), TestDeltaDelta(key="k", value=2, total=5)],
    )
    def test_project_delta(self, change: object) -> None:
        assert TestDeltaState.project_delta(change) == TestDeltaDelta(key="k", value=2, total=5)

    def test_apply_delta_returns_a_new_view(self) -> None:
        view = TestDeltaView(counters={"a": 1}, total=1)
        new = TestDeltaState.apply_delta(view, TestDeltaDelta(key="b", value=2, total=3))
        assert new == TestDeltaView(counters={"a": 1, "b": 2}, total=3)
        assert view == TestDeltaView(counters={"a": 1}, total=1)
        assert new is not view
        assert new.counters is not view.counters

    @given(bumps)
    def test_deltas_replay_to_the_projected_view(self, steps: list[tuple[str, int]]) -> None:
        state = TestDeltaState()
        replica = state.project_view()
        for key, amount in steps:
            change = TestDeltaState.bump(key, amount)(state)
            replica = TestDeltaState.apply_delta(replica, TestDeltaState.project_delta(change))
        assert replica == state.project_view()
        assert state.total == sum(amount for _, amount in steps)
        assert state.history == [amount for _, amount in steps]

    @given(bumps)
    def test_applying_a_delta_twice_is_harmless(self, steps: list[tuple[str, int]]) -> None:
        state = TestDeltaState()
        replica = state.project_view()
        for key, amount in steps:
            delta = TestDeltaState.project_delta(TestDeltaState.bump(key, amount)(state))
            once = TestDeltaState.apply_delta(replica, delta)
            replica = TestDeltaState.apply_delta(once, delta)
            assert replica == once
        assert replica == state.project_view()

    @given(bumps)
    def test_wire_round_trip(self, steps: list[tuple[str, int]]) -> None:
        state = TestDeltaState()
        for key, amount in steps:
            delta = TestDeltaState.project_delta(TestDeltaState.bump(key, amount)(state))
            data = TestDeltaState.serialize_delta(delta)
            assert TestDeltaState.deserialize_delta(data, 1) == delta
        view = state.project_view()
        assert TestDeltaState.deserialize_view(TestDeltaState.serialize_view(view), 1) == view

    def test_default_urgency(self) -> None:
        assert not TestDeltaState.has_custom_urgency()
        delta = TestDeltaDelta(key="now:a", value=1, total=1)
        assert TestDeltaState.sync_urgency(None, None, delta) is SyncUrgency.DEFAULT


class TestUrgentDeltaState:
    @pytest.mark.parametrize(
        ("key", "urgency"),
        [
            ("now:cpu", SyncUrgency.IMMEDIATE),
            ("late:cpu", SyncUrgency.delayed(0.5)),
            ("quiet:cpu", SyncUrgency.SUPPRESS),
            ("cpu", SyncUrgency.DEFAULT),
            ("now", SyncUrgency.DEFAULT),
            ("x:now:", SyncUrgency.DEFAULT),
        ],
    )
    def test_urgency_follows_key_prefix(self, key: str, urgency: SyncUrgency) -> None:
        state = UrgentDeltaState()
        old = state.project_view()
        delta = UrgentDeltaState.project_delta(UrgentDeltaState.bump(key)(state))
        new = UrgentDeltaState.apply_delta(old, delta)
        assert UrgentDeltaState.sync_urgency(old, new, delta) == urgency

    def test_is_a_test_delta_state_with_custom_urgency(self) -> None:
        assert issubclass(UrgentDeltaState, TestDeltaState)
        assert UrgentDeltaState.has_custom_urgency()
        assert UrgentDeltaState.View is TestDeltaView

    def test_bump_works_on_the_subclass(self) -> None:
        state = UrgentDeltaState()
        assert UrgentDeltaState.bump("now:a", 2)(state) == TestDeltaChange("now:a", 2, 2)
        assert state.history == [2]
