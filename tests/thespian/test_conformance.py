"""The ActorRuntime conformance suite on ThespianRuntime, on both Thespian system bases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dstate_core.testing.conformance import RuntimeConformanceSuite, RuntimeHarness

from .harness import SimpleHarness, TcpHarness


class TestSimpleSystemBaseConformance(RuntimeConformanceSuite):
    @pytest.fixture
    def harness(self) -> Iterator[RuntimeHarness]:
        h = SimpleHarness()
        yield h
        h.close()


class TestMultiprocTCPBaseConformance(RuntimeConformanceSuite):
    #: Separate actor-system processes on a loaded 2-core CI machine: wait longer for
    #: what must happen (a group table crosses two gateways and two processes).
    TIMEOUT = 15.0

    @pytest.fixture
    def harness(self) -> Iterator[RuntimeHarness]:
        h = TcpHarness()
        yield h
        h.close()
