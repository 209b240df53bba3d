"""No single frame can freeze a view: forged generations are refused or overruled by the owner.

Without a cluster secret anyone who reaches a node can send it a well-formed
frame in a member's name. The replica refuses generations no honest owner
could have made (an incarnation beyond its clock plus ``max_clock_skew``), and
whatever else it took is undone by the owner's own answer once a later
message contradicts it (``docs/protocol.md#forged-generations``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstate_core import Generation, StateConfig, SyncStrategy
from dstate_core.testing import DeterministicCluster, TestDeltaState, TestState, local_cluster
from dstate_core.wire import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaUpdate,
    FullSnapshot,
    SnapshotReply,
    WireCodec,
)

SECRET = b"s" * 32
SKEW = 300.0

STRATEGIES = {
    "active_push": SyncStrategy.active_push,
    "feed_lazy_pull": SyncStrategy.feed_lazy_pull,
    "periodic_only": lambda: SyncStrategy.periodic_only(2.0),
}


@pytest.fixture
def cluster() -> Iterator[DeterministicCluster]:
    with local_cluster(["a", "b"]) as made:
        yield made


def start(cluster: DeterministicCluster, state_type: type, strategy: str = "active_push") -> None:
    config = StateConfig(sync_strategy=STRATEGIES[strategy]())
    for node in cluster.node_ids:
        cluster.node(node).register(state_type, config)
    cluster.run_until_idle()


def mutate(cluster: DeterministicCluster, state_type: type, n: int = 1) -> None:
    shard = cluster.node("a").lookup(state_type.NAME)
    for _ in range(n):
        if state_type is TestState:
            shard.mutate(TestState.increment())
        else:
            shard.mutate_with_delta(TestDeltaState.bump("k"))


def sync(cluster: DeterministicCluster, state_type: type) -> None:
    """What brings b up to date under any strategy: time, a tight query, delivery."""
    cluster.advance(2.5)
    cluster.node("b").lookup(state_type.NAME).query(lambda v: None, 0.0, on_stale="return")
    cluster.run_until_idle()


def view_of_a(cluster: DeterministicCluster, state_type: type) -> Any:
    return cluster.node("b").lookup(state_type.NAME).snapshot()["a"]


def own_of_a(cluster: DeterministicCluster, state_type: type) -> Any:
    return cluster.node("a").lookup(state_type.NAME).snapshot()["a"]


def converged(cluster: DeterministicCluster, state_type: type) -> bool:
    view, own = view_of_a(cluster, state_type), own_of_a(cluster, state_type)
    return view.generation == own.generation and view.value == own.value


def real(cluster: DeterministicCluster, state_type: type) -> Generation:
    gen: Generation = own_of_a(cluster, state_type).generation
    return gen


def snapshot(state_type: type, gen: Generation, payload: bytes | None = None) -> FullSnapshot:
    if payload is None:
        value = TestState(value=999) if state_type is TestState else TestDeltaState.View(total=999)
        payload = (
            value.serialize_state()
            if state_type is TestState
            else TestDeltaState.serialize_view(value)
        )
    return FullSnapshot(state_type.NAME, "a", gen, 1, payload, 0, 0)


def forged_delta(gen: Generation, value: int = 999) -> DeltaUpdate:
    delta = TestDeltaState.Delta(key="forged", value=value, total=value)
    return DeltaUpdate(
        TestDeltaState.NAME, "a", gen, 1, TestDeltaState.serialize_delta(delta), 0, 0
    )


class TestFutureIncarnations:
    def test_an_incarnation_beyond_the_clock_is_refused_and_counted(
        self, cluster: DeterministicCluster
    ) -> None:
        start(cluster, TestState)
        ahead = Generation(cluster.clock.wall_ms() + int(SKEW * 1000) + 1, 5)
        before = view_of_a(cluster, TestState)
        cluster.inject("a", "b", WireCodec().encode(snapshot(TestState, ahead)))
        cluster.run_until_idle()
        assert view_of_a(cluster, TestState) is before
        assert cluster.node("b").dropped_messages["future_generation"] == 1
        mutate(cluster, TestState)
        cluster.run_until_idle()
        assert converged(cluster, TestState)

    def test_within_the_allowance_is_taken_then_overruled(
        self, cluster: DeterministicCluster
    ) -> None:
        start(cluster, TestState)
        ahead = Generation(cluster.clock.wall_ms() + int(SKEW * 1000) - 1, 0)
        cluster.inject("a", "b", WireCodec().encode(snapshot(TestState, ahead)))
        cluster.run_until_idle()
        assert view_of_a(cluster, TestState).generation == ahead  # looks like a restart
        mutate(cluster, TestState)
        cluster.run_until_idle()
        assert converged(cluster, TestState)
        assert cluster.node("b").dropped_messages["unproduced_generation"] == 1

    def test_future_announcements_are_refused(self, cluster: DeterministicCluster) -> None:
        start(cluster, TestState, "feed_lazy_pull")
        ahead = Generation(cluster.clock.wall_ms() + int(SKEW * 1000) + 1, 1)
        feed = BatchedChangeFeed("a", (ChangeNotification(TestState.NAME, "a", ahead),))
        cluster.inject("a", "b", WireCodec().encode(feed))
        cluster.run_until_idle()
        assert view_of_a(cluster, TestState).pending_remote_generation is None
        assert cluster.node("b").dropped_messages["future_generation"] == 1

    def test_the_allowance_is_configurable_and_checked(self) -> None:
        with local_cluster(["a"]) as made:
            runtime = made.runtime("a")
            made.node("a").shutdown()
            from dstate_core import DStateNode

            with pytest.raises(ValueError, match="max_clock_skew"):
                DStateNode(runtime, max_clock_skew=-1.0)
            with pytest.raises(ValueError, match="max_clock_skew"):
                DStateNode(runtime, max_clock_skew=float("nan"))


class TestOverruledByTheOwner:
    @pytest.mark.parametrize("state_type", [TestState, TestDeltaState])
    def test_a_forged_higher_age_is_undone_by_the_next_mutation(
        self, cluster: DeterministicCluster, state_type: type
    ) -> None:
        start(cluster, state_type)
        mutate(cluster, state_type, 2)
        cluster.run_until_idle()
        frozen = Generation(real(cluster, state_type).incarnation, 2**62)
        cluster.inject("a", "b", WireCodec().encode(snapshot(state_type, frozen)))
        cluster.run_until_idle()
        assert view_of_a(cluster, state_type).generation == frozen
        mutate(cluster, state_type)
        cluster.run_until_idle()
        assert converged(cluster, state_type)
        shard = cluster.node("b").lookup(state_type.NAME)
        assert [row.remote_generation for row in shard.sync_status()] == [real(cluster, state_type)]
        assert cluster.node("b").health_check().status.name == "HEALTHY"

    def test_a_forged_delta_of_the_next_age_is_undone(self, cluster: DeterministicCluster) -> None:
        start(cluster, TestDeltaState)
        forged = forged_delta(real(cluster, TestDeltaState).next())
        cluster.inject("a", "b", WireCodec().encode(forged))
        cluster.run_until_idle()
        assert view_of_a(cluster, TestDeltaState).value.counters == {"forged": 999}
        mutate(cluster, TestDeltaState)  # the real delta of that same age: a conflict
        cluster.run_until_idle()
        assert converged(cluster, TestDeltaState)
        assert view_of_a(cluster, TestDeltaState).value.counters == {"k": 1}

    def test_an_honest_duplicate_asks_nothing(self, cluster: DeterministicCluster) -> None:
        start(cluster, TestDeltaState)
        mutate(cluster, TestDeltaState)
        cluster.run_until_idle()
        sent = cluster.messages_sent
        view = view_of_a(cluster, TestDeltaState)
        same = DeltaUpdate(
            TestDeltaState.NAME,
            "a",
            view.generation,
            1,
            TestDeltaState.serialize_delta(TestDeltaState.Delta(key="k", value=1, total=1)),
            view.created_time,
            view.modified_time,
        )
        cluster.inject("a", "b", WireCodec().encode(same))
        cluster.run_until_idle()
        assert cluster.messages_sent == sent
        assert view_of_a(cluster, TestDeltaState) is view

    def test_a_forged_floor_is_undone_when_the_owner_rejoins(
        self, cluster: DeterministicCluster
    ) -> None:
        start(cluster, TestState)
        frozen = Generation(real(cluster, TestState).incarnation, 2**62)
        cluster.inject("a", "b", WireCodec().encode(snapshot(TestState, frozen)))
        cluster.run_until_idle()
        cluster.remove_node("a")  # b keeps the forged generation as a's floor
        cluster.run_until_idle()
        cluster.add_node("a").register(TestState)
        cluster.run_until_idle()
        assert converged(cluster, TestState)

    def test_a_forged_reply_to_no_pull_is_judged_like_a_push(
        self, cluster: DeterministicCluster
    ) -> None:
        start(cluster, TestState)
        frozen = Generation(real(cluster, TestState).incarnation, 7)
        reply = SnapshotReply(12345, snapshot(TestState, frozen))
        cluster.inject("a", "b", WireCodec().encode(reply))
        cluster.run_until_idle()
        mutate(cluster, TestState)
        cluster.run_until_idle()
        assert converged(cluster, TestState)


def _forge(kind: str, base: Generation, age_shift: int, inc_shift: int, state_type: type) -> Any:
    gen = Generation(max(0, base.incarnation + inc_shift), max(0, base.age + age_shift))
    if kind == "snapshot":
        return snapshot(state_type, gen)
    if kind == "reply":
        return SnapshotReply(1 + abs(age_shift) % 5, snapshot(state_type, gen))
    if kind == "delta":
        return forged_delta(gen)
    return BatchedChangeFeed("a", (ChangeNotification(state_type.NAME, "a", gen),))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    state_type=st.sampled_from([TestState, TestDeltaState]),
    strategy=st.sampled_from(sorted(STRATEGIES)),
    kind=st.sampled_from(["snapshot", "reply", "delta", "feed"]),
    age_shift=st.one_of(st.integers(-3, 3), st.just(2**40)),
    inc_shift=st.sampled_from([-1, 0, 1, 60_000, 10**9]),
    secret=st.booleans(),
)
def test_one_injected_frame_never_freezes_a_view(
    state_type: type, strategy: str, kind: str, age_shift: int, inc_shift: int, secret: bool
) -> None:
    """For any single injected frame, secret or not, b's view of a converges to a's real
    state after a's next mutation and a sync."""
    with local_cluster(["a", "b"], cluster_secret=SECRET if secret else None) as cluster:
        start(cluster, state_type, strategy)
        mutate(cluster, state_type, 2)
        sync(cluster, state_type)
        frame = _forge(kind, real(cluster, state_type), age_shift, inc_shift, state_type)
        # Without the secret, the attacker cannot tag the frame: it sends it untagged.
        cluster.inject("a", "b", WireCodec().encode(frame))
        cluster.run_until_idle()
        mutate(cluster, state_type)
        sync(cluster, state_type)
        assert converged(cluster, state_type), (
            f"view {view_of_a(cluster, state_type)} vs own {own_of_a(cluster, state_type)}"
        )
