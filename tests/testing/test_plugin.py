"""The pytest plugin's fixtures (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dstate_core import DStateNode, StateConfig
from dstate_core.testing import (
    DeterministicCluster,
    InMemoryPersistence,
    TestClock,
    TestState,
)


def test_dstate_clock_is_a_fresh_test_clock(dstate_clock: TestClock) -> None:
    assert isinstance(dstate_clock, TestClock)
    assert dstate_clock.now() == 0.0
    assert dstate_clock.wall_ms() == 1_700_000_000_000
    dstate_clock.advance(1.5)
    assert dstate_clock.now() == 1.5


@pytest.mark.parametrize("run", [1, 2])
def test_dstate_clock_is_new_for_every_test(dstate_clock: TestClock, run: int) -> None:
    assert dstate_clock.now() == 0.0  # the other run's advance did not leak
    dstate_clock.advance(run)


def test_dstate_persistence_is_an_empty_in_memory_store(
    dstate_persistence: InMemoryPersistence,
) -> None:
    assert isinstance(dstate_persistence, InMemoryPersistence)
    assert dstate_persistence.load() is None
    assert dstate_persistence.save_count == 0


@pytest.mark.parametrize("run", [1, 2])
def test_dstate_persistence_is_new_for_every_test(
    dstate_persistence: InMemoryPersistence, dstate_cluster: Callable[..., Any], run: int
) -> None:
    assert dstate_persistence.saved is None
    cluster = dstate_cluster(["a"])
    shard = cluster.node("a").register(TestState, StateConfig(persistence=dstate_persistence))
    shard.mutate(TestState.increment(run))
    assert dstate_persistence.save_count == 1


def test_dstate_cluster_builds_a_working_cluster(dstate_cluster: Callable[..., Any]) -> None:
    cluster = dstate_cluster(["a", "b"])
    assert isinstance(cluster, DeterministicCluster)
    assert cluster.node_ids == ["a", "b"]
    assert cluster.clock.now() == 0.0

    shards = {n: cluster.node(n).register(TestState) for n in ("a", "b")}
    cluster.run_until_idle()
    generation = shards["a"].mutate(TestState.increment(4))
    cluster.run_until_idle()

    assert shards["b"].snapshot()["a"].generation == generation
    assert shards["b"].snapshot()["a"].value.value == 4


def test_dstate_cluster_passes_options(dstate_cluster: Callable[..., Any]) -> None:
    clock = TestClock(wall_ms=42_000)
    cluster = dstate_cluster(["a", "b"], seed=5, failure_timeout=1.0, clock=clock)
    assert cluster.clock is clock
    assert cluster.failure_timeout == 1.0
    assert cluster.network.seed == 5


@pytest.fixture
def closed_after() -> Iterator[list[DStateNode]]:
    """Set up before ``dstate_cluster`` (so torn down after it): checks its clusters closed."""
    nodes: list[DStateNode] = []
    yield nodes
    assert nodes, "the test recorded no nodes"
    still_open = [node.node_id for node in nodes if not node.closed]
    assert still_open == [], f"dstate_cluster left nodes running: {still_open}"


def test_dstate_cluster_closes_every_cluster_after_the_test(
    closed_after: list[DStateNode], dstate_cluster: Callable[..., Any]
) -> None:
    first = dstate_cluster(["a", "b"])
    second = dstate_cluster(["x"])
    for cluster in (first, second):
        closed_after.extend(cluster.node(n) for n in cluster.node_ids)
        cluster.node(cluster.node_ids[0]).register(TestState)
    assert not any(node.closed for node in closed_after)  # open during the test


def test_dstate_cluster_clusters_are_independent(dstate_cluster: Callable[..., Any]) -> None:
    one = dstate_cluster(["a", "b"])
    two = dstate_cluster(["a", "b"])
    assert one.clock is not two.clock
    shard_one = one.node("a").register(TestState)
    shard_two = two.node("a").register(TestState)
    one.run_until_idle()
    two.run_until_idle()
    shard_one.mutate(TestState.increment())
    one.run_until_idle()
    two.run_until_idle()
    assert set(shard_two.snapshot()) == {"a"}  # b of cluster two has nothing registered
    assert shard_two.state.generation.age == 0
