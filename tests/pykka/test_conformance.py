"""The ActorRuntime conformance suite (dstate_core.testing.conformance), run on PykkaRuntime."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from dstate_core.runtime._protocol import ActorRuntime
from dstate_core.testing.conformance import RuntimeConformanceSuite, RuntimeHarness
from dstate_pykka import PykkaNetwork, PykkaRuntime

from .helpers import wait_until


class PykkaHarness:
    """A :class:`RuntimeHarness` over one :class:`PykkaNetwork`, in real time."""

    def __init__(self) -> None:
        self.network = PykkaNetwork()

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        """One ``PykkaRuntime`` per id on the shared network."""
        return [PykkaRuntime(node_id, self.network) for node_id in node_ids]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` (real time)."""
        return wait_until(predicate, timeout)

    def remove(self, node_id: str) -> None:
        """Clean leave of ``node_id``."""
        self.network.remove(node_id)

    def close(self) -> None:
        """Shut every runtime down."""
        self.network.close()


class TestPykkaRuntimeConformance(RuntimeConformanceSuite):
    @pytest.fixture
    def harness(self) -> Iterator[RuntimeHarness]:
        h = PykkaHarness()
        yield h
        h.close()
