"""TestClock: the manual clock of the test kit."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core import Clock, SystemClock
from dstate_core.testing import TestClock

steps = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)


class TestTestClock:
    def test_starts_at_zero_and_default_wall_time(self) -> None:
        clock = TestClock()
        assert clock.now() == 0.0
        assert clock.wall_ms() == 1_700_000_000_000

    def test_is_a_clock(self) -> None:
        assert isinstance(TestClock(), Clock)
        assert not getattr(TestClock, "__test__", True)

    def test_advance_moves_both_clocks(self) -> None:
        clock = TestClock(wall_ms=1_000)
        clock.advance(1.5)
        assert clock.now() == 1.5
        assert clock.wall_ms() == 2_500
        clock.advance(0)
        assert clock.now() == 1.5

    @given(st.lists(steps, max_size=20))
    def test_advance_accumulates(self, amounts: list[float]) -> None:
        clock = TestClock(wall_ms=0)
        for amount in amounts:
            before = clock.now()
            clock.advance(amount)
            assert clock.now() >= before
        assert clock.now() == pytest.approx(sum(amounts))
        assert abs(clock.wall_ms() - sum(amounts) * 1000) <= 1

    def test_many_small_steps_stay_on_the_millisecond(self) -> None:
        clock = TestClock(wall_ms=0)
        for _ in range(10):
            clock.advance(0.1)
        assert clock.wall_ms() == 1_000

    @pytest.mark.parametrize("bad", [-0.001, -1, math.nan, math.inf, -math.inf, True, "1", None])
    def test_bad_advance(self, bad: Any) -> None:
        clock = TestClock()
        with pytest.raises(ValueError, match="advance"):
            clock.advance(bad)
        assert clock.now() == 0.0

    def test_set_jumps_forward(self) -> None:
        clock = TestClock(wall_ms=0)
        clock.set(10.0)
        assert clock.now() == 10.0
        assert clock.wall_ms() == 10_000
        clock.set(10.0)
        assert clock.now() == 10.0

    def test_set_never_goes_back(self) -> None:
        clock = TestClock()
        clock.advance(5)
        with pytest.raises(ValueError, match="back"):
            clock.set(4.0)
        assert clock.now() == 5.0

    @pytest.mark.parametrize("bad", [math.nan, math.inf, True, "5"])
    def test_bad_set(self, bad: Any) -> None:
        clock = TestClock()
        with pytest.raises(ValueError, match="set"):
            clock.set(bad)
        assert clock.now() == 0.0

    @pytest.mark.parametrize("bad", [-1, 1.5, True, "0", None])
    def test_bad_wall_ms(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="wall_ms"):
            TestClock(wall_ms=bad)

    def test_start_offsets_only_the_monotonic_clock(self) -> None:
        clock = TestClock(wall_ms=1_000, start=100.0)
        assert clock.now() == 100.0
        assert clock.wall_ms() == 1_000
        clock.advance(2)
        assert clock.now() == 102.0
        assert clock.wall_ms() == 3_000

    @pytest.mark.parametrize("bad", [math.nan, math.inf, "0", None])
    def test_bad_start(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="start"):
            TestClock(start=bad)

    def test_concurrent_advances_are_not_lost(self) -> None:
        clock = TestClock(wall_ms=0)

        def worker() -> None:
            for _ in range(1000):
                clock.advance(1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert clock.now() == 4000.0
        assert clock.wall_ms() == 4_000_000

    def test_repr(self) -> None:
        clock = TestClock(wall_ms=5)
        clock.advance(1)
        assert repr(clock) == "TestClock(now=1.0, wall_ms=1005)"


class TestSystemClock:
    def test_is_a_clock_that_moves_forward(self) -> None:
        clock = SystemClock()
        assert isinstance(clock, Clock)
        first = clock.now()
        assert clock.now() >= first
        assert clock.wall_ms() > 1_600_000_000_000
