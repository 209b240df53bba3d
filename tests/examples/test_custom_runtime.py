"""The ActorRuntime conformance suite, run on the example's from-scratch LoopRuntime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dstate_core.testing.conformance import RuntimeConformanceSuite
from examples.custom_runtime import LoopHarness


class TestExampleLoopRuntimeConformance(RuntimeConformanceSuite):
    @pytest.fixture
    def harness(self) -> Iterator[LoopHarness]:
        h = LoopHarness()
        yield h
        h.close()
