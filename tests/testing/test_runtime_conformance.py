"""The ActorRuntime conformance suite, run on TestRuntime over a SimNetwork."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dstate_core.testing.conformance import RuntimeConformanceSuite, SimNetworkHarness


class TestSimRuntimeConformance(RuntimeConformanceSuite):
    @pytest.fixture
    def harness(self) -> Iterator[SimNetworkHarness]:
        h = SimNetworkHarness(seed=0)
        yield h
        h.close()
