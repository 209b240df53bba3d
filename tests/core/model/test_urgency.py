"""SyncUrgency: the constants, delayed(), validation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core import SyncUrgency
from dstate_core.model._urgency import UrgencyKind


class TestConstants:
    @pytest.mark.parametrize(
        ("urgency", "kind"),
        [
            (SyncUrgency.DEFAULT, UrgencyKind.DEFAULT),
            (SyncUrgency.IMMEDIATE, UrgencyKind.IMMEDIATE),
            (SyncUrgency.SUPPRESS, UrgencyKind.SUPPRESS),
        ],
    )
    def test_kind_and_no_delay(self, urgency: SyncUrgency, kind: UrgencyKind) -> None:
        assert urgency.kind is kind
        assert urgency.delay == 0.0

    def test_constants_are_distinct(self) -> None:
        constants = {SyncUrgency.DEFAULT, SyncUrgency.IMMEDIATE, SyncUrgency.SUPPRESS}
        assert len(constants) == 3

    def test_equal_to_a_rebuilt_value(self) -> None:
        assert SyncUrgency(UrgencyKind.IMMEDIATE) == SyncUrgency.IMMEDIATE

    @pytest.mark.parametrize(
        ("urgency", "text"),
        [
            (SyncUrgency.DEFAULT, "SyncUrgency.DEFAULT"),
            (SyncUrgency.IMMEDIATE, "SyncUrgency.IMMEDIATE"),
            (SyncUrgency.SUPPRESS, "SyncUrgency.SUPPRESS"),
            (SyncUrgency.delayed(0.5), "SyncUrgency.delayed(0.5)"),
        ],
    )
    def test_repr(self, urgency: SyncUrgency, text: str) -> None:
        assert repr(urgency) == text

    def test_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            SyncUrgency.DEFAULT.delay = 1.0  # type: ignore[misc]


class TestDelayed:
    @given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
    def test_valid_delay(self, seconds: float) -> None:
        urgency = SyncUrgency.delayed(seconds)
        assert urgency.kind is UrgencyKind.DELAYED
        assert urgency.delay == seconds
        assert urgency == SyncUrgency.delayed(seconds)

    def test_int_delay_becomes_float(self) -> None:
        urgency = SyncUrgency.delayed(2)
        assert urgency.delay == 2.0
        assert isinstance(urgency.delay, float)

    def test_different_delays_differ(self) -> None:
        assert SyncUrgency.delayed(0.5) != SyncUrgency.delayed(1.0)

    @pytest.mark.parametrize(
        "seconds", [0, 0.0, -1, -0.1, math.nan, math.inf, -math.inf, True, False, "1", None]
    )
    def test_bad_delay(self, seconds: Any) -> None:
        with pytest.raises(ValueError, match="delayed"):
            SyncUrgency.delayed(seconds)


class TestDirectConstruction:
    @pytest.mark.parametrize(
        "kind", [UrgencyKind.DEFAULT, UrgencyKind.IMMEDIATE, UrgencyKind.SUPPRESS]
    )
    def test_non_delayed_kinds_take_no_delay(self, kind: UrgencyKind) -> None:
        with pytest.raises(ValueError, match="no delay"):
            SyncUrgency(kind, 1.0)

    @pytest.mark.parametrize("delay", [0.0, -1.0, math.nan])
    def test_delayed_kind_needs_a_valid_delay(self, delay: float) -> None:
        with pytest.raises(ValueError, match="seconds"):
            SyncUrgency(UrgencyKind.DELAYED, delay)
