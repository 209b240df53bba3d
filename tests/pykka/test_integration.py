"""dstate end to end on Pykka threads: ``dstate_pykka.local_cluster``.

Everything here runs in real time, so no test sleeps a fixed time hoping:
each one polls for its condition with ``cluster.wait_until(predicate,
DEADLINE)``. The deadlines are generous (a loaded 2-core machine) but the
common case takes milliseconds; intervals are short (0.05 s feed batches,
0.2 s periodic syncs and pull timeouts, 0.3 s failure detection).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import pytest

from dstate_core import (
    ChangeFeedConfig,
    Generation,
    QueryTimeoutError,
    StalePeerError,
    StateConfig,
    StateViewObject,
    SyncStrategy,
)
from dstate_core.testing import InMemoryPersistence, TestDeltaState, TestState
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import FullSnapshot
from dstate_pykka import PykkaCluster, local_cluster

#: How long any condition may take to come true (it usually takes milliseconds).
DEADLINE = 5.0
#: A fast change feed, so feed tests do not wait for the 1 s default.
FAST_FEED = ChangeFeedConfig(batch_interval=0.05)
#: The periodic full-sync interval used by the periodic strategies.
PERIOD = 0.2

STRATEGIES: dict[str, SyncStrategy] = {
    "active_push": SyncStrategy.active_push(),
    "feed_lazy_pull": SyncStrategy.feed_lazy_pull(),
    "feed_with_periodic_sync": SyncStrategy.feed_with_periodic_sync(PERIOD),
    "periodic_only": SyncStrategy.periodic_only(PERIOD),
}

Views = Mapping[str, StateViewObject[Any]]


# -- helpers -------------------------------------------------------------------------


def value_of(view: StateViewObject[Any]) -> int:
    """The number a view carries: ``value`` of a TestState, ``total`` of a TestDeltaState."""
    model = view.value
    return int(model.total if hasattr(model, "total") else model.value)


def values(views: Views) -> dict[str, int]:
    """Projection: every node's number."""
    return {node: value_of(view) for node, view in views.items()}


def generations(views: Views) -> dict[str, Generation]:
    """Projection: every node's generation."""
    return {node: view.generation for node, view in views.items()}


def holds_all(shards: Mapping[str, Any], node_ids: list[str]) -> Callable[[], bool]:
    """A predicate: every shard's view map holds exactly ``node_ids``."""
    return lambda: all(sorted(s.snapshot()) == sorted(node_ids) for s in shards.values())


def register_all(
    cluster: PykkaCluster,
    state_type: type[Any] = TestState,
    config: StateConfig | None = None,
) -> dict[str, Any]:
    """Register ``state_type`` on every node and let the join exchange settle.

    Once every view map holds every node, a tight query on each node pulls
    every peer. Replies come back in order behind any join message still in
    flight, so afterwards no join traffic can land late and change a view.
    """
    shards = {n: cluster.node(n).register(state_type, config) for n in cluster.node_ids}
    assert cluster.wait_until(holds_all(shards, cluster.node_ids), DEADLINE), {
        n: sorted(s.snapshot()) for n, s in shards.items()
    }
    for shard in shards.values():
        shard.query(values, max_staleness=0.0, on_stale="return")
    return shards


def mutation_for(state_type: type[Any], amount: int) -> tuple[str, Callable[..., Any]]:
    """The shard method name and closure adding ``amount`` to a test state."""
    if state_type is TestDeltaState:
        return "mutate_with_delta", TestDeltaState.bump("k", amount)
    return "mutate", TestState.increment(amount)


def mutate(shard: Any, amount: int) -> Generation:
    """Add ``amount`` to a TestState or TestDeltaState shard."""
    method, fn = mutation_for(shard.state_type, amount)
    generation: Generation = getattr(shard, method)(fn)
    return generation


def sees(shard: Any, node: str, generation: Generation, value: int) -> Callable[[], bool]:
    """A predicate: ``shard`` holds ``node``'s view at ``generation`` with ``value``."""

    def check() -> bool:
        view = shard.snapshot().get(node)
        return view is not None and view.generation == generation and value_of(view) == value

    return check


def shows(shard: Any, expected: dict[str, int]) -> Callable[[], bool]:
    """A predicate: ``shard``'s view map holds exactly ``expected`` numbers."""
    return lambda: values(shard.snapshot()) == expected


