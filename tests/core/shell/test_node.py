"""DStateNode: registry, health, inbound garbage, lifecycle and shutdown.

Driven on the deterministic cluster: the network moves only in
``run_until_idle``/``advance`` (or a blocking call), and time is virtual.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from dstate_core import (
    DeltaDistributedState,
    DistributedState,
    DStateError,
    DStateNode,
    DuplicateNameError,
    Generation,
    HealthStatus,
    NodeShutdownError,
    PushMode,
    RegistryError,
    Shard,
    StalePeerError,
    StateConfig,
    StateNotRegisteredError,
    StateViewObject,
    SyncStrategy,
    TypeMismatchError,
)
from dstate_core.testing import (
    DeterministicCluster,
    InMemoryPersistence,
    TestDeltaState,
    TestState,
    local_cluster,
)
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import FullSnapshot

NODES = ["a", "b", "c"]


def values(views: Mapping[str, StateViewObject[Any]]) -> dict[str, int]:
    return {node: view.value.value for node, view in views.items()}


@pytest.fixture
def cluster() -> Iterator[DeterministicCluster]:
    with local_cluster(NODES) as made:
        yield made


def register_all(
    cluster: DeterministicCluster,
    config: StateConfig | None = None,
    state_type: type[Any] = TestState,
) -> dict[str, Shard[Any]]:
    shards = {node: cluster.node(node).register(state_type, config) for node in cluster.node_ids}
    cluster.run_until_idle()
    return shards


def view_maps(shards: Mapping[str, Shard[Any]]) -> dict[str, set[str]]:
    return {node: set(shard.snapshot()) for node, shard in shards.items()}


# -- registry -------------------------------------------------------------------------


class OtherCounter(DistributedState):
    NAME = "test_state"  # the same NAME as TestState
    count: int = 0


class Unnamed(DistributedState):
    count: int = 0


def test_register_returns_a_shard(cluster: DeterministicCluster) -> None:
    node = cluster.node("a")
    shard = node.register(TestState)
    assert isinstance(shard, Shard)
    assert shard.name == "test_state"
    assert shard.state_type is TestState
    assert node.lookup("test_state") is shard
    assert node.lookup_typed("test_state", TestState) is shard
    assert dict(node.states) == {"test_state": shard}


def test_second_name_is_a_duplicate_name_error(cluster: DeterministicCluster) -> None:
    node = cluster.node("a")
    first = node.register(TestState)
    for again in (TestState, OtherCounter):
        with pytest.raises(DuplicateNameError, match="test_state") as caught:
            node.register(again)
        assert isinstance(caught.value, RegistryError)
        assert isinstance(caught.value, DStateError)
    assert node.lookup("test_state") is first
    # Another node may register the same name: names are per node.
    assert cluster.node("b").register(TestState).name == "test_state"


def test_lookup_unknown_name(cluster: DeterministicCluster) -> None:
    node = cluster.node("a")
    node.register(TestState)
    with pytest.raises(StateNotRegisteredError, match="no_such_state") as caught:
        node.lookup("no_such_state")
    assert isinstance(caught.value, RegistryError)
    with pytest.raises(StateNotRegisteredError, match="no_such_state"):
        node.lookup_typed("no_such_state", TestState)


def test_lookup_typed_wrong_type(cluster: DeterministicCluster) -> None:
    node = cluster.node("a")
    node.register(TestState)
    with pytest.raises(TypeMismatchError, match="test_state") as caught:
        node.lookup_typed("test_state", OtherCounter)
    assert isinstance(caught.value, RegistryError)
    with pytest.raises(TypeMismatchError):
        node.lookup_typed("test_state", TestDeltaState)


@pytest.mark.parametrize(
    "bad",
    [int, "test_state", TestState(), DistributedState, DeltaDistributedState, Unnamed, None],
    ids=["int", "str", "instance", "base", "delta-base", "no-NAME", "None"],
)
def test_register_rejects_non_state_classes(cluster: DeterministicCluster, bad: Any) -> None:
    node = cluster.node("a")
    with pytest.raises(TypeError):
        node.register(bad)
    assert dict(node.states) == {}


def test_register_rejects_a_bad_config(cluster: DeterministicCluster) -> None:
    node = cluster.node("a")
    with pytest.raises(TypeError, match="StateConfig"):
        node.register(TestState, {"default_staleness": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="StateConfig"):
        node.register(TestState, SyncStrategy.active_push())  # type: ignore[arg-type]
    assert dict(node.states) == {}
    node.register(TestState)  # the failed attempts left no half-registered state


def test_register_rejects_a_class_without_name_with_a_clear_message(
    cluster: DeterministicCluster,
) -> None:
    with pytest.raises(TypeError, match="NAME"):
        cluster.node("a").register(Unnamed)


# -- health and inbound garbage ---------------------------------------------------------


def test_health_is_healthy_when_every_peer_is_fresh(cluster: DeterministicCluster) -> None:
    register_all(cluster)
    register_all(cluster, state_type=TestDeltaState)

    health = cluster.node("a").health_check()

    assert health.status is HealthStatus.HEALTHY
    assert sorted(s.state_name for s in health.states) == ["test_delta_state", "test_state"]
    for state in health.states:
        assert state.status is HealthStatus.HEALTHY
        assert (state.healthy_peers, state.stale_peers, state.failing_peers) == (2, 0, 0)


def test_health_with_no_states_is_healthy(cluster: DeterministicCluster) -> None:
    health = cluster.node("a").health_check()
    assert health.status is HealthStatus.HEALTHY
    assert health.states == []


def test_an_unreachable_peer_is_failing_once_a_pull_fails(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(default_staleness=5.0, pull_timeout=1.0))
    cluster.partition(["a"], ["b", "c"])
    cluster.advance(6.0)
    shards["c"].mutate(TestState.increment())  # reaches b, not a
    cluster.run_until_idle()
    # Nothing has told b that a is unreachable yet: an idle peer's old view is its state.
    assert cluster.node("b").health_check().status is HealthStatus.HEALTHY

    with pytest.raises(StalePeerError):
        shards["b"].query(values, max_staleness=1.0)  # a's pull fails: a is failing now
    (b_state,) = cluster.node("b").health_check().states
    assert (b_state.healthy_peers, b_state.stale_peers, b_state.failing_peers) == (1, 0, 1)
    assert b_state.status is HealthStatus.DEGRADED  # 1 of 2: not more than half

    with pytest.raises(StalePeerError):
        shards["a"].query(values, max_staleness=1.0)
    assert cluster.node("a").health_check().status is HealthStatus.UNHEALTHY

    cluster.heal()
    shards["b"].query(values, max_staleness=1.0)
    assert cluster.node("b").health_check().status is HealthStatus.HEALTHY


FEED = StateConfig(
    sync_strategy=SyncStrategy.feed_lazy_pull(), default_staleness=5.0, pull_timeout=1.0
)


def test_a_feed_view_pending_by_design_is_healthy(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, FEED)
    for _ in range(3):
        cluster.advance(3.0)  # older than the bound, but announced since
        for shard in shards.values():
            shard.mutate(TestState.increment())
        cluster.run_until_idle()
        cluster.advance(1.5)  # the feed batch leaves

    row = {r.node_id: r for r in shards["b"].sync_status()}["a"]
    assert row.remote_generation is not None and row.local_generation is not None
    assert row.remote_generation > row.local_generation  # pending: nobody queried
    assert [r.node_id for r in shards["b"].stale_peers(5.0)] == ["a", "c"]  # to pull
    assert cluster.node("b").health_check().status is HealthStatus.HEALTHY


def test_a_feed_peer_that_cannot_be_reached_is_not_healthy(
    cluster: DeterministicCluster,
) -> None:
    shards = register_all(cluster, FEED)
    cluster.partition(["a"], ["b", "c"])
    for shard in shards.values():
        shard.mutate(TestState.increment())  # b hears c announce, not a
    cluster.advance(6.0)

    (state,) = cluster.node("b").health_check().states
    assert state.status is HealthStatus.HEALTHY  # c pending (pullable), a idle as far as b knows

    shards["b"].query(values, max_staleness=1.0, on_stale="return")  # a's pull times out
    (state,) = cluster.node("b").health_check().states
    assert (state.healthy_peers, state.stale_peers, state.failing_peers) == (1, 0, 1)


def test_a_pending_view_is_stale_without_pull_on_query(cluster: DeterministicCluster) -> None:
    config = StateConfig(
        sync_strategy=SyncStrategy(PushMode.ACTIVE_FEED_LAZY_PULL, pull_on_query=False),
        default_staleness=5.0,
    )
    shards = register_all(cluster, config)
    shards["a"].mutate(TestState.increment())
    cluster.advance(1.5)

    (state,) = cluster.node("b").health_check().states
    assert state.stale_peers == 1  # nothing would ever pull it


def test_health_is_the_worst_state(cluster: DeterministicCluster) -> None:
    register_all(cluster)
    unpulled = SyncStrategy(PushMode.ACTIVE_FEED_LAZY_PULL, pull_on_query=False)
    delta = {
        node: cluster.node(node).register(TestDeltaState, StateConfig(sync_strategy=unpulled))
        for node in NODES
    }
    cluster.run_until_idle()
    for node in ("b", "c"):
        delta[node].mutate_with_delta(TestDeltaState.bump("k"))
    cluster.advance(2.0)  # announced, and nothing will pull them

    health = cluster.node("a").health_check()

    by_name = {state.state_name: state.status for state in health.states}
    assert by_name == {
        "test_state": HealthStatus.HEALTHY,
        "test_delta_state": HealthStatus.UNHEALTHY,
    }
    assert health.status is HealthStatus.UNHEALTHY


@pytest.mark.parametrize(
    "garbage",
    [b"garbage", b"", b"\x81\xa1x\x01", b"\x00" * 10_000_000],
    ids=["text", "empty", "msgpack-map", "oversized"],
)
def test_garbage_is_dropped_and_counted(cluster: DeterministicCluster, garbage: bytes) -> None:
    shards = register_all(cluster)
    shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()
    before = dict(shards["a"].snapshot())
    dropped = sum(cluster.node("a").dropped_messages.values())
    sent = cluster.messages_sent

    cluster.inject("b", "a", garbage)
    cluster.run_until_idle()

    assert sum(cluster.node("a").dropped_messages.values()) == dropped + 1
    assert dict(shards["a"].snapshot()) == before
    assert cluster.messages_sent == sent  # dropped quietly: no reply, no pull
    # The inbox keeps working.
    generation = shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["a"].snapshot()["b"].generation == generation


def test_garbage_counts_by_reason(cluster: DeterministicCluster) -> None:
    register_all(cluster)
    cluster.inject("b", "a", b"garbage")
    cluster.inject("b", "a", b"garbage")
    cluster.run_until_idle()
    assert cluster.node("a").dropped_messages == {"malformed": 2}


def forged_snapshot(
    shard: Shard[Any], source: str, value: int, *, secret: bytes | None
) -> tuple[bytes, Generation]:
    """A well-formed snapshot of ``source``'s state, newer than ``shard``'s view of it."""
    held = shard.snapshot()[source]
    generation = Generation(held.generation.incarnation, held.generation.age + 5)
    message = FullSnapshot(
        state_name=shard.name,
        source_node=source,
        generation=generation,
        wire_version=TestState.WIRE_VERSION,
        payload=TestState(value=value).serialize_state(),
        created_time=held.created_time,
        modified_time=held.modified_time,
    )
    return WireCodec(secret).encode(message), generation


def test_cluster_secret_drops_unsigned_and_forged_frames() -> None:
    secret = b"the cluster secret"
    with local_cluster(NODES, cluster_secret=secret) as cluster:
        shards = register_all(cluster)
        assert view_maps(shards) == {n: set(NODES) for n in NODES}  # signed traffic works
        shards["b"].mutate(TestState.increment())
        cluster.run_until_idle()
        before = dict(shards["a"].snapshot())

        for key in (None, b"a wrong secret"):
            frame, _ = forged_snapshot(shards["a"], "b", 666, secret=key)
            cluster.inject("b", "a", frame)
        cluster.inject("b", "a", b"garbage")
        cluster.run_until_idle()

        assert cluster.node("a").dropped_messages == {"unauthenticated": 3}
        assert dict(shards["a"].snapshot()) == before
        assert shards["a"].snapshot()["b"].value.value == 1

        # Control: the same frame signed with the right secret is accepted, so the
        # rejections above were about the signature, not the frame.
        frame, generation = forged_snapshot(shards["a"], "b", 666, secret=secret)
        cluster.inject("b", "a", frame)
        cluster.run_until_idle()
        assert shards["a"].snapshot()["b"].generation == generation
        assert shards["a"].snapshot()["b"].value.value == 666


def test_without_a_secret_a_well_formed_frame_is_accepted(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    frame, generation = forged_snapshot(shards["a"], "b", 5, secret=None)
    cluster.inject("b", "a", frame)
    cluster.run_until_idle()
    assert shards["a"].snapshot()["b"].generation == generation
    assert cluster.node("a").dropped_messages == {}


def test_frames_for_an_unregistered_state_are_dropped(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    frame, _ = forged_snapshot(shards["a"], "b", 5, secret=None)
    fresh = cluster.add_node("d")  # nothing registered on d
    cluster.run_until_idle()
    before = fresh.dropped_messages.get("unknown_state", 0)

    cluster.inject("b", "d", frame)
    cluster.run_until_idle()

    assert fresh.dropped_messages.get("unknown_state", 0) == before + 1


# -- lifecycle: join ---------------------------------------------------------------------


def test_join_exchanges_snapshots_both_ways(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    shards["a"].mutate(TestState.increment(4))
    cluster.run_until_idle()

    shards["d"] = cluster.add_node("d").register(TestState)
    cluster.run_until_idle()

    assert view_maps(shards) == {n: {"a", "b", "c", "d"} for n in shards}
    assert shards["d"].snapshot()["a"].value.value == 4
    assert shards["d"].snapshot()["a"].generation == shards["a"].state.generation
    for node in NODES:
        assert shards[node].snapshot()["d"].generation == shards["d"].state.generation


def test_join_before_peers_register(cluster: DeterministicCluster) -> None:
    shards = {"a": cluster.node("a").register(TestState)}
    cluster.run_until_idle()
    assert set(shards["a"].snapshot()) == {"a"}
    shards["b"] = cluster.node("b").register(TestState)
    shards["c"] = cluster.node("c").register(TestState)
    cluster.run_until_idle()
    assert view_maps(shards) == {n: set(NODES) for n in NODES}


def test_state_registered_later_exchanges_with_the_peers_that_have_it(
    cluster: DeterministicCluster,
) -> None:
    register_all(cluster)
    delta_a = cluster.node("a").register(TestDeltaState)
    cluster.run_until_idle()
    assert set(delta_a.snapshot()) == {"a"}
    delta_a.mutate_with_delta(TestDeltaState.bump("k", 2))
    cluster.run_until_idle()

    delta_b = cluster.node("b").register(TestDeltaState)
    cluster.run_until_idle()

    assert set(delta_a.snapshot()) == {"a", "b"}
    assert set(delta_b.snapshot()) == {"a", "b"}
    assert delta_b.snapshot()["a"].value.total == 2
    assert delta_b.snapshot()["a"].generation == delta_a.state.generation
    # c, which lacks the state, neither blocks it nor shows up in it.
    cluster.advance(20.0)
    assert set(delta_a.snapshot()) == {"a", "b"}
    assert set(cluster.node("c").lookup("test_state").snapshot()) == set(NODES)


def test_late_registration_does_not_mark_the_peer_failing(cluster: DeterministicCluster) -> None:
    config = StateConfig(default_staleness=60.0)
    delta_a = cluster.node("a").register(TestDeltaState, config)
    cluster.run_until_idle()  # a's probe of b goes unanswered: b lacks the state
    delta_b = cluster.node("b").register(TestDeltaState, config)
    cluster.run_until_idle()
    assert set(delta_a.snapshot()) == {"a", "b"}  # the exchange itself worked

    cluster.advance(6.0)  # past pull_timeout; b's view is 6 s old, fresh under 60 s

    assert set(delta_b.snapshot()) == {"a", "b"}
    assert [row.consecutive_failures for row in delta_a.sync_status()] == [0]
    assert delta_a.metrics().sync_failures == 0
    assert delta_a.health().status is HealthStatus.HEALTHY


def test_a_peer_without_the_state_is_not_failing(cluster: DeterministicCluster) -> None:
    register_all(cluster)
    delta = {n: cluster.node(n).register(TestDeltaState) for n in ("a", "b")}
    cluster.advance(30.0)
    delta["b"].mutate_with_delta(TestDeltaState.bump("k"))
    cluster.run_until_idle()
    health = delta["a"].health()
    assert health.failing_peers == 0
    assert delta["a"].metrics().sync_failures == 0


# -- lifecycle: leave, crash, restart -------------------------------------------------------


def test_remove_node_removes_its_views_at_once(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    now = cluster.clock.now()

    cluster.remove_node("c")
    cluster.run_until_idle()

    assert cluster.clock.now() == now
    assert view_maps({n: shards[n] for n in ("a", "b")}) == {"a": {"a", "b"}, "b": {"a", "b"}}
    assert [row.node_id for row in shards["a"].sync_status()] == ["b"]
    assert shards["c"].state.generation.age == 0  # the departed handle still reads


def test_late_messages_from_a_departed_node_are_ignored(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    frame, _ = forged_snapshot(shards["a"], "c", 9, secret=None)
    cluster.remove_node("c")
    cluster.run_until_idle()

    cluster.inject("c", "a", frame)
    cluster.run_until_idle()

    assert set(shards["a"].snapshot()) == {"a", "b"}


def test_a_removed_node_may_join_again(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.remove_node("c")
    cluster.run_until_idle()

    shards["c"] = cluster.add_node("c").register(TestState)
    cluster.run_until_idle()

    assert view_maps(shards) == {n: set(NODES) for n in NODES}
    assert shards["a"].snapshot()["c"].generation == shards["c"].state.generation
    generation = shards["c"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["b"].snapshot()["c"].generation == generation


def test_crash_keeps_stale_views_until_failure_timeout() -> None:
    with local_cluster(NODES, failure_timeout=3.0) as cluster:
        shards = register_all(cluster)
        shards["c"].mutate(TestState.increment(2))
        cluster.run_until_idle()

        cluster.crash("c")
        cluster.advance(2.9)
        for node in ("a", "b"):
            assert set(shards[node].snapshot()) == set(NODES)
            assert shards[node].snapshot()["c"].value.value == 2
        assert [row.node_id for row in shards["a"].stale_peers(1.0)] == ["b", "c"]

        cluster.advance(0.2)
        for node in ("a", "b"):
            assert set(shards[node].snapshot()) == {"a", "b"}
            assert [row.node_id for row in shards[node].sync_status()] == [
                "b" if node == "a" else "a"
            ]


def test_restart_without_persistence_is_a_new_incarnation_at_age_zero(
    cluster: DeterministicCluster,
) -> None:
    shards = register_all(cluster)
    for _ in range(3):
        shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    old = shards["a"].state.generation
    assert old.age == 3

    cluster.crash("a")  # peers still hold a at age 3: no failure timeout yet
    restarted = cluster.restart("a")
    assert restarted is cluster.node("a")
    with pytest.raises(StateNotRegisteredError):
        restarted.lookup("test_state")  # a fresh node: nothing registered
    shards["a"] = restarted.register(TestState)
    cluster.run_until_idle()

    new = shards["a"].state.generation
    assert new.age == 0
    assert new.incarnation > old.incarnation
    assert shards["a"].state.value.value == 0
    for node in ("b", "c"):
        assert shards[node].snapshot()["a"].generation == new
        assert shards[node].snapshot()["a"].value.value == 0
    assert view_maps(shards) == {n: set(NODES) for n in NODES}


def test_restart_after_failure_timeout_rejoins(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    shards["a"].mutate(TestState.increment(5))
    cluster.run_until_idle()
    cluster.crash("a")
    cluster.advance(6.0)
    assert set(shards["b"].snapshot()) == {"b", "c"}

    shards["a"] = cluster.restart("a").register(TestState)
    cluster.run_until_idle()

    assert view_maps(shards) == {n: set(NODES) for n in NODES}
    assert shards["b"].snapshot()["a"].generation.age == 0


def test_restart_with_the_same_persistence_resumes(cluster: DeterministicCluster) -> None:
    store = InMemoryPersistence()
    shards = {"a": cluster.node("a").register(TestState, StateConfig(persistence=store))}
    shards |= {n: cluster.node(n).register(TestState) for n in ("b", "c")}
    cluster.run_until_idle()
    for _ in range(3):
        shards["a"].mutate(TestState.increment(2))
    cluster.run_until_idle()
    old = shards["a"].state

    cluster.crash("a")
    cluster.advance(1.0)
    shards["a"] = cluster.restart("a").register(TestState, StateConfig(persistence=store))
    cluster.run_until_idle()

    assert shards["a"].state.generation == old.generation
    assert shards["a"].state.value == old.value
    assert shards["a"].state.created_time == old.created_time
    nxt = shards["a"].mutate(TestState.increment())
    assert nxt == old.generation.next()
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].generation == nxt
    assert shards["b"].snapshot()["a"].value.value == 7


def test_late_node_left_leaves_no_hole(cluster: DeterministicCluster) -> None:
    """Crash then restart before failure_timeout: the NodeLeft arrives after the re-join."""
    shards = register_all(cluster)
    shards["a"].mutate(TestState.increment(3))
    cluster.run_until_idle()

    cluster.crash("b")
    shards["b"] = cluster.restart("b").register(TestState)
    cluster.run_until_idle()

    # The join exchange completed in both directions, with no time passing.
    assert view_maps(shards) == {n: set(NODES) for n in NODES}
    assert shards["b"].snapshot()["a"].value.value == 3

    cluster.advance(6.0)  # the late NodeLeft of the old b arrives now
    assert view_maps(shards) == {n: set(NODES) for n in NODES}

    generation = shards["b"].mutate(TestState.increment(9))
    cluster.run_until_idle()
    for node in ("a", "c"):
        assert shards[node].snapshot()["b"].generation == generation
    assert shards["a"].query(values, max_staleness=1.0) == {"a": 3, "b": 9, "c": 0}


def test_partition_then_heal_converges_by_itself() -> None:
    config = StateConfig(
        sync_strategy=SyncStrategy(PushMode.ACTIVE_PUSH, periodic_full_sync=2.0),
        pull_timeout=1.0,
    )
    with local_cluster(NODES) as cluster:
        shards = register_all(cluster, config)
        cluster.partition(["a"], ["b", "c"])
        a_gen = shards["a"].mutate(TestState.increment(5))
        c_gen = shards["c"].mutate(TestState.increment(7))
        cluster.advance(3.0)

        assert shards["b"].snapshot()["a"].value.value == 0
        assert shards["b"].snapshot()["c"].generation == c_gen
        with pytest.raises(StalePeerError) as caught:
            shards["b"].query(values, max_staleness=1.0)
        assert caught.value.node_id == "a"
        with pytest.raises(StalePeerError):
            shards["a"].query(values, max_staleness=1.0)

        cluster.heal()
        cluster.advance(2.5)  # at least one periodic full sync from everyone

        for node in NODES:
            assert shards[node].snapshot()["a"].generation == a_gen, node
            assert shards[node].snapshot()["c"].generation == c_gen, node
        sent = cluster.messages_sent
        assert shards["b"].query(values, max_staleness=2.0) == {"a": 5, "b": 0, "c": 7}
        assert cluster.messages_sent == sent  # fresh again: the fast path


# -- shutdown -----------------------------------------------------------------------------


def test_shutdown_makes_later_calls_fail_fast(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    node = cluster.node("a")
    cluster.advance(3.0)
    now = cluster.clock.now()

    node.shutdown()

    assert node.closed
    with pytest.raises(NodeShutdownError) as caught:
        node.register(TestDeltaState)
    assert isinstance(caught.value, DStateError)
    with pytest.raises(NodeShutdownError):
        shards["a"].mutate(TestState.increment())
    with pytest.raises(NodeShutdownError):
        shards["a"].mutate_with_delta(TestDeltaState.bump("k"))
    with pytest.raises(NodeShutdownError):
        shards["a"].query(values, max_staleness=1.0)  # would need the slow path
    with pytest.raises(NodeShutdownError):
        shards["a"].subscribe(lambda node, old, new: None)
    assert cluster.clock.now() == now  # no waiting for a pull_timeout
    assert shards["a"].state.generation.age == 0


def test_shutdown_is_idempotent(cluster: DeterministicCluster) -> None:
    register_all(cluster)
    node = cluster.node("b")
    node.shutdown()
    node.shutdown()
    assert node.closed
    cluster.run_until_idle()
    cluster.close()  # shuts b down a third time
    assert node.closed


def test_fast_path_reads_still_work_after_shutdown(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.node("a").shutdown()
    assert shards["a"].query(values, max_staleness=10.0) == {"a": 0, "b": 0, "c": 0}
    assert set(shards["a"].snapshot()) == set(NODES)


def test_other_nodes_keep_working_after_one_shuts_down(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    cluster.node("c").shutdown()
    generation = shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].generation == generation


# -- construction ---------------------------------------------------------------------------


def test_node_rejects_bad_arguments(cluster: DeterministicCluster) -> None:
    runtime = cluster.runtime("a")
    with pytest.raises(TypeError, match="change_feed"):
        DStateNode(runtime, change_feed=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        DStateNode(runtime, clock=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="node_id"):
        DStateNode(object())  # type: ignore[arg-type]


def test_node_repr_names_it(cluster: DeterministicCluster) -> None:
    node = cluster.node("a")
    node.register(TestState)
    assert "'a'" in repr(node)
    assert "test_state" in repr(node)


def test_frames_refused_by_a_shard_are_counted_at_the_node() -> None:
    """A well-formed frame from a non-member is refused by the shard and counted by reason."""
    from dstate_core import Generation
    from dstate_core.testing import TestState, local_cluster
    from dstate_core.wire._codec import WireCodec
    from dstate_core.wire._messages import FullSnapshot

    with local_cluster(["a", "b"]) as cluster:
        shard = cluster.node("a").register(TestState)
        cluster.run_until_idle()
        forged = FullSnapshot(
            "test_state", "intruder", Generation(1, 1), 1, TestState().serialize_state(), 0, 0
        )
        cluster.inject("b", "a", WireCodec().encode(forged))
        cluster.run_until_idle()
        assert cluster.node("a").dropped_messages == {"unknown_node": 1}
        assert "intruder" not in shard.snapshot()
