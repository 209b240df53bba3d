"""Pipelined mutation: ``mutate(fn, block=False)`` returns a future; call order is commit order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from dstate_core import (
    Generation,
    MutationError,
    NodeShutdownError,
    PersistError,
    Shard,
    StateConfig,
)
from dstate_core.testing import (
    DeterministicCluster,
    FailingPersistence,
    InMemoryPersistence,
    TestDeltaState,
    TestState,
    local_cluster,
)
from dstate_pykka import local_cluster as pykka_cluster

NODES = ["a", "b", "c"]


@pytest.fixture
def cluster() -> Iterator[DeterministicCluster]:
    with local_cluster(NODES) as made:
        yield made


def register_all(cluster: DeterministicCluster) -> dict[str, Shard[TestState]]:
    shards = {node: cluster.node(node).register(TestState) for node in cluster.node_ids}
    cluster.run_until_idle()
    return shards


def test_a_pipelined_mutation_returns_a_future_that_resolves_on_commit(
    cluster: DeterministicCluster,
) -> None:
    shards = register_all(cluster)
    start = shards["a"].state.generation

    futures = [shards["a"].mutate(TestState.increment(), block=False) for _ in range(5)]

    assert all(isinstance(f, Future) for f in futures)
    assert not any(f.done() for f in futures)  # nothing ran yet: the actor did not wake
    cluster.run_until_idle()
    assert [f.result(timeout=0) for f in futures] == [
        Generation(start.incarnation, age) for age in range(1, 6)
    ]
    assert shards["a"].state.value.value == 5
    assert shards["b"].snapshot()["a"].value.value == 5


def test_blocking_and_pipelined_calls_commit_in_call_order(
    cluster: DeterministicCluster,
) -> None:
    shards = register_all(cluster)
    seen: list[int] = []

    def record(tag: int) -> object:
        def mutation(state: TestState) -> None:
            seen.append(tag)
            state.value += 1

        return mutation

    first = shards["a"].mutate(record(1), block=False)  # type: ignore[arg-type]
    second = shards["a"].mutate(record(2))  # type: ignore[arg-type]  # blocking: drains 1 too
    third = shards["a"].mutate(record(3), block=False)  # type: ignore[arg-type]
    cluster.run_until_idle()

    assert seen == [1, 2, 3]
    assert first.result(timeout=0).age + 1 == second.age == third.result(timeout=0).age - 1


def test_a_failing_mutation_fails_its_future_only(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)

    def boom(state: TestState) -> None:
        raise ValueError("no")

    ok_before = shards["a"].mutate(TestState.increment(), block=False)
    failed = shards["a"].mutate(boom, block=False)
    ok_after = shards["a"].mutate(TestState.increment(), block=False)
    cluster.run_until_idle()

    with pytest.raises(ValueError, match="no"):
        failed.result(timeout=0)
    assert ok_after.result(timeout=0) == ok_before.result(timeout=0).next()
    assert shards["a"].state.value.value == 2


def test_a_failed_save_fails_the_future_with_a_mutation_error(
    cluster: DeterministicCluster,
) -> None:
    store = FailingPersistence()
    shard = cluster.node("a").register(TestState, StateConfig(persistence=store))
    cluster.run_until_idle()
    store.fail_next_save()

    future = shard.mutate(TestState.increment(), block=False)
    cluster.run_until_idle()

    with pytest.raises(MutationError):
        future.result(timeout=0)
    assert shard.state.value.value == 0


def test_mutate_with_delta_pipelines_too(cluster: DeterministicCluster) -> None:
    shards = {n: cluster.node(n).register(TestDeltaState) for n in cluster.node_ids}
    cluster.run_until_idle()

    futures = [
        shards["a"].mutate_with_delta(TestDeltaState.bump("k", 1), block=False) for _ in range(3)
    ]
    cluster.run_until_idle()

    assert [f.result(timeout=0).age for f in futures] == [1, 2, 3]
    assert shards["b"].snapshot()["a"].value.total == 3


def test_block_must_be_a_bool(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    with pytest.raises(TypeError, match="block must be True or False"):
        shards["a"].mutate(TestState.increment(), block="no")  # type: ignore[call-overload]


def test_shutdown_fails_the_mutations_still_queued(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    queued = [shards["a"].mutate(TestState.increment(), block=False) for _ in range(3)]

    cluster.node("a").shutdown()

    for future in queued:
        with pytest.raises(NodeShutdownError):
            future.result(timeout=0)
    with pytest.raises(NodeShutdownError):
        shards["a"].mutate(TestState.increment(), block=False)


def test_futures_work_with_asyncio_on_a_threaded_runtime() -> None:
    with pykka_cluster(NODES) as made:
        shards = {n: made.node(n).register(TestState) for n in NODES}

        async def run() -> Generation:
            futures = [shards["a"].mutate(TestState.increment(), block=False) for _ in range(50)]
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
            assert [g.age for g in results] == list(range(1, 51))
            return results[-1]

        last = asyncio.run(run())
        assert shards["a"].state.generation == last
        assert shards["a"].state.value.value == 50


def test_a_batch_of_simple_mutations_is_one_frame_per_peer(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    sent = cluster.messages_sent
    before = shards["a"].metrics().snapshots_sent

    futures = [shards["a"].mutate(TestState.increment(), block=False) for _ in range(10)]
    cluster.run_until_idle()

    assert futures[-1].result(timeout=0).age == 10
    assert cluster.messages_sent - sent == 2  # the last snapshot, to b and c
    assert shards["a"].metrics().snapshots_sent - before == 2
    assert {n: s.snapshot()["a"].value.value for n, s in shards.items()} == {
        "a": 10,
        "b": 10,
        "c": 10,
    }


def test_a_batch_of_deltas_is_one_frame_per_peer(cluster: DeterministicCluster) -> None:
    shards = {n: cluster.node(n).register(TestDeltaState) for n in cluster.node_ids}
    cluster.run_until_idle()
    sent = cluster.messages_sent
    before = shards["a"].metrics().deltas_sent

    for _ in range(4):
        shards["a"].mutate_with_delta(TestDeltaState.bump("k", 1), block=False)
    cluster.run_until_idle()

    assert cluster.messages_sent - sent == 2  # one run of 4 deltas to each of b and c
    assert shards["a"].metrics().deltas_sent - before == 8
    assert shards["c"].snapshot()["a"].value.total == 4
    assert shards["c"].metrics().age_gaps_detected == 0


@pytest.mark.parametrize("state", [TestState, TestDeltaState])
def test_a_batch_is_saved_once_as_its_last_state(
    cluster: DeterministicCluster, state: type[TestState] | type[TestDeltaState]
) -> None:
    store = InMemoryPersistence()
    shard: Shard[Any] = cluster.node("a").register(state, StateConfig(persistence=store))
    cluster.run_until_idle()
    saves = store.save_count
    change = (
        (lambda: shard.mutate(TestState.increment(), block=False))
        if state is TestState
        else (lambda: shard.mutate_with_delta(TestDeltaState.bump("k", 1), block=False))
    )

    futures = [change() for _ in range(5)]
    cluster.run_until_idle()

    assert store.save_count - saves == 1
    assert store.saved is not None
    assert store.saved.generation == futures[-1].result(timeout=0) == shard.state.generation
    one = change()  # a batch of one keeps its delta for stores that log deltas
    cluster.run_until_idle()
    assert store.save_count - saves == 2
    assert one.result(timeout=0) == store.saved.generation


def test_a_failed_batch_save_fails_every_mutation_of_the_batch(
    cluster: DeterministicCluster,
) -> None:
    store = FailingPersistence()
    shards = {n: cluster.node(n).register(TestState, StateConfig(persistence=store)) for n in "ab"}
    cluster.run_until_idle()
    start = shards["a"].state.generation
    store.fail_next_save()

    futures = [shards["a"].mutate(TestState.increment(), block=False) for _ in range(3)]
    cluster.run_until_idle()

    errors = []
    for future in futures:
        with pytest.raises(MutationError, match=r"generations .* to .* \(one batch\)") as info:
            future.result(timeout=0)
        errors.append(info.value)
    assert len({id(error) for error in errors}) == 3  # one exception object per caller
    assert all(isinstance(error.__cause__, PersistError) for error in errors)
    assert shards["a"].state.generation == start
    assert shards["b"].snapshot()["a"].generation == start  # nothing was sent
    assert shards["a"].mutate(TestState.increment()) == start.next()  # the next one commits


def test_a_mutation_that_raises_leaves_the_rest_of_its_batch_one_save(
    cluster: DeterministicCluster,
) -> None:
    store = InMemoryPersistence()
    shard = cluster.node("a").register(TestState, StateConfig(persistence=store))
    cluster.run_until_idle()
    saves = store.save_count

    def boom(state: TestState) -> None:
        state.value += 100
        raise ValueError("no")

    ok = [shard.mutate(TestState.increment(), block=False)]
    failed = shard.mutate(boom, block=False)
    ok.append(shard.mutate(TestState.increment(), block=False))
    cluster.run_until_idle()

    with pytest.raises(ValueError, match="no"):
        failed.result(timeout=0)
    assert [f.result(timeout=0).age for f in ok] == [1, 2]
    assert store.save_count - saves == 1
    assert shard.state.value.value == 2
