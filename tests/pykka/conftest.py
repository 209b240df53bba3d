"""Fixtures for the Pykka runtime tests; no test here may leave a thread behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dstate_pykka import PykkaNetwork, PykkaRuntime

from .helpers import wait_until

#: How long the threads of a closed runtime or cluster may take to end.
THREADS_DEADLINE = 5.0


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test() -> Iterator[None]:
    """Every test, its bad-input cases included, ends with no thread it started."""
    before = set(threading.enumerate())
    yield
    leaked: set[threading.Thread] = set()

    def settled() -> bool:
        leaked.clear()
        leaked.update(t for t in set(threading.enumerate()) - before if t.is_alive())
        return not leaked

    assert wait_until(settled, THREADS_DEADLINE), sorted(t.name for t in leaked)


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
