"""Fixtures for the Pykka runtime tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dstate_pykka import PykkaNetwork, PykkaRuntime


@pytest.fixture
def network() -> Iterator[PykkaNetwork]:
    net = PykkaNetwork(failure_timeout=0.3)
    yield net
    net.close()


@pytest.fixture
def cluster(network: PykkaNetwork) -> list[PykkaRuntime]:
    """Three runtimes ``a``, ``b``, ``c`` on one network."""
    return [PykkaRuntime(node_id, network) for node_id in ("a", "b", "c")]


@pytest.fixture
def runtime() -> Iterator[PykkaRuntime]:
    rt = PykkaRuntime("solo")
    yield rt
    rt.shutdown()
