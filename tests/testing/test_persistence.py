"""InMemoryPersistence and FailingPersistence."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core import DStateError, Generation, PersistError, StateObject, StatePersistence
from dstate_core.testing._persistence import FailingPersistence, InMemoryPersistence
from dstate_core.testing._states import TestDeltaDelta, TestDeltaState, TestDeltaView, TestState


def _obj(state: Any, age: int = 1, incarnation: int = 1_700_000_000_000) -> StateObject[Any]:
    return StateObject(
        generation=Generation(incarnation, age),
        storage_version=1,
        value=state,
        created_time=1_000,
        modified_time=1_000 + age,
    )


@pytest.fixture(params=[InMemoryPersistence, FailingPersistence])
def store(request: pytest.FixtureRequest) -> InMemoryPersistence:
    cls: type[InMemoryPersistence] = request.param
    return cls()


class TestInMemoryPersistence:
    def test_is_a_state_persistence(self, store: InMemoryPersistence) -> None:
        assert isinstance(store, StatePersistence)

    def test_empty_store(self, store: InMemoryPersistence) -> None:
        assert store.load() is None
        assert store.saved is None
        assert store.saved_model(TestState) is None
        assert store.save_count == 0
        assert store.deltas == []

    def test_save_then_load(self, store: InMemoryPersistence) -> None:
        state = TestState(value=3, label="x", items={"a": 1})
        store.save(_obj(state, age=4), None)
        loaded = store.load()
        assert loaded is not None
        assert loaded.generation == Generation(1_700_000_000_000, 4)
        assert loaded.storage_version == 1
        assert loaded.created_time == 1_000
        assert loaded.modified_time == 1_004
        assert loaded.value == {"value": 3, "label": "x", "items": {"a": 1}}
        assert TestState.from_storage(loaded.value, loaded.storage_version) == state
        assert store.saved_model(TestState) == state
        assert store.save_count == 1
        assert store.load_count == 1

    def test_last_save_wins(self, store: InMemoryPersistence) -> None:
        for age in range(1, 4):
            store.save(_obj(TestState(value=age), age=age), None)
        saved = store.saved
        assert saved is not None
        assert saved.generation.age == 3
        assert saved.value["value"] == 3
        assert store.save_count == 3

    def test_private_fields_are_stored(self, store: InMemoryPersistence) -> None:
        state = TestDeltaState(secret="S", history=[1])
        store.save(_obj(state), None)
        assert store.saved_model(TestDeltaState) == state

    def test_live_model_changes_do_not_leak_into_the_store(
        self, store: InMemoryPersistence
    ) -> None:
        state = TestState(value=1, items={"a": 1})
        store.save(_obj(state), None)
        state.value = 99
        state.items["a"] = 99
        state.items["b"] = 2
        assert store.saved_model(TestState) == TestState(value=1, items={"a": 1})

    def test_loaded_and_saved_values_are_copies(self, store: InMemoryPersistence) -> None:
        store.save(_obj(TestState(items={"a": 1})), None)
        loaded = store.load()
        saved = store.saved
        assert loaded is not None
        assert saved is not None
        loaded.value["items"]["a"] = 50
        saved.value["value"] = 50
        assert store.saved_model(TestState) == TestState(items={"a": 1})

    def test_plain_dict_value_is_accepted(self, store: InMemoryPersistence) -> None:
        value = {"value": 2, "label": "", "items": {}}
        store.save(_obj(value), None)
        value["value"] = 3
        assert store.saved_model(TestState) == TestState(value=2)

    def test_other_pydantic_model_is_dumped(self, store: InMemoryPersistence) -> None:
        store.save(_obj(TestDeltaView(counters={"a": 1}, total=1)), None)
        saved = store.saved
        assert saved is not None
        assert saved.value == {"counters": {"a": 1}, "total": 1}

    @pytest.mark.parametrize("value", [None, 5, [1, 2], "state"])
    def test_unstorable_value(self, store: InMemoryPersistence, value: Any) -> None:
        with pytest.raises(PersistError, match="cannot store"):
            store.save(_obj(value), None)
        assert store.saved is None
        assert store.save_count == 0

    def test_deltas_are_recorded_and_detached(self, store: InMemoryPersistence) -> None:
        state = TestDeltaState()
        delta = TestDeltaDelta(key="a", value=1, total=1)
        store.save(_obj(state, age=1), delta)
        store.save(_obj(state, age=2), None)
        delta.value = 100
        assert store.deltas == [TestDeltaDelta(key="a", value=1, total=1), None]
        store.deltas.clear()
        assert len(store.deltas) == 2

    def test_clear(self, store: InMemoryPersistence) -> None:
        store.save(_obj(TestState()), "delta")
        store.load()
        store.clear()
        assert store.load() is None
        assert store.saved is None
        assert store.save_count == 0
        assert store.load_count == 1
        assert store.deltas == []

    def test_concurrent_saves(self, store: InMemoryPersistence) -> None:
        def worker(offset: int) -> None:
            for age in range(1, 51):
                store.save(_obj(TestState(value=offset + age), age=age), age)

        threads = [threading.Thread(target=worker, args=(i * 1000,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.save_count == 200
        assert len(store.deltas) == 200
        assert store.saved_model(TestState) is not None

    def test_repr(self, store: InMemoryPersistence) -> None:
        assert "save_count=0" in repr(store)
        store.save(_obj(TestState(), age=2), None)
        assert "1700000000000:2" in repr(store)

    @given(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(),
        st.dictionaries(st.text(), st.integers(min_value=-(2**31), max_value=2**31)),
    )
    def test_round_trip(self, value: int, label: str, items: dict[str, int]) -> None:
        store = InMemoryPersistence()
        state = TestState(value=value, label=label, items=items)
        store.save(_obj(state), None)
        assert store.saved_model(TestState) == state


class TestFailingPersistence:
    def test_behaves_like_in_memory_when_not_failing(self) -> None:
        store = FailingPersistence()
        store.save(_obj(TestState(value=1)), None)
        assert store.saved_model(TestState) == TestState(value=1)
        assert store.failed_save_count == 0

    def test_fail_next_save_fails_once(self) -> None:
        store = FailingPersistence()
        store.save(_obj(TestState(value=1), age=1), "d1")
        store.fail_next_save()
        with pytest.raises(PersistError, match=r"FailingPersistence\.fail_next_save") as info:
            store.save(_obj(TestState(value=2), age=2), "d2")
        assert "injected save failure" in str(info.value)
        assert "1700000000000:2" in str(info.value)
        assert isinstance(info.value, DStateError)
        # nothing changed
        assert store.saved_model(TestState) == TestState(value=1)
        saved = store.saved
        assert saved is not None
        assert saved.generation.age == 1
        assert store.save_count == 1
        assert store.deltas == ["d1"]
        assert store.failed_save_count == 1
        # the next one succeeds
        store.save(_obj(TestState(value=3), age=2), "d3")
        assert store.saved_model(TestState) == TestState(value=3)
        assert store.deltas == ["d1", "d3"]

    def test_fail_next_save_times(self) -> None:
        store = FailingPersistence()
        store.fail_next_save(2)
        for _ in range(2):
            with pytest.raises(PersistError):
                store.save(_obj(TestState()), None)
        store.save(_obj(TestState()), None)
        assert store.save_count == 1
        assert store.failed_save_count == 2

    @pytest.mark.parametrize("times", [0, -1, True, 1.0])
    def test_bad_fail_next_save(self, times: Any) -> None:
        with pytest.raises(ValueError, match="times"):
            FailingPersistence().fail_next_save(times)

    def test_fail_saves_until_switched_off(self) -> None:
        store = FailingPersistence()
        store.save(_obj(TestState(value=1)), None)
        store.fail_saves(True)
        for age in range(2, 5):
            with pytest.raises(PersistError, match=r"FailingPersistence\.fail_saves"):
                store.save(_obj(TestState(value=age), age=age), None)
        assert store.saved_model(TestState) == TestState(value=1)
        assert store.save_count == 1
        assert store.failed_save_count == 3
        store.fail_saves(False)
        store.save(_obj(TestState(value=9), age=5), None)
        assert store.saved_model(TestState) == TestState(value=9)

    def test_one_shot_is_used_up_while_all_fail(self) -> None:
        store = FailingPersistence()
        store.fail_next_save()
        store.fail_saves(True)
        with pytest.raises(PersistError, match="fail_next_save"):
            store.save(_obj(TestState()), None)
        with pytest.raises(PersistError, match="fail_saves"):
            store.save(_obj(TestState()), None)
        store.fail_saves(False)
        store.save(_obj(TestState()), None)
        assert store.save_count == 1

    def test_fail_load(self) -> None:
        store = FailingPersistence()
        store.save(_obj(TestState(value=1)), None)
        store.fail_load(True)
        with pytest.raises(PersistError, match=r"FailingPersistence\.fail_load"):
            store.load()
        assert store.load_count == 1
        store.fail_load(False)
        loaded = store.load()
        assert loaded is not None
        assert loaded.value["value"] == 1

    def test_fail_load_with_nothing_stored(self) -> None:
        store = FailingPersistence()
        store.fail_load(True)
        with pytest.raises(PersistError, match="injected load failure"):
            store.load()

    def test_saves_still_work_while_loads_fail(self) -> None:
        store = FailingPersistence()
        store.fail_load(True)
        store.save(_obj(TestState(value=4)), None)
        assert store.saved_model(TestState) == TestState(value=4)

    @pytest.mark.parametrize("method", ["fail_saves", "fail_load"])
    @pytest.mark.parametrize("flag", [1, "yes", None])
    def test_switches_take_bools(self, method: str, flag: Any) -> None:
        with pytest.raises(TypeError, match=method):
            getattr(FailingPersistence(), method)(flag)

    def test_switches_default_to_on(self) -> None:
        store = FailingPersistence()
        store.fail_saves()
        store.fail_load()
        with pytest.raises(PersistError):
            store.save(_obj(TestState()), None)
        with pytest.raises(PersistError):
            store.load()

    def test_clear_switches_failures_off(self) -> None:
        store = FailingPersistence()
        store.fail_next_save()
        store.fail_saves(True)
        store.fail_load(True)
        store.clear()
        store.save(_obj(TestState()), None)
        assert store.load() is not None
        assert store.failed_save_count == 0
