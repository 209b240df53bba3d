"""dstate end to end on Thespian: ``dstate_thespian.local_cluster``.

On multiprocTCPBase every node is its own actor system (admin, logger and
gateway processes) on its own loopback port; the test process holds each node's
shards. Nothing sleeps hoping: every wait polls for its condition with a
deadline. Crash detection is Thespian's convention (2 s re-registration, 2
misses; see ``dstate_thespian.CONVENTION_TIMING``), so those tests take seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from dstate_core import ChangeFeedConfig, StalePeerError, StateConfig, StateViewObject
from dstate_core.process import port_open
from dstate_core.runtime._protocol import ClusterEvent, NodeLeft
from dstate_core.testing import TestState
from dstate_thespian import ThespianCluster, ThespianRuntime, local_cluster
from dstate_thespian._thespian import failure_detection_bound
from tests.threads import no_thread_outlives

from .harness import listening_ports, wait_until

#: How long a condition may take (it usually takes milliseconds).
DEADLINE = 10.0
FAST_FEED = ChangeFeedConfig(batch_interval=0.05)

Views = Mapping[str, StateViewObject[Any]]


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test() -> Iterator[None]:
    with no_thread_outlives(DEADLINE):
        yield


def values(views: Views) -> dict[str, int]:
    return {node: int(view.value.value) for node, view in views.items()}


def register_all(cluster: ThespianCluster, config: StateConfig | None = None) -> dict[str, Any]:
    shards = {n: cluster.node(n).register(TestState, config) for n in cluster.node_ids}
    assert cluster.wait_until(holds_all(shards, cluster.node_ids), DEADLINE), registration_report(
        cluster, shards
    )
    return shards


def registration_report(cluster: ThespianCluster, shards: Mapping[str, Any]) -> dict[str, Any]:
    """What each node holds and knows, for a registration that did not converge."""
    report: dict[str, Any] = {}
    for n, shard in shards.items():
        runtime: Any = cluster.node(n).runtime
        report[n] = {
            "views": sorted(shard.snapshot()),
            "joined": sorted(runtime.remote.directory.joined()),
            "peers": {s.node_id: s.last_error for s in shard.sync_status()},
            "node_drops": dict(cluster.node(n).dropped_messages),
            "runtime_drops": runtime.remote.drops.counts(),
            "shard_drops": shard.drops(),
            "metrics": shard.metrics(),
        }
    return report


def holds_all(shards: Mapping[str, Any], node_ids: list[str]) -> Callable[[], bool]:
    return lambda: all(sorted(s.snapshot()) == sorted(node_ids) for s in shards.values())


def all_show(shards: Mapping[str, Any], expected: dict[str, int]) -> Callable[[], bool]:
    return lambda: all(values(s.snapshot()) == expected for s in shards.values())


class TestMultiprocTCPBase:
    def test_three_nodes_converge_under_active_push(self) -> None:
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            assert cluster.leader == "a"
            assert len(set(cluster.admin_ports.values())) == 3
            shards = register_all(cluster)
            for amount, node in enumerate(("a", "b", "c"), start=1):
                shards[node].mutate(TestState.increment(amount))
            expected = {"a": 1, "b": 2, "c": 3}
            assert cluster.wait_until(all_show(shards, expected), DEADLINE), {
                n: values(s.snapshot()) for n, s in shards.items()
            }
            # Fast path: answered from this process's memory, no message sent.
            sent = cluster.messages_sent
            assert shards["b"].query(values, max_staleness=60.0) == expected
            assert cluster.messages_sent == sent
            # A burst from one node arrives complete and in order.
            for _ in range(20):
                generation = shards["a"].mutate(TestState.increment(1))

            def caught_up() -> bool:
                return all(s.snapshot()["a"].generation == generation for s in shards.values())

            assert cluster.wait_until(caught_up, DEADLINE)
            assert values(shards["c"].snapshot())["a"] == 21
            assert cluster.bytes_sent > 0

    def test_a_leaving_node_is_removed_and_may_join_again(self) -> None:
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster)
            events: list[ClusterEvent] = []
            cluster.runtime("b").cluster_events.subscribe(events.append)
            cluster.remove_node("c")
            del shards["c"]
            assert cluster.wait_until(holds_all(shards, ["a", "b"]), DEADLINE)
            assert NodeLeft("c") in events
            cluster.add_node("c")
            shards["c"] = cluster.node("c").register(TestState)
            assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE)
            shards["c"].mutate(TestState.increment(4))
            assert cluster.wait_until(all_show(shards, {"a": 0, "b": 0, "c": 4}), DEADLINE)

    @pytest.mark.slow
    def test_a_crashed_member_is_detected_within_the_bound_and_restarts(self) -> None:
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster)
            shards["c"].mutate(TestState.increment(6))
            assert cluster.wait_until(all_show(shards, {"a": 0, "b": 0, "c": 6}), DEADLINE)
            left_at: dict[str, float] = {}

            def note_left(node: str) -> Callable[[ClusterEvent], None]:
                def callback(event: ClusterEvent) -> None:
                    if event == NodeLeft("c"):
                        left_at.setdefault(node, time.monotonic())

                return callback

            for node in ("a", "b"):
                cluster.runtime(node).cluster_events.subscribe(note_left(node))
            pids = thespian_runtime(cluster, "c").pids
            crashed_at = time.monotonic()
            cluster.crash("c")
            assert not any(pid in cluster.alive_pids() for pid in pids)
            survivors = {n: shards[n] for n in ("a", "b")}
            # Until the convention notices, the survivors keep c's (now stale) view.
            assert all("c" in s.snapshot() for s in survivors.values())
            bound = cluster.detection_bound
            assert cluster.wait_until(lambda: len(left_at) == 2, bound + 3.0), left_at
            detected = {n: round(t - crashed_at, 2) for n, t in left_at.items()}
            print(f"crash of a member detected after {detected} s (bound {bound} s)")
            assert max(detected.values()) <= bound + 1.0, detected
            assert cluster.wait_until(holds_all(survivors, ["a", "b"]), DEADLINE)

            restarted = cluster.restart("c").register(TestState)
            shards["c"] = restarted
            assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE), (
                registration_report(cluster, shards)
            )
            restarted.mutate(TestState.increment(1))
            assert cluster.wait_until(all_show(shards, {"a": 0, "b": 0, "c": 1}), DEADLINE)

    @pytest.mark.slow
    def test_the_leader_crashes_members_carry_on_and_it_rejoins(self) -> None:
        with local_cluster(["a", "b", "c"], change_feed=FAST_FEED) as cluster:
            shards = register_all(cluster)
            crashed_at = time.monotonic()
            cluster.crash("a")
            survivors = {n: shards[n] for n in ("b", "c")}
            bound = cluster.detection_bound
            assert cluster.wait_until(holds_all(survivors, ["b", "c"]), bound + 3.0)
            print(f"crash of the leader detected after {time.monotonic() - crashed_at:.2f} s")
            # The members still reach each other without their leader.
            shards["b"].mutate(TestState.increment(2))
            assert cluster.wait_until(all_show(survivors, {"b": 2, "c": 0}), DEADLINE)

            restarted_at = time.monotonic()
            shards["a"] = cluster.restart("a").register(TestState)
            assert cluster.wait_until(holds_all(shards, ["a", "b", "c"]), DEADLINE)
            rejoined = time.monotonic() - restarted_at
            print(f"the restarted leader re-formed the cluster in {rejoined:.2f} s")
            shards["a"].mutate(TestState.increment(5))
            assert cluster.wait_until(all_show(shards, {"a": 5, "b": 2, "c": 0}), DEADLINE)

    def test_failure_timeout_is_the_conventions_bound_and_no_other(self) -> None:
        bound = failure_detection_bound()
        for options in ({}, {"failure_timeout": bound}):
            with local_cluster([], **options) as cluster:
                assert cluster.failure_timeout == cluster.detection_bound == bound
        # Thespian fixes crash detection when it is imported: another value cannot apply.
        with pytest.raises(ValueError, match="cannot apply on multiprocTCPBase") as raised:
            ThespianCluster(["a"], failure_timeout=2.0)
        text = str(raised.value)
        assert "CONVENTION_REREGISTRATION_PERIOD" in text and f"within {bound:g} s" in text
        assert "simpleSystemBase" in text
        with local_cluster([], system_base="simpleSystemBase") as simple:
            assert simple.failure_timeout == simple.detection_bound == 5.0

    def test_close_leaves_no_process_port_or_thread(self) -> None:
        own_listeners = listening_ports()
        with local_cluster(["a", "b"]) as cluster:
            pids = cluster.pids()
            ports = list(cluster.admin_ports.values())
            assert len(pids) >= 2 * 3  # admin, logger and gateway per node
            assert all(_port_open(p) for p in ports)
            cluster.crash("b")  # a killed system is cleaned up too
        assert wait_until(lambda: not cluster.alive_pids(), DEADLINE), cluster.alive_pids()
        assert not any(_port_open(p) for p in ports)
        assert wait_until(lambda: listening_ports() <= own_listeners, DEADLINE), (
            listening_ports() - own_listeners
        )


def _port_open(port: int) -> bool:
    return port_open(port)


def thespian_runtime(cluster: ThespianCluster, node: str) -> ThespianRuntime:
    runtime = cluster.runtime(node)
    assert isinstance(runtime, ThespianRuntime)
    return runtime


class TestSimpleSystemBase:
    def test_partition_blocks_data_until_heal(self) -> None:
        config = StateConfig(pull_timeout=0.2)
        with local_cluster(
            ["a", "b", "c"], system_base="simpleSystemBase", change_feed=FAST_FEED
        ) as cluster:
            assert cluster.leader is None
            shards = register_all(cluster, config)
            cluster.partition(["a"], ["b", "c"])
            shards["a"].mutate(TestState.increment(5))
            shards["b"].mutate(TestState.increment(7))
            assert cluster.wait_until(lambda: values(shards["c"].snapshot())["b"] == 7, DEADLINE)
            with pytest.raises(StalePeerError):
                shards["b"].query(values, max_staleness=0.0)
            assert values(shards["b"].snapshot())["a"] == 0
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

    def test_a_crash_is_reported_after_the_failure_timeout(self) -> None:
        with local_cluster(
            ["a", "b"], system_base="simpleSystemBase", failure_timeout=0.3
        ) as cluster:
            shards = register_all(cluster)
            crashed_at = time.monotonic()
            cluster.crash("b")
            assert "b" in shards["a"].snapshot()
            assert cluster.wait_until(holds_all({"a": shards["a"]}, ["a"]), DEADLINE)
            assert time.monotonic() - crashed_at >= 0.3 * 0.9
            assert cluster.detection_bound == 0.3
            shards["b"] = cluster.restart("b").register(TestState)
            assert cluster.wait_until(holds_all(shards, ["a", "b"]), DEADLINE)

    def test_inject_delivers_raw_bytes_to_the_inbox(self) -> None:
        with local_cluster(["a", "b"], system_base="simpleSystemBase") as cluster:
            register_all(cluster)
            before = cluster.node("b").dropped_messages
            cluster.inject("a", "b", b"\xc1 not msgpack")
            assert cluster.wait_until(
                lambda: cluster.node("b").dropped_messages != before, DEADLINE
            )
            with pytest.raises(KeyError):
                cluster.inject("a", "zzz", b"x")
