"""The deterministic ``local_cluster``: nodes, driving, faults, counters, determinism."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from dstate_core import (
    DStateNode,
    Generation,
    NodeJoined,
    NodeLeft,
    PushMode,
    Shard,
    StateConfig,
    StateNotRegisteredError,
    StateViewObject,
    SyncStrategy,
)
from dstate_core.testing import (
    DeterministicCluster,
    TestClock,
    TestDeltaState,
    TestState,
    local_cluster,
)

NODES = ["a", "b", "c"]


def values(views: Mapping[str, StateViewObject[Any]]) -> dict[str, int]:
    return {node: view.value.value for node, view in views.items()}


@pytest.fixture
def cluster() -> Iterator[DeterministicCluster]:
    with local_cluster(NODES) as made:
        yield made


def register_all(
    cluster: DeterministicCluster, config: StateConfig | None = None
) -> dict[str, Shard[TestState]]:
    shards = {node: cluster.node(node).register(TestState, config) for node in cluster.node_ids}
    cluster.run_until_idle()
    return shards


# -- nodes --------------------------------------------------------------------------------


def test_local_cluster_builds_nodes(cluster: DeterministicCluster) -> None:
    assert isinstance(cluster, DeterministicCluster)
    assert cluster.node_ids == NODES
    for node_id in NODES:
        node = cluster.node(node_id)
        assert isinstance(node, DStateNode)
        assert node.node_id == node_id
        assert cluster.runtime(node_id).node_id == node_id
        assert node.runtime is cluster.runtime(node_id)
        assert node.clock is cluster.clock
    assert isinstance(cluster.clock, TestClock)
    assert cluster.clock.now() == 0.0


def test_unknown_node_is_a_key_error(cluster: DeterministicCluster) -> None:
    with pytest.raises(KeyError, match="'zz'"):
        cluster.node("zz")
    with pytest.raises(KeyError, match="'zz'"):
        cluster.runtime("zz")


def test_bad_node_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        local_cluster(["a", "a"]).__enter__()
    with pytest.raises(TypeError, match="list"):
        local_cluster("ab").__enter__()
    with pytest.raises(ValueError, match="non-empty"):
        local_cluster(["a", ""]).__enter__()
    with pytest.raises(ValueError, match="failure_timeout"):
        local_cluster(["a"], failure_timeout=0).__enter__()


def test_add_node_joins_and_rejects_a_running_id(cluster: DeterministicCluster) -> None:
    node = cluster.add_node("d")
    assert cluster.node("d") is node
    assert cluster.node_ids == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="already running"):
        cluster.add_node("a")


def test_remove_node_shuts_it_down(cluster: DeterministicCluster) -> None:
    node = cluster.node("c")
    cluster.remove_node("c")
    assert node.closed
    assert cluster.node_ids == ["a", "b"]
    with pytest.raises(KeyError):
        cluster.node("c")
    with pytest.raises(KeyError):
        cluster.remove_node("c")


def test_remove_node_emits_node_left_at_once(cluster: DeterministicCluster) -> None:
    events: list[Any] = []
    cluster.runtime("a").cluster_events.subscribe(events.append)
    events.clear()  # drop the replayed NodeJoined events
    cluster.remove_node("b")
    assert events == [NodeLeft("b")]


def test_crash_emits_node_left_after_failure_timeout() -> None:
    with local_cluster(NODES, failure_timeout=2.0) as cluster:
        events: list[Any] = []
        cluster.runtime("a").cluster_events.subscribe(events.append)
        assert events == [NodeJoined("b"), NodeJoined("c")]
        events.clear()
        node = cluster.node("c")

        cluster.crash("c")
        assert node.closed
        assert cluster.node_ids == ["a", "b"]
        cluster.advance(1.9)
        assert events == []
        cluster.advance(0.2)
        assert events == [NodeLeft("c")]


def test_restart_gives_a_fresh_node_with_nothing_registered(cluster: DeterministicCluster) -> None:
    old = cluster.node("a")
    old.register(TestState)

    new = cluster.restart("a")  # crashes the running node first

    assert new is not old
    assert old.closed
    assert not new.closed
    assert cluster.node("a") is new
    with pytest.raises(StateNotRegisteredError):
        new.lookup("test_state")


def test_restart_of_a_stopped_node(cluster: DeterministicCluster) -> None:
    cluster.remove_node("b")
    node = cluster.restart("b")
    assert cluster.node("b") is node
    assert cluster.node_ids == NODES


def test_close_is_idempotent_and_shuts_every_node() -> None:
    with local_cluster(NODES) as cluster:
        nodes = [cluster.node(n) for n in NODES]
        register_all(cluster)
    assert all(node.closed for node in nodes)
    cluster.close()  # again: nothing happens
    with pytest.raises(RuntimeError, match="closed"):
        cluster.add_node("d")


def test_close_happens_even_when_the_block_raises() -> None:
    class Stop(Exception):
        pass

    nodes: list[DStateNode] = []

    def body() -> None:
        with local_cluster(NODES) as cluster:
            nodes.extend(cluster.node(n) for n in NODES)
            raise Stop

    with pytest.raises(Stop):
        body()
    assert nodes
    assert all(node.closed for node in nodes)


# -- driving ------------------------------------------------------------------------------


def test_run_until_idle_does_not_move_time(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(sync_strategy=SyncStrategy.periodic_only(1.0)))
    shards["a"].mutate(TestState.increment())
    shards["b"].mutate(lambda s: TestState(value=1))  # not pushed either

    cluster.run_until_idle()

    assert cluster.clock.now() == 0.0
    assert shards["b"].snapshot()["a"].value.value == 0  # the periodic timer has not fired
    assert shards["a"].snapshot()["b"].value.value == 0


def test_run_until_idle_delivers_everything_due(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    shards["a"].mutate(TestState.increment())
    assert cluster.run_until_idle() > 0
    assert cluster.run_until_idle() == 0  # idle now
    assert shards["c"].snapshot()["a"].value.value == 1


def test_advance_moves_both_clocks_and_fires_timers(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(sync_strategy=SyncStrategy.periodic_only(1.0)))
    wall = cluster.clock.wall_ms()
    shards["a"].mutate(TestState.increment(3))

    cluster.advance(0.5)
    assert cluster.clock.now() == 0.5
    assert cluster.clock.wall_ms() == wall + 500
    assert shards["b"].snapshot()["a"].value.value == 0

    events = cluster.advance(0.6)
    assert events > 0
    assert cluster.clock.now() == pytest.approx(1.1)
    assert shards["b"].snapshot()["a"].value.value == 3


def test_advance_rejects_negative_time(cluster: DeterministicCluster) -> None:
    with pytest.raises(ValueError, match="advance"):
        cluster.advance(-1.0)


def test_a_slow_path_query_drives_the_network(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(sync_strategy=SyncStrategy(PushMode.NONE)))
    shards["b"].mutate(TestState.increment(6))
    cluster.advance(2.0)
    # No run_until_idle: the blocking query delivers the pulls itself.
    assert shards["a"].query(values, max_staleness=1.0) == {"a": 0, "b": 6, "c": 0}
    assert cluster.clock.now() == 2.0  # the replies came at once: no time passed


def test_a_clock_may_be_passed_in() -> None:
    clock = TestClock(wall_ms=5_000, start=10.0)
    with local_cluster(["a", "b"], clock=clock) as cluster:
        assert cluster.clock is clock
        shard = cluster.node("a").register(TestState)
        assert shard.state.created_time == 5_000
        assert shard.state.generation.incarnation == 5_000


# -- counters -----------------------------------------------------------------------------


def test_a_broadcast_to_two_peers_counts_two(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    sent, sent_bytes = cluster.messages_sent, cluster.bytes_sent
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert cluster.messages_sent == sent + 2
    per_message = (cluster.bytes_sent - sent_bytes) / 2
    assert per_message > 0
    assert shards["a"].metrics().bytes_sent > 0


def test_a_pull_counts_two(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.advance(2.0)
    shards["b"].mutate(TestState.increment())  # b fresh on a; c stale
    cluster.run_until_idle()
    sent = cluster.messages_sent
    shards["a"].query(values, max_staleness=1.0)
    assert cluster.messages_sent == sent + 2


def test_messages_into_a_partition_still_count_as_sent(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.partition(["a"], ["b", "c"])
    sent = cluster.messages_sent
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert cluster.messages_sent == sent + 2
    assert shards["b"].snapshot()["a"].value.value == 0


def test_inject_is_not_counted_and_needs_a_running_node(cluster: DeterministicCluster) -> None:
    register_all(cluster)
    sent = cluster.messages_sent
    cluster.inject("b", "a", b"garbage")
    cluster.run_until_idle()
    assert cluster.messages_sent == sent
    assert cluster.node("a").dropped_messages == {"malformed": 1}
    with pytest.raises(KeyError):
        cluster.inject("a", "zz", b"garbage")
    with pytest.raises(TypeError):
        cluster.inject("b", "a", "text")  # type: ignore[arg-type]


# -- faults -------------------------------------------------------------------------------


def test_partition_and_heal(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.partition(["a"], ["b", "c"])
    shards["a"].mutate(TestState.increment())
    shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].value.value == 0
    assert shards["c"].snapshot()["b"].value.value == 1  # same side

    cluster.heal()
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].value.value == 2


def test_faults_on_one_link_only(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.set_faults(drop=1.0, src="a", dst="b")
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].value.value == 0
    assert shards["c"].snapshot()["a"].value.value == 1

    cluster.clear_faults()
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].value.value == 2


def test_delay_fault_holds_messages_until_time_moves(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.set_faults(delay=1.0)
    generation = shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    held = [n for n in ("b", "c") if shards[n].snapshot()["a"].generation != generation]
    assert held == ["b", "c"]  # both copies wait for time to move
    cluster.advance(1.0)
    assert shards["b"].snapshot()["a"].generation == generation
    assert shards["c"].snapshot()["a"].generation == generation


def test_set_faults_rejects_bad_probabilities(cluster: DeterministicCluster) -> None:
    with pytest.raises(ValueError, match="drop"):
        cluster.set_faults(drop=1.5)


# -- determinism --------------------------------------------------------------------------

Outcome = tuple[int, int, dict[str, dict[str, Generation]]]


def faulty_run(seed: int) -> Outcome:
    """A fixed script of mutations and queries over a lossy, reordering network."""
    config = StateConfig(
        sync_strategy=SyncStrategy(PushMode.ACTIVE_PUSH, periodic_full_sync=1.5),
        pull_timeout=0.5,
    )
    with local_cluster(["a", "b", "c", "d"], seed=seed) as cluster:
        cluster.set_faults(drop=0.2, duplicate=0.1, reorder=0.2, delay=0.3)
        shards = {n: cluster.node(n).register(TestState, config) for n in cluster.node_ids}
        deltas = {n: cluster.node(n).register(TestDeltaState, config) for n in ("a", "b")}
        cluster.run_until_idle()
        for step in range(12):
            node = "abcd"[step % 4]
            shards[node].mutate(TestState.increment(step))
            if node in deltas:
                deltas[node].mutate_with_delta(TestDeltaState.bump(f"k{step % 3}", step))
            cluster.advance(0.25)
            if step % 5 == 4:
                shards["c"].query(values, max_staleness=0.5, on_stale="return")
        cluster.advance(1.0)
        final = {
            f"{node}/{shard.name}": {peer: v.generation for peer, v in shard.snapshot().items()}
            for node, shard in [*shards.items(), *deltas.items()]
        }
        return cluster.messages_sent, cluster.bytes_sent, final


def test_same_seed_same_run() -> None:
    first = faulty_run(seed=11)
    second = faulty_run(seed=11)
    assert first == second
    assert first[0] > 0


def test_different_seeds_generally_differ() -> None:
    runs = {seed: faulty_run(seed) for seed in (1, 2, 3)}
    assert len({(sent, sent_bytes) for sent, sent_bytes, _ in runs.values()}) > 1


def test_faults_lose_messages_that_periodic_sync_recovers() -> None:
    config = StateConfig(sync_strategy=SyncStrategy(PushMode.ACTIVE_PUSH, periodic_full_sync=1.0))
    with local_cluster(NODES, seed=3) as cluster:
        shards = register_all(cluster, config)
        cluster.set_faults(drop=0.5, duplicate=0.1, reorder=0.2, delay=0.3)
        expected = {n: shards[n].mutate(TestState.increment(1 + i)) for i, n in enumerate(NODES)}
        cluster.advance(0.5)
        cluster.clear_faults()
        cluster.advance(1.5)  # one clean periodic full sync from everyone
        for node in NODES:
            seen = {peer: v.generation for peer, v in shards[node].snapshot().items()}
            assert seen == expected, node
