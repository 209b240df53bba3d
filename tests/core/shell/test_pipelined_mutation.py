"""Pipelined mutation: ``mutate(fn, block=False)`` returns a future; call order is commit order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from dstate_core import Generation, MutationError, NodeShutdownError, Shard, StateConfig
from dstate_core.engine import Broadcast
from dstate_core.shell._pipeline import drop_superseded_snapshots
from dstate_core.testing import (
    DeterministicCluster,
    FailingPersistence,
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


def test_a_batch_of_deltas_sends_every_delta(cluster: DeterministicCluster) -> None:
    shards = {n: cluster.node(n).register(TestDeltaState) for n in cluster.node_ids}
    cluster.run_until_idle()
    sent = cluster.messages_sent

    for _ in range(4):
        shards["a"].mutate_with_delta(TestDeltaState.bump("k", 1), block=False)
    cluster.run_until_idle()

    assert cluster.messages_sent - sent == 8  # each delta builds on the one before
    assert shards["c"].snapshot()["a"].value.total == 4


def _snap(tag: bytes) -> Broadcast:
    return Broadcast(tag, snapshot=True)


def test_only_snapshots_with_no_delta_after_them_are_dropped() -> None:
    withdrawn: list[Broadcast] = []
    s1, s2, s3 = _snap(b"1"), _snap(b"2"), _snap(b"3")
    delta, other = Broadcast(b"d"), NotifyViewStub()

    kept = drop_superseded_snapshots([s1, other, s2, delta, s3], withdrawn.append)  # type: ignore[list-item]

    # s1 is replaced by s2 (no delta between); s2 stays: a delta builds on it.
    assert kept == [other, s2, delta, s3]
    assert withdrawn == [s1]


class NotifyViewStub:
    """Any non-broadcast action: it never stops a snapshot from being superseded."""
