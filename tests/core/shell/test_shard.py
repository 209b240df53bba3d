"""Shard: query fast/slow paths, mutation, snapshot/state, subscribe, diagnostics.

Everything runs on the deterministic cluster: messages move only when the test
drives the network, and time is virtual.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from dstate_core import (
    DStateError,
    Generation,
    MutationError,
    PersistError,
    PushMode,
    QueryError,
    Shard,
    StalePeerError,
    StateConfig,
    StateViewObject,
    Subscription,
    SyncStrategy,
)
from dstate_core.testing import (
    DeterministicCluster,
    FailingPersistence,
    TestDeltaState,
    TestState,
    local_cluster,
)

NODES = ["a", "b", "c"]

#: No push on mutation, no periodic sync: peers learn of a change only by a pull.
NO_PUSH = SyncStrategy(PushMode.NONE)


def values(views: Mapping[str, StateViewObject[Any]]) -> dict[str, int]:
    """The projection most tests use: node id -> TestState.value."""
    return {node: view.value.value for node, view in views.items()}


def generations(shard: Shard[Any]) -> dict[str, Generation]:
    return {node: view.generation for node, view in shard.snapshot().items()}


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


# -- query: fast path ---------------------------------------------------------------


def test_fast_path_sees_every_node_and_sends_nothing(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    shards["a"].mutate(TestState.increment(3))
    shards["b"].mutate(TestState.increment(5))
    cluster.run_until_idle()
    sent, now = cluster.messages_sent, cluster.clock.now()

    for node, shard in shards.items():
        seen = shard.query(values, max_staleness=1.0)
        assert seen == {"a": 3, "b": 5, "c": 0}, node

    assert cluster.messages_sent == sent
    assert cluster.clock.now() == now


def test_fast_path_allows_staleness_up_to_the_bound_inclusive(
    cluster: DeterministicCluster,
) -> None:
    shards = register_all(cluster)
    cluster.advance(2.0)
    sent = cluster.messages_sent

    assert shards["a"].query(values, max_staleness=2.0) == {"a": 0, "b": 0, "c": 0}
    assert cluster.messages_sent == sent  # exactly at the bound is not stale

    shards["a"].query(values, max_staleness=1.999)
    assert cluster.messages_sent == sent + 4  # both peers pulled: request + reply each


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, -math.inf])
def test_query_rejects_negative_or_nan_staleness(cluster: DeterministicCluster, bad: float) -> None:
    shards = register_all(cluster)
    with pytest.raises(ValueError, match="max_staleness"):
        shards["a"].query(values, max_staleness=bad)


def test_query_checks_on_stale(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    with pytest.raises(ValueError, match="on_stale"):
        shards["a"].query(values, 1.0, on_stale="ignore")  # type: ignore[arg-type]


def test_none_staleness_uses_default_staleness(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(default_staleness=2.0))
    cluster.advance(1.5)
    sent = cluster.messages_sent
    shards["a"].query(values)
    assert cluster.messages_sent == sent  # 1.5 s <= 2.0 s: fresh

    cluster.advance(1.0)  # 2.5 s old now; fresh under the global default of 5 s, not 2 s
    shards["a"].query(values)
    assert cluster.messages_sent == sent + 4


def test_infinite_staleness_never_pulls_even_when_pending() -> None:
    config = StateConfig(sync_strategy=SyncStrategy.feed_lazy_pull())
    with local_cluster(["a", "b"]) as cluster:
        shards = register_all(cluster, config)
        shards["a"].mutate(TestState.increment(7))
        cluster.advance(1.0)  # the feed batch leaves; b marks a's view pending
        assert shards["b"].snapshot()["a"].pending_remote_generation == Generation(
            shards["a"].state.generation.incarnation, 1
        )
        cluster.advance(100.0)
        sent = cluster.messages_sent

        assert shards["b"].query(values, max_staleness=math.inf) == {"a": 0, "b": 0}
        assert cluster.messages_sent == sent

        # A finite bound does pull the pending view, which proves it really was pending.
        assert shards["b"].query(values, max_staleness=1000.0) == {"a": 7, "b": 0}
        assert cluster.messages_sent == sent + 2
        assert shards["b"].snapshot()["a"].pending_remote_generation is None


def test_pending_view_is_pulled_even_when_young() -> None:
    config = StateConfig(sync_strategy=SyncStrategy.feed_lazy_pull())
    with local_cluster(["a", "b"]) as cluster:
        shards = register_all(cluster, config)
        shards["a"].mutate(TestState.increment(2))
        cluster.advance(1.0)
        assert shards["b"].snapshot()["a"].value.value == 0
        assert shards["b"].query(values, max_staleness=60.0) == {"a": 2, "b": 0}


# -- query: slow path ---------------------------------------------------------------


def test_slow_path_pulls_stale_peers_then_answers(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(sync_strategy=NO_PUSH))
    shards["b"].mutate(TestState.increment(4))
    shards["c"].mutate(TestState.increment(6))
    cluster.run_until_idle()
    assert shards["a"].snapshot()["b"].value.value == 0  # nothing was pushed
    cluster.advance(3.0)
    sent = cluster.messages_sent

    assert shards["a"].query(values, max_staleness=1.0) == {"a": 0, "b": 4, "c": 6}
    assert cluster.messages_sent == sent + 4
    now = cluster.clock.now()
    assert {n: v.synced_at for n, v in shards["a"].snapshot().items() if n != "a"} == {
        "b": now,
        "c": now,
    }
    # The pulled views are fresh now: the same query takes the fast path.
    shards["a"].query(values, max_staleness=1.0)
    assert cluster.messages_sent == sent + 4


def test_slow_path_pulls_only_the_stale_peers(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(sync_strategy=SyncStrategy.active_push()))
    cluster.advance(3.0)
    shards["b"].mutate(TestState.increment())  # refreshes b's view on a
    cluster.run_until_idle()
    sent = cluster.messages_sent

    shards["a"].query(values, max_staleness=1.0)
    assert cluster.messages_sent == sent + 2  # only c was pulled


def test_unreachable_peer_raises_stale_peer_error(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(pull_timeout=2.0))
    cluster.advance(3.0)
    cluster.partition(["a", "b"], ["c"])
    start = cluster.clock.now()

    with pytest.raises(StalePeerError) as caught:
        shards["a"].query(values, max_staleness=1.0)

    error = caught.value
    assert isinstance(error, QueryError)
    assert isinstance(error, DStateError)
    assert error.node_id == "c"
    assert error.last_sync_time == 0.0  # c's view was last refreshed at registration
    assert "c" in str(error)
    assert error.stale_nodes == ("c",)  # b answered the pull
    assert cluster.clock.now() == pytest.approx(start + 2.0)  # pull_timeout, in virtual time


def test_on_stale_return_answers_with_what_is_there(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(sync_strategy=NO_PUSH, pull_timeout=1.0))
    shards["b"].mutate(TestState.increment(2))
    shards["c"].mutate(TestState.increment(9))
    cluster.advance(3.0)
    cluster.partition(["a", "b"], ["c"])

    got = shards["a"].query(values, max_staleness=1.0, on_stale="return")

    assert got == {"a": 0, "b": 2, "c": 0}  # b refreshed, c's old view kept


def test_pull_on_query_off_raises_at_once_sending_nothing(cluster: DeterministicCluster) -> None:
    config = StateConfig(sync_strategy=SyncStrategy(pull_on_query=False))
    shards = register_all(cluster, config)
    cluster.advance(3.0)
    sent, now = cluster.messages_sent, cluster.clock.now()

    with pytest.raises(StalePeerError) as caught:
        shards["a"].query(values, max_staleness=1.0)

    assert caught.value.node_id in {"b", "c"}
    assert set(caught.value.stale_nodes) == {"b", "c"}
    assert cluster.messages_sent == sent
    assert cluster.clock.now() == now
    # "return" answers from the local views, still sending nothing.
    assert shards["a"].query(values, 1.0, on_stale="return") == {"a": 0, "b": 0, "c": 0}
    assert cluster.messages_sent == sent


def test_own_entry_is_never_stale() -> None:
    config = StateConfig(sync_strategy=SyncStrategy(pull_on_query=False))
    with local_cluster(["a"]) as cluster:
        shard = cluster.node("a").register(TestState, config)
        cluster.advance(100.0)
        assert shard.query(values, max_staleness=0.0) == {"a": 0}
        assert shard.stale_peers(0.0) == []
        assert cluster.messages_sent == 0


def test_a_peer_leaving_during_a_pull_ends_the_wait() -> None:
    with local_cluster(NODES, failure_timeout=1.0) as cluster:
        shards = register_all(cluster, StateConfig(pull_timeout=5.0))
        cluster.advance(3.0)
        cluster.crash("c")
        start = cluster.clock.now()

        assert shards["a"].query(values, max_staleness=1.0) == {"a": 0, "b": 0}
        assert cluster.clock.now() == pytest.approx(start + 1.0)  # NodeLeft, not pull_timeout


class Boom(Exception):
    pass


def explode(views: Mapping[str, StateViewObject[Any]]) -> int:
    raise Boom("projection failed")


def test_raising_projection_propagates_and_breaks_nothing(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    with pytest.raises(Boom):
        shards["a"].query(explode, max_staleness=10.0)  # fast path
    cluster.advance(3.0)
    with pytest.raises(Boom):
        shards["a"].query(explode, max_staleness=1.0)  # slow path

    assert shards["a"].query(values, max_staleness=1.0) == {"a": 0, "b": 0, "c": 0}
    shards["b"].mutate(TestState.increment(8))
    cluster.run_until_idle()
    assert shards["a"].query(values, max_staleness=1.0) == {"a": 0, "b": 8, "c": 0}
    assert shards["c"].snapshot()["b"].value.value == 8


# -- mutation -------------------------------------------------------------------------


def test_mutate_returns_the_next_generation_each_time(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    first = shards["a"].state.generation
    assert first.age == 0

    got = [shards["a"].mutate(TestState.increment()) for _ in range(3)]

    assert got == [Generation(first.incarnation, age) for age in (1, 2, 3)]
    assert shards["a"].state.generation == got[-1]
    assert shards["a"].state.value.value == 3
    assert shards["a"].metrics().total_mutations == 3


def test_mutation_may_return_a_new_state(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    shards["a"].mutate(lambda s: TestState(value=41, label="new"))
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].value == TestState(value=41, label="new")


def test_push_happens_only_when_the_network_is_driven(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    before = shards["b"].snapshot()["a"]

    generation = shards["a"].mutate(TestState.increment(2))

    assert shards["a"].snapshot()["a"].value.value == 2  # own view at once
    assert shards["b"].snapshot()["a"] is before  # nothing delivered inside mutate
    cluster.run_until_idle()
    assert shards["b"].snapshot()["a"].generation == generation
    assert shards["c"].snapshot()["a"].value.value == 2


def test_raising_closure_changes_nothing(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    own_before = shards["a"].state
    peers_before = {n: s.snapshot()["a"] for n, s in shards.items()}
    sent = cluster.messages_sent

    def half_done(state: TestState) -> None:
        state.value = 1000  # changed in place, then fails
        state.items["x"] = 1
        raise Boom("closure failed")

    with pytest.raises(Boom, match="closure failed"):
        shards["a"].mutate(half_done)
    cluster.run_until_idle()

    assert shards["a"].state is own_before
    assert shards["a"].state.value.value == 1
    assert shards["a"].state.value.items == {}
    assert {n: s.snapshot()["a"] for n, s in shards.items()} == peers_before
    assert cluster.messages_sent == sent
    assert shards["a"].metrics().total_mutations == 1
    # The next mutation takes the next age: the failed one consumed none.
    assert shards["a"].mutate(TestState.increment()).age == 2


def test_failed_save_is_a_mutation_error_and_changes_nothing(
    cluster: DeterministicCluster,
) -> None:
    store = FailingPersistence()
    shard_a = cluster.node("a").register(TestState, StateConfig(persistence=store))
    others = {n: cluster.node(n).register(TestState) for n in ("b", "c")}
    cluster.run_until_idle()
    good = shard_a.mutate(TestState.increment())
    cluster.run_until_idle()
    own_before = shard_a.state
    peers_before = {n: s.snapshot()["a"] for n, s in others.items()}
    sent = cluster.messages_sent

    store.fail_next_save()
    with pytest.raises(MutationError) as caught:
        shard_a.mutate(TestState.increment(100))
    cluster.run_until_idle()

    assert isinstance(caught.value.__cause__, PersistError)
    assert "injected save failure" in str(caught.value)  # the store's message is included
    assert shard_a.state is own_before
    assert shard_a.state.generation == good
    assert shard_a.snapshot()["a"].generation == good
    assert {n: s.snapshot()["a"] for n, s in others.items()} == peers_before
    assert cluster.messages_sent == sent
    assert store.saved is not None
    assert store.saved.generation == good
    # The next save works and takes the next age.
    assert shard_a.mutate(TestState.increment()) == good.next()
    cluster.run_until_idle()
    assert others["b"].snapshot()["a"].value.value == 2


def test_wrong_return_type_is_a_type_error(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    before = shards["a"].state

    with pytest.raises(TypeError, match="returned an int"):
        shards["a"].mutate(lambda s: 5)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError):
        shards["a"].mutate(lambda s: TestDeltaState())  # type: ignore[arg-type,return-value]

    assert shards["a"].state is before


def test_mutate_needs_a_callable(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    with pytest.raises(TypeError):
        shards["a"].mutate(42)  # type: ignore[arg-type]


def test_mutate_with_delta_on_a_simple_state_is_a_type_error(
    cluster: DeterministicCluster,
) -> None:
    shards = register_all(cluster)
    with pytest.raises(TypeError, match="mutate_with_delta"):
        shards["a"].mutate_with_delta(TestState.increment())
    assert shards["a"].state.generation.age == 0


def test_mutate_with_delta_replicates_the_view(cluster: DeterministicCluster) -> None:
    shards = {n: cluster.node(n).register(TestDeltaState) for n in NODES}
    cluster.run_until_idle()

    generation = shards["a"].mutate_with_delta(TestDeltaState.bump("x", 3))
    cluster.run_until_idle()

    assert generation.age == 1
    view = shards["b"].snapshot()["a"]
    assert view.generation == generation
    assert view.value.counters == {"x": 3}
    assert view.value.total == 3
    assert shards["b"].metrics().deltas_received == 1


# -- snapshot and state -----------------------------------------------------------------


def test_snapshot_is_read_only_and_holds_the_own_entry(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    views = shards["a"].snapshot()
    assert set(views) == set(NODES)
    assert views["a"].source_node == "a"
    assert views["a"].generation == shards["a"].state.generation
    with pytest.raises(TypeError):
        views["x"] = views["a"]  # type: ignore[index]

    shards["a"].mutate(TestState.increment())
    assert views["a"].value.value == 0  # an earlier snapshot does not move
    assert shards["a"].snapshot()["a"].value.value == 1


def test_state_is_the_own_state_object(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    start_ms = cluster.clock.wall_ms()
    cluster.advance(2.0)
    shards["a"].mutate(TestState.increment(5))

    own = shards["a"].state
    assert isinstance(own.value, TestState)
    assert own.value.value == 5
    assert own.storage_version == TestState.STORAGE_VERSION
    assert own.created_time == start_ms
    assert own.modified_time == start_ms + 2000


# -- subscribe ------------------------------------------------------------------------

Change = tuple[str, Generation | None, Generation | None]


def recorder(into: list[Change]) -> Any:
    def callback(node: str, old: StateViewObject[Any] | None, new: StateViewObject[Any] | None):
        into.append((node, old.generation if old else None, new.generation if new else None))

    return callback


def test_subscribe_reports_own_and_peer_changes(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    seen: list[Change] = []
    subscription = shards["a"].subscribe(recorder(seen))
    assert isinstance(subscription, Subscription)
    a0, b0 = shards["a"].state.generation, shards["b"].state.generation

    a1 = shards["a"].mutate(TestState.increment())
    b1 = shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()

    assert seen == [("a", a0, a1), ("b", b0, b1)]


def test_subscribe_reports_peers_leaving_and_joining(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    seen: list[Change] = []
    shards["a"].subscribe(recorder(seen))
    c0 = shards["c"].state.generation

    cluster.remove_node("c")
    cluster.run_until_idle()
    assert seen == [("c", c0, None)]

    seen.clear()
    d = cluster.add_node("d").register(TestState)
    cluster.run_until_idle()
    assert seen == [("d", None, d.state.generation)]


def test_raising_callback_is_logged_and_replication_continues(
    cluster: DeterministicCluster, caplog: pytest.LogCaptureFixture
) -> None:
    shards = register_all(cluster)
    seen: list[Change] = []

    def bad(node: str, old: Any, new: Any) -> None:
        raise Boom("subscriber failed")

    shards["a"].subscribe(bad)
    shards["a"].subscribe(recorder(seen))
    caplog.set_level(logging.ERROR, logger="dstate.shard")

    b1 = shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()
    b2 = shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()

    errors = [r for r in caplog.records if r.name == "dstate.shard"]
    assert len(errors) == 2
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], Boom)
    assert "test_state" in errors[0].getMessage()
    assert "'b'" in errors[0].getMessage()
    assert [change[2] for change in seen] == [b1, b2]  # the next subscriber still ran
    assert shards["a"].snapshot()["b"].generation == b2


def test_cancel_stops_callbacks_and_is_idempotent(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    kept: list[Change] = []
    dropped: list[Change] = []
    shards["a"].subscribe(recorder(kept))
    subscription = shards["a"].subscribe(recorder(dropped))

    shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()
    subscription.cancel()
    subscription.cancel()
    shards["b"].mutate(TestState.increment())
    shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()

    assert len(dropped) == 1
    assert len(kept) == 3


def test_cancel_before_delivery_stops_queued_callbacks(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    seen: list[Change] = []
    subscription = shards["a"].subscribe(recorder(seen))
    shards["a"].mutate(TestState.increment())  # its notification waits in the notifier
    subscription.cancel()
    cluster.run_until_idle()
    assert seen == []


def test_subscribe_needs_a_callable(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    with pytest.raises(TypeError):
        shards["a"].subscribe("nope")  # type: ignore[arg-type]


# -- diagnostics ----------------------------------------------------------------------


def test_sync_status_has_one_row_per_peer(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    b1 = shards["b"].mutate(TestState.increment())
    cluster.advance(1.0)

    rows = {row.node_id: row for row in shards["a"].sync_status()}

    assert set(rows) == {"b", "c"}
    assert rows["b"].state_name == "test_state"
    assert rows["b"].local_generation == rows["b"].remote_generation == b1
    assert rows["c"].local_generation == shards["c"].state.generation
    assert rows["b"].consecutive_failures == 0
    assert rows["b"].gap_count == 0
    assert rows["b"].last_error is None
    assert rows["b"].last_sync_time == 0.0


def test_sync_status_records_a_failed_pull(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(pull_timeout=1.0))
    cluster.advance(2.0)
    cluster.partition(["a", "b"], ["c"])
    with pytest.raises(StalePeerError):
        shards["a"].query(values, max_staleness=1.0)

    rows = {row.node_id: row for row in shards["a"].sync_status()}
    assert rows["c"].consecutive_failures == 1
    assert rows["c"].last_error is not None
    assert "pull_timeout" in rows["c"].last_error
    assert rows["c"].last_attempt_time is not None
    assert 2.0 <= rows["c"].last_attempt_time <= 3.0  # started at 2.0, failed at 3.0
    assert rows["c"].last_sync_time == 0.0
    assert rows["b"].consecutive_failures == 0
    assert rows["b"].last_sync_time == 2.0

    cluster.heal()
    shards["a"].query(values, max_staleness=1.0)
    rows = {row.node_id: row for row in shards["a"].sync_status()}
    assert rows["c"].consecutive_failures == 0
    assert rows["c"].last_error is None


def test_stale_peers(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    assert shards["a"].stale_peers(1.0) == []
    cluster.advance(2.0)
    shards["b"].mutate(TestState.increment())
    cluster.run_until_idle()

    assert [row.node_id for row in shards["a"].stale_peers(1.0)] == ["c"]
    assert [row.node_id for row in shards["a"].stale_peers(0.0)] == ["c"]  # b: 0 s old
    cluster.advance(0.5)
    assert sorted(row.node_id for row in shards["a"].stale_peers(0.1)) == ["b", "c"]
    with pytest.raises(ValueError, match="max_staleness"):
        shards["a"].stale_peers(-1.0)


def test_metrics_count_mutations_snapshots_and_bytes(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster)
    before_a, before_b = shards["a"].metrics(), shards["b"].metrics()

    for _ in range(3):
        shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()

    after_a, after_b = shards["a"].metrics(), shards["b"].metrics()
    assert after_a.total_mutations == before_a.total_mutations + 3
    assert after_a.snapshots_sent == before_a.snapshots_sent + 6  # 3 mutations x 2 peers
    assert after_a.bytes_sent > before_a.bytes_sent
    assert after_b.snapshots_received == before_b.snapshots_received + 3
    assert after_b.bytes_received > before_b.bytes_received
    assert after_b.total_mutations == 0
    assert after_a.sync_failures == after_b.sync_failures == 0
    assert after_a.deltas_sent == 0


def test_metrics_count_a_failed_pull(cluster: DeterministicCluster) -> None:
    shards = register_all(cluster, StateConfig(pull_timeout=1.0))
    cluster.advance(2.0)
    cluster.partition(["a"], ["b", "c"])
    before = shards["a"].metrics().sync_failures
    shards["a"].query(values, max_staleness=1.0, on_stale="return")
    assert shards["a"].metrics().sync_failures == before + 2