class Recorder:
    """A subscribe callback that records ``(node_id, old, new)`` thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[str, Any, Any]] = []

    def __call__(self, node_id: str, old: Any, new: Any) -> None:
        with self._lock:
            self._calls.append((node_id, old, new))

    @property
    def calls(self) -> list[tuple[str, Any, Any]]:
        with self._lock:
            return list(self._calls)

    def saw(self, node: str, generation: Generation) -> bool:
        """True once a change of ``node``'s view to ``generation`` was reported."""
        return any(
            n == node and new is not None and new.generation == generation
            for n, _, new in self.calls
        )

    def saw_removal(self, node: str) -> bool:
        """True once the removal of ``node``'s view was reported."""
        return any(n == node and old is not None and new is None for n, old, new in self.calls)


# -- sync strategies -----------------------------------------------------------


@pytest.mark.parametrize("state_type", [TestState, TestDeltaState], ids=["simple", "delta"])
@pytest.mark.parametrize("strategy_name", list(STRATEGIES))
class TestSyncStrategies:
    def test_a_mutation_reaches_every_peer(self, strategy_name: str, state_type: type[Any]) -> None:
        strategy = STRATEGIES[strategy_name]
        config = StateConfig(sync_strategy=strategy, pull_timeout=1.0)
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster, state_type, config)
            mutate(shards["a"], 2)
            generation = mutate(shards["a"], 3)
            assert generation.age == 2
            peers = [shards["b"], shards["c"]]

            if strategy_name == "feed_lazy_pull":
                # The feed only marks the views pending; nothing is pulled until a query.
                def pending() -> bool:
                    return all(
                        p.snapshot()["a"].pending_remote_generation == generation for p in peers
                    )

                assert cluster.wait_until(pending, DEADLINE)
                assert all(value_of(p.snapshot()["a"]) == 0 for p in peers)
                assert shards["b"].query(values, max_staleness=60.0)["a"] == 5
                after = shards["b"].snapshot()["a"]
                assert (after.generation, after.pending_remote_generation) == (generation, None)
                # c never queried: its view is still the old one, still pending.
                assert value_of(shards["c"].snapshot()["a"]) == 0
                assert shards["c"].snapshot()["a"].pending_remote_generation == generation
            else:
                # Active push and periodic sync both refresh the views with no query.
                for peer in peers:
                    assert cluster.wait_until(sees(peer, "a", generation, 5), DEADLINE)

            expected = {"a": 5, "b": 0, "c": 0}
            for shard in shards.values():
                assert shard.query(values, max_staleness=30.0) == expected
            metrics = shards["a"].metrics()
            assert metrics.total_mutations == 2
            if strategy.push_mode.name == "ACTIVE_FEED_LAZY_PULL":
                assert metrics.feed_batches_sent >= 1
            else:
                assert metrics.feed_batches_sent == 0
            if strategy.periodic_full_sync is not None:
                # The periodic timer keeps broadcasting full snapshots with no mutation.
                sent = shards["a"].metrics().snapshots_sent
                assert cluster.wait_until(
                    lambda: shards["a"].metrics().snapshots_sent >= sent + 2, DEADLINE
                )
            if strategy_name == "active_push" and state_type is TestDeltaState:
                assert metrics.deltas_sent == 2 * 2  # two mutations, two peers
                assert cluster.wait_until(
                    lambda: shards["b"].metrics().deltas_received == 2, DEADLINE
                )


# -- join and leave ------------------------------------------------------------


