"""Generations, incarnations and the state envelopes."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core import Generation, StateObject, StateViewObject
from dstate_core.model._generation import IncarnationSource

naturals = st.integers(min_value=0, max_value=2**63)
generations = st.builds(Generation, naturals, naturals)


class TestGeneration:
    @given(generations, generations)
    def test_order_is_lexicographic(self, a: Generation, b: Generation) -> None:
        key_a, key_b = (a.incarnation, a.age), (b.incarnation, b.age)
        assert (a < b) == (key_a < key_b)
        assert (a <= b) == (key_a <= key_b)
        assert (a > b) == (key_a > key_b)
        assert (a == b) == (key_a == key_b)

    @given(st.lists(generations, max_size=20))
    def test_total_order(self, gens: list[Generation]) -> None:
        ordered = sorted(gens)
        for low, high in itertools.pairwise(ordered):
            assert low <= high
            assert (low < high) or (low == high)

    @given(naturals, naturals, naturals)
    def test_newer_incarnation_beats_any_age(self, inc: int, old_age: int, new_age: int) -> None:
        assert Generation(inc + 1, new_age) > Generation(inc, old_age)

    @given(generations)
    def test_next_adds_one_to_age(self, gen: Generation) -> None:
        nxt = gen.next()
        assert nxt == Generation(gen.incarnation, gen.age + 1)
        assert nxt > gen

    @given(generations)
    def test_hash_follows_equality(self, gen: Generation) -> None:
        copy = Generation(gen.incarnation, gen.age)
        assert copy == gen
        assert hash(copy) == hash(gen)
        assert len({gen, copy}) == 1

    def test_str(self) -> None:
        assert str(Generation(1_700_000_000_000, 3)) == "1700000000000:3"

    @pytest.mark.parametrize("bad", [-1, True, False, 1.0, "1", None])
    def test_bad_incarnation(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="incarnation"):
            Generation(bad, 0)

    @pytest.mark.parametrize("bad", [-1, True, False, 1.0, "1", None])
    def test_bad_age(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="age"):
            Generation(0, bad)

    def test_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            Generation(1, 0).age = 2  # type: ignore[misc]


class TestIncarnationSource:
    def test_fresh_uses_the_wall_clock(self) -> None:
        source = IncarnationSource()
        assert source.fresh(1_700_000_000_000) == 1_700_000_000_000
        assert source.last == 1_700_000_000_000

    def test_same_millisecond_still_increases(self) -> None:
        source = IncarnationSource()
        assert source.fresh(1000) == 1000
        assert source.fresh(1000) == 1001
        assert source.fresh(1000) == 1002

    def test_clock_stepping_back_uses_previous_plus_one(self) -> None:
        source = IncarnationSource()
        assert source.fresh(5000) == 5000
        assert source.fresh(3000) == 5001
        assert source.fresh(9000) == 9000

    @given(st.lists(st.integers(min_value=0, max_value=2**50), min_size=1, max_size=50))
    def test_strictly_increasing_whatever_the_clock(self, walls: list[int]) -> None:
        source = IncarnationSource()
        issued = [source.fresh(wall) for wall in walls]
        assert all(a < b for a, b in itertools.pairwise(issued))
        assert all(inc >= wall for inc, wall in zip(issued, walls, strict=True))

    def test_observe_moves_the_floor(self) -> None:
        source = IncarnationSource()
        source.observe(10_000)
        assert source.last == 10_000
        assert source.fresh(2_000) == 10_001

    def test_observe_never_lowers(self) -> None:
        source = IncarnationSource()
        source.fresh(10_000)
        source.observe(5)
        assert source.last == 10_000
        assert source.fresh(10_000) == 10_001

    @given(
        st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=10**6)), max_size=40)
    )
    def test_fresh_exceeds_everything_seen(self, ops: list[tuple[bool, int]]) -> None:
        source = IncarnationSource()
        seen = 0
        for is_fresh, value in ops:
            if is_fresh:
                inc = source.fresh(value)
                assert inc > seen
                assert inc >= value
                seen = inc
            else:
                source.observe(value)
                seen = max(seen, value)
            assert source.last == seen

    def test_floor(self) -> None:
        assert IncarnationSource(floor=50).fresh(10) == 51

    def test_thread_safe(self) -> None:
        source = IncarnationSource()
        issued: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            mine = [source.fresh(1000) for _ in range(200)]
            with lock:
                issued.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(issued)) == len(issued) == 1600


class TestEnvelopes:
    def test_state_object(self) -> None:
        obj = StateObject(Generation(1, 2), 1, {"value": 1}, created_time=10, modified_time=20)
        assert obj.generation == Generation(1, 2)
        assert obj.storage_version == 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.value = {}  # type: ignore[misc]

    def _view(self, pending: Generation | None = None) -> StateViewObject[str]:
        return StateViewObject(
            generation=Generation(1, 2),
            wire_version=1,
            value="view",
            created_time=10,
            modified_time=20,
            synced_at=3.0,
            pending_remote_generation=pending,
            source_node="n1",
        )

    def test_view_pending(self) -> None:
        assert not self._view().is_pending
        assert self._view(Generation(1, 3)).is_pending

    def test_view_staleness(self) -> None:
        assert self._view().staleness(3.0) == 0.0
        assert self._view().staleness(5.5) == 2.5

    def test_view_replace_keeps_other_fields(self) -> None:
        view = self._view(Generation(1, 3))
        cleared = dataclasses.replace(view, pending_remote_generation=None, synced_at=9.0)
        assert not cleared.is_pending
        assert cleared.generation == view.generation
        assert cleared.source_node == "n1"
