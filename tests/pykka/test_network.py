"""PykkaNetwork: membership events, cross-node bytes, partitions, crashes, counters."""

from __future__ import annotations

import threading
import time

import pytest

from dstate_core import ActorSendError, NodeShutdownError
from dstate_core.runtime._protocol import ActorAskTimeout, ClusterEvent, NodeJoined, NodeLeft
from dstate_pykka import PykkaNetwork, PykkaRuntime

from .helpers import Recorder, wait_until


class EventLog:
    """Records cluster events with their arrival time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[float, ClusterEvent]] = []

    def __call__(self, event: ClusterEvent) -> None:
        with self._lock:
            self.events.append((time.monotonic(), event))

    def seen(self) -> list[ClusterEvent]:
        with self._lock:
            return [e for _, e in self.events]

    def time_of(self, event: ClusterEvent) -> float:
        with self._lock:
            return next(t for t, e in self.events if e == event)


def _member(runtime: PykkaRuntime, group: str, node_id: str) -> object:
    return next(r for r in runtime.group_members(group) if r.node_id == node_id)


class TestMembership:
    def test_subscribe_replays_existing_members(self, cluster: list[PykkaRuntime]) -> None:
        log = EventLog()
        cluster[0].cluster_events.subscribe(log)
        assert log.seen() == [NodeJoined("b"), NodeJoined("c")]

    def test_join_and_clean_leave_are_reported_at_once(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        log = EventLog()
        cluster[0].cluster_events.subscribe(log)
        PykkaRuntime("d", network)
        assert log.seen()[-1] == NodeJoined("d")
        cluster[2].shutdown()
        assert log.seen()[-1] == NodeLeft("c")
        assert network.live_nodes() == ["a", "b", "d"]

    def test_the_leaver_hears_nothing_about_itself(self, cluster: list[PykkaRuntime]) -> None:
        log = EventLog()
        cluster[2].cluster_events.subscribe(log)
        cluster[2].shutdown()
        assert NodeLeft("c") not in log.seen()

    def test_duplicate_node_id_is_rejected(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        with pytest.raises(ValueError, match="already live"):
            PykkaRuntime("a", network)
        with pytest.raises(ValueError, match="already live"):
            PykkaRuntime("b", network)

    def test_unsubscribe_and_failing_subscribers(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        log = EventLog()

        def broken(event: ClusterEvent) -> None:
            raise RuntimeError("subscriber bug")

        cluster[0].cluster_events.subscribe(broken)
        sub = cluster[0].cluster_events.subscribe(log)
        PykkaRuntime("d", network)
        cluster[0].cluster_events.unsubscribe(sub)
        cluster[0].cluster_events.unsubscribe(sub)
        PykkaRuntime("e", network)
        assert log.seen() == [NodeJoined("b"), NodeJoined("c"), NodeJoined("d")]

    def test_add_and_remove_by_node_id(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        d = PykkaRuntime("d", network)
        assert network.runtime("d") is d
        network.remove("b")
        assert cluster[1].is_shut_down
        assert network.live_nodes() == ["a", "c", "d"]
        with pytest.raises(KeyError, match="not live"):
            network.runtime("b")
        with pytest.raises(KeyError):
            network.remove("b")


class TestCrossNodeMessages:
    def test_bytes_only_and_counted(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        a, b, _ = cluster
        rec = Recorder()
        b.join_group("g", b.spawn("x", rec))
        remote = a.group_members("g")[0]
        assert not remote.is_local  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match="must be bytes"):
            remote.send("text")
        with pytest.raises(TypeError, match="must be bytes"):
            remote.ask({"a": 1}, timeout=1.0)
        remote.send(b"12345")
        assert remote.ask(b"678", timeout=1.0) == b"678"
        assert rec.items == [b"12345", b"678"]
        assert network.messages_sent == 2  # an ask's reply comes straight back
        assert network.bytes_sent == 5 + 3
        assert network.messages_delivered == 2
        network.reset_counters()
        assert (network.messages_sent, network.bytes_sent, network.messages_delivered) == (0, 0, 0)

    def test_local_messages_are_not_counted(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        ref = cluster[0].spawn("x", Recorder())
        ref.ask("local", timeout=1.0)
        assert (network.messages_sent, network.bytes_sent) == (0, 0)

    def test_broadcast_reaches_other_nodes_only(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        recs = {rt.node_id: Recorder() for rt in cluster}
        for rt in cluster:
            rt.join_group("g", rt.spawn("x", recs[rt.node_id]))
        with pytest.raises(TypeError, match="bytes"):
            cluster[0].broadcast_group("g", "text")
        cluster[0].broadcast_group("g", b"hello")
        assert wait_until(lambda: recs["b"].items == [b"hello"] == recs["c"].items)
        assert recs["a"].items == []
        assert (network.messages_sent, network.bytes_sent) == (2, 10)

    def test_group_members_span_the_cluster(self, cluster: list[PykkaRuntime]) -> None:
        for rt in cluster:
            rt.join_group("g", rt.spawn("x", Recorder()))
        cluster[1].join_group("g", cluster[1].spawn("y", Recorder()))
        members = cluster[0].group_members("g")
        assert [(m.node_id, m.name) for m in members] == [
            ("a", "x"),
            ("b", "x"),
            ("b", "y"),
            ("c", "x"),
        ]
        assert members == cluster[2].group_members("g")

    def test_stopped_remote_actor_loses_messages_silently(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        a, b, _ = cluster
        ref = b.spawn("x", Recorder())
        b.join_group("g", ref)
        remote = a.group_members("g")[0]
        ref.stop()
        remote.send(b"x")
        with pytest.raises(ActorAskTimeout):
            remote.ask(b"y", timeout=0.05)
        assert (network.messages_sent, network.messages_dropped) == (2, 2)

    @pytest.mark.parametrize("how", ["remove", "crash"])
    def test_sending_to_a_node_that_went_is_a_counted_drop_not_a_hang(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime], how: str
    ) -> None:
        a, b, _ = cluster
        b.join_group("g", b.spawn("x", Recorder()))
        remote = a.group_members("g")[0]
        getattr(network, how)("b")
        start = time.monotonic()
        remote.send(b"x")
        a.broadcast_group("g", b"y")  # b is no member any more: reaches no one
        with pytest.raises(ActorAskTimeout):
            remote.ask(b"z", timeout=0.05)
        assert time.monotonic() - start < 1.0
        assert network.messages_dropped == 2
        assert a.group_members("g") == []

    def test_sender_shut_down(self, cluster: list[PykkaRuntime]) -> None:
        a, b, _ = cluster
        b.join_group("g", b.spawn("x", Recorder()))
        remote = a.group_members("g")[0]
        a.shutdown()
        with pytest.raises(NodeShutdownError, match="shut down"):
            remote.send(b"x")
        with pytest.raises(NodeShutdownError, match="shut down"):
            remote.ask(b"x", timeout=1.0)


class TestPartitions:
    def test_messages_across_groups_are_dropped(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        recs = {rt.node_id: Recorder() for rt in cluster}
        for rt in cluster:
            rt.join_group("g", rt.spawn("x", recs[rt.node_id]))
        network.partition(["a", "b"], ["c"])
        cluster[0].broadcast_group("g", b"1")
        assert wait_until(lambda: recs["b"].items == [b"1"])
        assert (network.messages_sent, network.messages_dropped) == (2, 1)
        start = time.monotonic()
        with pytest.raises(ActorAskTimeout):
            _member(cluster[0], "g", "c").ask(b"?", timeout=0.1)  # type: ignore[attr-defined]
        assert time.monotonic() - start >= 0.09
        network.heal()
        cluster[0].broadcast_group("g", b"2")
        assert wait_until(lambda: recs["c"].items == [b"2"])
        assert recs["c"].items == [b"2"]
        assert recs["b"].items == [b"1", b"2"]

    def test_unlisted_nodes_form_one_group(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        recs = {rt.node_id: Recorder() for rt in cluster}
        for rt in cluster:
            rt.join_group("g", rt.spawn("x", recs[rt.node_id]))
        network.partition(["a"])
        cluster[1].broadcast_group("g", b"bc")
        assert wait_until(lambda: recs["c"].items == [b"bc"])
        assert recs["a"].items == []

    def test_partition_does_not_change_membership(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        log = EventLog()
        cluster[0].cluster_events.subscribe(log)
        network.partition(["a"], ["b", "c"])
        assert log.seen() == [NodeJoined("b"), NodeJoined("c")]

    def test_node_in_two_groups_is_rejected(self, network: PykkaNetwork) -> None:
        with pytest.raises(ValueError, match="two partition groups"):
            network.partition(["a", "b"], ["b"])


class TestCrash:
    def test_node_left_only_after_the_failure_timeout(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        a, b, _ = cluster
        log = EventLog()
        a.cluster_events.subscribe(log)
        crashed_ref = b.spawn("x", Recorder())
        b.join_group("g", crashed_ref)
        remote = a.group_members("g")[0]
        crashed_at = time.monotonic()
        network.crash("b")
        assert b.is_shut_down
        with pytest.raises(ActorSendError):
            crashed_ref.send("local")
        remote.send(b"into the void")  # no goodbye: silently dropped
        assert network.messages_dropped == 1
        assert network.live_nodes() == ["a", "c"]
        assert a.group_members("g") == []
        assert NodeLeft("b") not in log.seen()
        assert wait_until(lambda: NodeLeft("b") in log.seen())
        assert log.time_of(NodeLeft("b")) - crashed_at >= network.failure_timeout

    def test_late_node_left_after_rejoin(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        log = EventLog()
        cluster[0].cluster_events.subscribe(log)
        network.crash("b")
        reborn = PykkaRuntime("b", network)
        assert log.seen()[-1] == NodeJoined("b")
        assert wait_until(lambda: NodeLeft("b") in log.seen())
        assert log.seen()[-2:] == [NodeJoined("b"), NodeLeft("b")]
        assert network.runtime("b") is reborn
        assert "b" in network.live_nodes()

    def test_the_reborn_node_never_hears_its_own_late_node_left(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        watcher = EventLog()
        cluster[0].cluster_events.subscribe(watcher)
        network.crash("b")
        log = EventLog()
        PykkaRuntime("b", network).cluster_events.subscribe(log)
        assert wait_until(lambda: NodeLeft("b") in watcher.seen())
        assert log.seen() == [NodeJoined("a"), NodeJoined("c")]

    def test_new_subscribers_do_not_see_a_crashed_node(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        network.crash("c")
        log = EventLog()
        cluster[0].cluster_events.subscribe(log)
        assert log.seen() == [NodeJoined("b")]

    def test_crash_twice_fails_and_shutdown_after_crash_is_quiet(
        self, network: PykkaNetwork, cluster: list[PykkaRuntime]
    ) -> None:
        log = EventLog()
        cluster[0].cluster_events.subscribe(log)
        network.crash("c")
        with pytest.raises(KeyError, match="not live"):
            network.crash("c")
        cluster[2].shutdown()
        assert NodeLeft("c") not in log.seen()
        assert wait_until(lambda: NodeLeft("c") in log.seen())
        assert log.seen().count(NodeLeft("c")) == 1

    def test_failure_timeout_validation(self) -> None:
        with pytest.raises(ValueError, match="failure_timeout"):
            PykkaNetwork(failure_timeout=-1)
        with pytest.raises(TypeError, match="failure_timeout"):
            PykkaNetwork(failure_timeout="5")  # type: ignore[arg-type]
        assert PykkaNetwork().failure_timeout == 5.0