class TestMembership:
    def test_a_joining_node_and_the_cluster_exchange_views(self) -> None:
        with local_cluster(["a", "b"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster)
            gen_a = shards["a"].mutate(TestState.increment(3))
            assert cluster.wait_until(sees(shards["b"], "a", gen_a, 3), DEADLINE)

            cluster.add_node("c")
            shards["c"] = cluster.node("c").register(TestState)
            assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE)
            assert cluster.wait_until(sees(shards["c"], "a", gen_a, 3), DEADLINE)

            gen_c = shards["c"].mutate(TestState.increment(4))
            for node in ("a", "b"):
                assert cluster.wait_until(sees(shards[node], "c", gen_c, 4), DEADLINE)

    def test_a_late_state_registration_exchanges_with_every_peer(self) -> None:
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            register_all(cluster)
            # A second state, registered one node at a time after the cluster formed.
            delta = {n: cluster.node(n).register(TestDeltaState) for n in ("a", "b")}
            assert cluster.wait_until(holds_all(delta, ["a", "b"]), DEADLINE)
            delta["c"] = cluster.node("c").register(TestDeltaState)
            assert cluster.wait_until(holds_all(delta, ["a", "b", "c"]), DEADLINE)

    def test_a_leaving_node_is_removed_everywhere_and_may_join_again(self) -> None:
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster)
            recorder = Recorder()
            shards["a"].subscribe(recorder)
            shards["c"].mutate(TestState.increment(7))

            cluster.remove_node("c")
            del shards["c"]
            assert cluster.wait_until(holds_all(shards, ["a", "b"]), DEADLINE)
            assert cluster.wait_until(lambda: recorder.saw_removal("c"), DEADLINE)
            assert {row.node_id for row in shards["a"].sync_status()} == {"b"}

            cluster.add_node("c")
            shards["c"] = cluster.node("c").register(TestState)
            assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE)
            # The new c started fresh (no persistence): age 0, a newer incarnation.
            assert shards["a"].snapshot()["c"].generation.age == 0
            assert value_of(shards["a"].snapshot()["c"]) == 0


# -- crash and restart ----------------------------------------------------


@pytest.mark.parametrize("persisted", [False, True], ids=["fresh", "persisted"])
class TestCrashRestart:
    FAILURE_TIMEOUT = 0.3

    def _crash_after_three_mutations(
        self, cluster: PykkaCluster, persisted: bool
    ) -> tuple[dict[str, Any], InMemoryPersistence | None, Generation]:
        store = InMemoryPersistence() if persisted else None
        shards = {
            n: cluster.node(n).register(
                TestState, StateConfig(persistence=store if n == "c" else None)
            )
            for n in cluster.node_ids
        }
        assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE)
        for _ in range(3):
            generation = shards["c"].mutate(TestState.increment(2))
        assert generation.age == 3
        for node in ("a", "b"):
            assert cluster.wait_until(sees(shards[node], "c", generation, 6), DEADLINE)
        return shards, store, generation

    def _restart(self, cluster: PykkaCluster, store: InMemoryPersistence | None) -> Any:
        return cluster.restart("c").register(TestState, StateConfig(persistence=store))

    def _check_resumed(
        self,
        cluster: PykkaCluster,
        shards: dict[str, Any],
        restarted: Any,
        before: Generation,
        persisted: bool,
    ) -> None:
        own = restarted.state.generation
        if persisted:
            assert own == before, "the restarted node should resume its generation"
            assert restarted.state.value.value == 6
        else:
            assert own.age == 0
            assert own.incarnation > before.incarnation
            assert restarted.state.value.value == 0
        expected = 6 if persisted else 0
        for node in ("a", "b"):
            # Peers accept age 0 from the new incarnation although they held age 3.
            assert cluster.wait_until(sees(shards[node], "c", own, expected), DEADLINE)
        shards["c"] = restarted
        assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE)
        generation = restarted.mutate(TestState.increment(1))
        assert generation == own.next()
        for node in ("a", "b"):
            assert cluster.wait_until(sees(shards[node], "c", generation, expected + 1), DEADLINE)

    def test_restart_after_node_left(self, persisted: bool) -> None:
        with local_cluster(
            ["a", "b", "c"], change_feed=FAST_FEED, failure_timeout=self.FAILURE_TIMEOUT
        ) as cluster:
            shards, store, before = self._crash_after_three_mutations(cluster, persisted)
            crashed_at = time.monotonic()
            cluster.crash("c")
            survivors = {n: shards[n] for n in ("a", "b")}
            if time.monotonic() - crashed_at < self.FAILURE_TIMEOUT / 2:
                # Until failure_timeout passes, peers keep the crashed node's views.
                assert all("c" in s.snapshot() for s in survivors.values())
            assert cluster.wait_until(holds_all(survivors, ["a", "b"]), DEADLINE)
            assert time.monotonic() - crashed_at >= self.FAILURE_TIMEOUT * 0.9

            restarted = self._restart(cluster, store)
            self._check_resumed(cluster, shards, restarted, before, persisted)

    def test_restart_before_node_left_arrives(self, persisted: bool) -> None:
        with local_cluster(
            ["a", "b", "c"], change_feed=FAST_FEED, failure_timeout=self.FAILURE_TIMEOUT
        ) as cluster:
            shards, store, before = self._crash_after_three_mutations(cluster, persisted)
            restarted = self._restart(cluster, store)  # crashes c, then starts it again
            self._check_resumed(cluster, shards, restarted, before, persisted)

            # The crash's NodeLeft now arrives late, after the re-join: it must not
            # leave a hole. Wait for the failure detector to have fired...
            def detector_done() -> bool:
                return not any(t.name == "dstate-failure-detector-c" for t in threading.enumerate())

            assert cluster.wait_until(detector_done, DEADLINE)
            # ...then let every shard actor drain its mailbox (a mutate is a barrier).
            for shard in shards.values():
                shard.mutate(TestState.increment(0))
            assert holds_all(shards, ["a", "b", "c"])()
            last = shards["c"].mutate(TestState.increment(1))
            for node in ("a", "b"):
                assert cluster.wait_until(
                    sees(shards[node], "c", last, value_of(shards["c"].snapshot()["c"])),
                    DEADLINE,
                )


