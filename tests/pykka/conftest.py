"""Fixtures for the Pykka runtime tests; no test here may leave a thread behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dstate_pykka import PykkaNetwork, PykkaRuntime
from tests.pykka.node_processes import Spawn, start_spawner, write_secret
from tests.threads import no_thread_outlives

#: How long the threads of a closed runtime or cluster may take to end.
THREADS_DEADLINE = 5.0


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test() -> Iterator[None]:
    """Every test, its bad-input cases included, ends with no thread it started."""
    with no_thread_outlives(THREADS_DEADLINE):
        yield


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


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """The cluster's secret (chmod 600)."""
    return write_secret(tmp_path / "cluster.secret")


@pytest.fixture
def spawn(secret_file: Path) -> Iterator[Spawn]:
    """Start node processes (with the cluster's secret unless told); afterwards stop them
    and check that nothing is left."""
    start, stop_all = start_spawner(secret_file)
    yield start
    stop_all()