# -- partition and heal --------------------------------------------------------


class TestPartition:
    def test_tight_queries_fail_during_a_partition_and_converge_after_heal(self) -> None:
        config = StateConfig(pull_timeout=0.2)
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster, TestState, config)
            cluster.partition(["a"], ["b", "c"])
            gen_a = shards["a"].mutate(TestState.increment(5))
            gen_b = shards["b"].mutate(TestState.increment(7))
            assert cluster.wait_until(sees(shards["c"], "b", gen_b, 7), DEADLINE)

            # b cannot refresh a's view: a tight query raises, naming a only.
            with pytest.raises(StalePeerError) as caught:
                shards["b"].query(values, max_staleness=0.0)
            assert caught.value.node_id == "a"
            assert caught.value.stale_nodes == ("a",)
            assert caught.value.last_sync_time is not None
            # on_stale="return" answers with what is there: a's push never arrived.
            assert shards["b"].query(values, max_staleness=0.0, on_stale="return") == {
                "a": 0,
                "b": 7,
                "c": 0,
            }
            with pytest.raises(StalePeerError) as caught_a:
                shards["a"].query(values, max_staleness=0.0)
            assert set(caught_a.value.stale_nodes) == {"b", "c"}
            # A loose bound is still served from local memory.
            assert shards["c"].query(values, max_staleness=float("inf"))["b"] == 7
            assert shards["b"].stale_peers(0.0)

            cluster.heal()
            expected = {"a": 5, "b": 7, "c": 0}

            def converged() -> bool:
                try:
                    return all(
                        s.query(values, max_staleness=0.5) == expected for s in shards.values()
                    )
                except StalePeerError:
                    return False

            assert cluster.wait_until(converged, DEADLINE)
            for shard in shards.values():
                assert generations(shard.snapshot())["a"] == gen_a
            # Pushes flow again with no manual step.
            gen_a = shards["a"].mutate(TestState.increment(1))
            for node in ("b", "c"):
                assert cluster.wait_until(sees(shards[node], "a", gen_a, 6), DEADLINE)

    def test_periodic_sync_repairs_views_after_heal_without_queries(self) -> None:
        strategy = SyncStrategy(periodic_full_sync=PERIOD)  # active push + periodic sync
        config = StateConfig(sync_strategy=strategy, pull_timeout=0.2)
        with local_cluster(["a", "b"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster, TestState, config)
            cluster.partition("a", "b")
            gen_a = shards["a"].mutate(TestState.increment(5))
            # Wait until the partition has certainly eaten a push (the sender counted it).
            sent = cluster.network.messages_dropped
            assert cluster.wait_until(lambda: cluster.network.messages_dropped > sent, DEADLINE)
            assert value_of(shards["b"].snapshot()["a"]) == 0
            cluster.heal()
            assert cluster.wait_until(sees(shards["b"], "a", gen_a, 5), DEADLINE)


# -- subscribe -----------------------------------------------------------------


class TestSubscribe:
    def test_callbacks_see_own_and_peer_changes_and_a_raising_one_is_harmless(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.ERROR, logger="dstate")
        with local_cluster(["a", "b"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster)

            def explode(node_id: str, old: Any, new: Any) -> None:
                raise RuntimeError("subscriber exploded")

            shards["a"].subscribe(explode)  # runs first, before the recorders
            recorder, cancelled = Recorder(), Recorder()
            shards["a"].subscribe(recorder)
            subscription = shards["a"].subscribe(cancelled)

            own = shards["a"].mutate(TestState.increment(1))
            assert cluster.wait_until(lambda: recorder.saw("a", own), DEADLINE)
            _, old, new = next(c for c in recorder.calls if c[2].generation == own)
            assert old.generation.age == 0
            assert value_of(new) == 1
            assert new.source_node == "a"

            peer = shards["b"].mutate(TestState.increment(2))
            assert cluster.wait_until(lambda: recorder.saw("b", peer), DEADLINE)
            assert cluster.wait_until(lambda: "subscriber exploded" in caplog.text, DEADLINE), (
                caplog.text
            )

            # Replication goes on; a cancelled callback is called no more.
            subscription.cancel()
            subscription.cancel()  # idempotent
            seen = len(cancelled.calls)
            later = shards["b"].mutate(TestState.increment(3))
            assert cluster.wait_until(sees(shards["a"], "b", later, 5), DEADLINE)
            # Callbacks run in order on one notifier: once the recorder has the
            # change, the cancelled one would have had it too.
            assert cluster.wait_until(lambda: recorder.saw("b", later), DEADLINE)
            assert len(cancelled.calls) == seen


# -- concurrency ---------------------------------------------------------------


class TestConcurrency:
    WRITERS_PER_NODE = 2
    MUTATIONS = 30

    def test_threads_mutating_and_querying_concurrently_converge(self) -> None:
        nodes = ["a", "b", "c"]
        with local_cluster(nodes, change_feed=FAST_FEED) as cluster:
            config = StateConfig(pull_timeout=1.0)
            shards = register_all(cluster, TestState, config)
            delta_shards = register_all(cluster, TestDeltaState, config)
            recorder = Recorder()
            shards["a"].subscribe(recorder)
            errors: list[BaseException] = []
            returned: dict[str, list[Generation]] = {n: [] for n in nodes}
            stop = threading.Event()
            start = threading.Barrier(len(nodes) * self.WRITERS_PER_NODE + len(nodes))

            def guarded(fn: Callable[[str], None], node: str) -> Callable[[], None]:
                def run() -> None:
                    try:
                        fn(node)
                    except BaseException as exc:
                        errors.append(exc)
                        stop.set()

                return run

            def writer(node: str) -> None:
                start.wait(DEADLINE)
                for i in range(self.MUTATIONS):
                    returned[node].append(shards[node].mutate(TestState.increment(1)))
                    delta_shards[node].mutate_with_delta(TestDeltaState.bump(f"k{i % 3}", 1))

            def reader(node: str) -> None:
                start.wait(DEADLINE)
                while not stop.is_set():
                    shards[node].query(values, max_staleness=0.5)
                    delta_shards[node].query(values, max_staleness=float("inf"))
                    shards[node].snapshot()

            writers = [
                threading.Thread(target=guarded(writer, n), name=f"writer-{n}")
                for n in nodes
                for _ in range(self.WRITERS_PER_NODE)
            ]
            readers = [
                threading.Thread(target=guarded(reader, n), name=f"reader-{n}") for n in nodes
            ]
            for thread in writers + readers:
                thread.start()
            for thread in writers:
                thread.join(4 * DEADLINE)
            stop.set()
            for thread in readers:
                thread.join(DEADLINE)
            assert not errors, errors
            assert not any(t.is_alive() for t in writers + readers)

            total = self.WRITERS_PER_NODE * self.MUTATIONS
            for node in nodes:
                # Mutations of one shard are serialized: every age is used once.
                assert sorted(g.age for g in returned[node]) == list(range(1, total + 1))
            expected = dict.fromkeys(nodes, total)
            for group in (shards, delta_shards):
                for shard in group.values():
                    assert cluster.wait_until(shows(shard, expected), DEADLINE), (
                        shard,
                        values(shard.snapshot()),
                    )
                    assert shard.query(values, max_staleness=5.0) == expected
            # Each view only moved forward, one notification per accepted change.
            for node in nodes:
                seen = [new.generation for n, _, new in recorder.calls if n == node and new]
                assert seen == sorted(set(seen)), node


# -- bad input -----------------------------------------------------------------


def _forged_snapshot(view: StateViewObject[Any], value: int) -> FullSnapshot:
    """A well-formed snapshot claiming to come from ``view``'s node, 100 ages ahead."""
    generation = Generation(view.generation.incarnation, view.generation.age + 100)
    return FullSnapshot(
        state_name=TestState.NAME,
        source_node=view.source_node,
        generation=generation,
        wire_version=TestState.WIRE_VERSION,
        payload=TestState(value=value).serialize_state(),
        created_time=view.created_time,
        modified_time=view.modified_time + 1,
    )


class TestBusyMailbox:
    def test_a_query_that_may_return_stale_answers_when_the_shard_is_busy(self) -> None:
        """The shard's actor is stuck in a long mutation: a slow-path query's ask times
        out (pull_timeout + 1 s). ``on_stale="return"`` answers from what is there;
        the default raises QueryTimeoutError."""
        config = StateConfig(pull_timeout=0.1)
        with local_cluster(["a", "b"]) as cluster:
            shards = register_all(cluster, TestState, config)
            release, entered = threading.Event(), threading.Event()

            def slow(state: TestState) -> None:
                entered.set()
                release.wait(DEADLINE)
                state.value += 1

            blocker = threading.Thread(target=shards["a"].mutate, args=(slow,))
            blocker.start()
            try:
                assert entered.wait(DEADLINE)
                started = time.monotonic()
                answer = shards["a"].query(values, max_staleness=0.0, on_stale="return")
                assert answer == {"a": 0, "b": 0}
                assert time.monotonic() - started < DEADLINE
                with pytest.raises(QueryTimeoutError, match=r"longer than 1\.1s"):
                    shards["a"].query(values, max_staleness=0.0)
            finally:
                release.set()
                blocker.join(DEADLINE)
            landed = lambda: shards["b"].snapshot()["a"].value.value == 1  # noqa: E731
            assert cluster.wait_until(landed, DEADLINE)


class TestBadInput:
    def test_garbage_bytes_are_dropped_and_counted(self) -> None:
        cap = 4096
        with local_cluster(["a", "b"], change_feed=FAST_FEED, max_message_bytes=cap) as cluster:
            shards = register_all(cluster)
            node_a = cluster.node("a")
            before_views = generations(shards["a"].snapshot())
            garbage = {
                "malformed": [b"", b"\x00", b"definitely not msgpack \xc1", bytes(range(256))],
                "oversized": [b"\x00" * (cap + 1)],
                "unknown_type": [msgpack.packb({"v": 1, "t": "bogus"})],
                "unknown_protocol_version": [msgpack.packb({"v": 99, "t": "full"})],
            }
            sent = 0
            for frames in garbage.values():
                for frame in frames:
                    cluster.inject("b", "a", frame)
                    sent += 1

            def all_dropped() -> bool:
                return sum(node_a.dropped_messages.values()) >= sent

            assert cluster.wait_until(all_dropped, DEADLINE), node_a.dropped_messages
            drops = node_a.dropped_messages
            for reason, frames in garbage.items():
                assert drops.get(reason) == len(frames), drops
            assert generations(shards["a"].snapshot()) == before_views
            # The inbox survived: replication still works both ways.
            gen_b = shards["b"].mutate(TestState.increment(2))
            gen_a = shards["a"].mutate(TestState.increment(3))
            assert cluster.wait_until(sees(shards["a"], "b", gen_b, 2), DEADLINE)
            assert cluster.wait_until(sees(shards["b"], "a", gen_a, 3), DEADLINE)
            assert sum(node_a.dropped_messages.values()) == sent

    def test_with_a_cluster_secret_unsigned_frames_are_dropped(self) -> None:
        secret = b"shared cluster secret"
        with local_cluster(["a", "b"], change_feed=FAST_FEED, cluster_secret=secret) as cluster:
            shards = register_all(cluster)
            gen_b = shards["b"].mutate(TestState.increment(1))  # signed traffic flows
            assert cluster.wait_until(sees(shards["a"], "b", gen_b, 1), DEADLINE)

            node_a = cluster.node("a")
            view_b = shards["a"].snapshot()["b"]
            forged = _forged_snapshot(view_b, 999)
            unsigned = WireCodec().encode(forged)
            wrong_key = WireCodec(b"not the secret").encode(forged)
            for frame in (unsigned, wrong_key, b"short"):
                cluster.inject("b", "a", frame)
            assert cluster.wait_until(
                lambda: node_a.dropped_messages.get("unauthenticated", 0) == 3, DEADLINE
            ), node_a.dropped_messages
            held = shards["a"].snapshot()["b"]
            assert (held.generation, held.value) == (view_b.generation, view_b.value)

            # Control: the same frame signed with the secret is accepted, so the
            # drops above were the authentication's doing.
            cluster.inject("b", "a", WireCodec(secret).encode(forged))
            assert cluster.wait_until(sees(shards["a"], "b", forged.generation, 999), DEADLINE)
            assert node_a.dropped_messages == {"unauthenticated": 3}


# -- regressions -----------------------------------------------------------------------


class TestDroppedJoinProbe:
    """A node that registers a state before a peer does sends its join probe to a
    peer that drops it. A query must not wait on that doomed probe (it used to,
    for the whole ``pull_timeout``, and then raise ``StalePeerError`` or answer
    with a view older than its bound): it pulls afresh."""

    PULL_TIMEOUT = 2.0

    def test_a_tight_query_refreshes_the_peer_at_once(self) -> None:
        config = StateConfig(pull_timeout=self.PULL_TIMEOUT)
        with local_cluster(["a", "b"], change_feed=FAST_FEED) as cluster:
            shard_a = cluster.node("a").register(TestState, config)
            # a's join snapshot and probe reach b before b has the state: b drops both.
            node_b = cluster.node("b")
            assert cluster.wait_until(
                lambda: node_b.dropped_messages.get("unknown_state", 0) >= 2, DEADLINE
            ), node_b.dropped_messages
            shard_b = node_b.register(TestState, config)
            assert cluster.wait_until(holds_all({"a": shard_a, "b": shard_b}, ["a", "b"]))
            asked_at = cluster.clock.now()
            assert shard_a.query(values, max_staleness=0.0) == {"a": 0, "b": 0}
            answered_at = cluster.clock.now()
            assert shard_a.snapshot()["b"].synced_at >= asked_at, "the view was not refreshed"
            assert answered_at - asked_at < self.PULL_TIMEOUT, "the query waited for the probe"

    def test_the_same_on_the_deterministic_runtime(self) -> None:
        from dstate_core.testing import local_cluster as deterministic_cluster

        with deterministic_cluster(["a", "b"]) as cluster:
            shard_a = cluster.node("a").register(TestState)
            cluster.run_until_idle()  # a's probe is dropped: b has no test_state yet
            cluster.node("b").register(TestState)
            cluster.run_until_idle()
            assert sorted(shard_a.snapshot()) == ["a", "b"]
            cluster.advance(0.1)
            assert shard_a.query(values, max_staleness=0.0) == {"a": 0, "b": 0}
            assert cluster.clock.now() == pytest.approx(0.1), "the pull waited for the probe"
            assert shard_a.snapshot()["b"].synced_at == pytest.approx(0.1)


# -- threads ------------------------------------------------------------------


class TestThreads:
    def test_no_thread_outlives_the_cluster(self) -> None:
        before = set(threading.enumerate())
        config = StateConfig(
            sync_strategy=SyncStrategy.feed_with_periodic_sync(PERIOD), pull_timeout=1.0
        )
        # A long failure timeout: the crash's detector is still pending at close.
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED, failure_timeout=30.0) as cluster:
            shards = register_all(cluster, TestState, config)
            shards["b"].subscribe(Recorder())
            gen = shards["a"].mutate(TestState.increment(1))
            assert shards["b"].query(values, max_staleness=0.0)["a"] == 1
            assert cluster.wait_until(sees(shards["c"], "a", gen, 1), DEADLINE)
            cluster.crash("c")
            cluster.add_node("d").register(TestState, config)
            started = set(threading.enumerate()) - before
            assert any(t.name == "dstate-failure-detector-c" for t in started)
            assert len(started) >= 3 * 4  # per node: inbox, feed, shard, notifier, timers
        leaked: set[threading.Thread] = set()

        def settled() -> bool:
            leaked.clear()
            leaked.update(t for t in set(threading.enumerate()) - before if t.is_alive())
            return not leaked

        assert PykkaCluster.wait_until(settled, DEADLINE), sorted(t.name for t in leaked)
