"""ThespianRuntime beyond the conformance suite: options, refs, remote asks, counters, cleanup."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dstate_core.model._errors import ActorSendError, NodeShutdownError
from dstate_core.process import free_port, normalize_address, port_open
from dstate_core.runtime import (
    WANT_GROUPS,
    FaultModel,
    Parcel,
    ParcelKind,
    decode_groups,
    encode_groups,
)
from dstate_core.runtime._protocol import ActorAskTimeout, NodeJoined, NodeLeft
from dstate_core.testing.conformance import Recorder
from dstate_thespian import (
    InProcessConvention,
    RemoteAskError,
    ThespianActorRef,
    ThespianRuntime,
    stop_system,
)
from dstate_thespian._gateway import View
from dstate_thespian._thespian import start_system

from .harness import wait_until

DEADLINE = 5.0


@pytest.fixture
def faults() -> FaultModel:
    """The fault model the ``pair`` runtimes share."""
    return FaultModel()


@pytest.fixture
def pair(faults: FaultModel) -> Iterator[tuple[ThespianRuntime, ThespianRuntime]]:
    """Two simpleSystemBase runtimes that see each other."""
    convention = InProcessConvention(failure_timeout=0.2)
    a = ThespianRuntime("a", "simpleSystemBase", convention=convention, faults=faults)
    b = ThespianRuntime("b", "simpleSystemBase", convention=convention, faults=faults)
    assert wait_until(lambda: a.peers == ["b"] and b.peers == ["a"], DEADLINE)
    yield a, b
    a.shutdown()
    b.shutdown()
    convention.close()


def remote(runtime: ThespianRuntime, group: str, node: str) -> ThespianActorRef:
    assert wait_until(
        lambda: any(r.node_id == node for r in runtime.group_members(group)), DEADLINE
    )
    ref = next(r for r in runtime.group_members(group) if r.node_id == node)
    assert isinstance(ref, ThespianActorRef)
    return ref


class TestOptions:
    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="node_id"):
            ThespianRuntime("", "simpleSystemBase")
        with pytest.raises(ValueError, match="node_id"):
            ThespianRuntime("*", "simpleSystemBase")
        with pytest.raises(ValueError, match="system_base"):
            ThespianRuntime("a", "multiprocQueueBase")
        with pytest.raises(ValueError, match="multiprocTCPBase"):
            ThespianRuntime("a", "simpleSystemBase", admin_port=1234)
        with pytest.raises(ValueError, match="simpleSystemBase"):
            ThespianRuntime("a", convention=InProcessConvention())

    @pytest.mark.parametrize(
        ("given", "want"),
        [("h:1", "h:1"), (("h", 65535), "h:65535")],
    )
    def test_convention_addresses(self, given: Any, want: str) -> None:
        assert normalize_address(given) == want

    @pytest.mark.parametrize("bad", ["h", "h:x", ":1", "h:0", ("h",), ("h", 70000), 5])
    def test_bad_convention_addresses(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="host:port"):
            normalize_address(bad)

    def test_a_private_convention_is_closed_with_its_runtime(self) -> None:
        runtime = ThespianRuntime("solo", "simpleSystemBase")
        assert runtime.system_base == "simpleSystemBase"
        assert runtime.admin_port is None
        assert runtime.pids == []
        ref = runtime.spawn("echo", lambda msg: msg)
        assert ref.ask("hi", DEADLINE) == "hi"
        runtime.shutdown()
        assert runtime.is_shut_down

    def test_a_deferred_runtime_joins_when_told(self) -> None:
        convention = InProcessConvention(failure_timeout=0.2)
        a = ThespianRuntime("a", "simpleSystemBase", convention=convention)
        b = ThespianRuntime("b", "simpleSystemBase", convention=convention, join=False)
        try:
            b.join_group("g", b.spawn("m", Recorder()))  # set up before anyone sees it
            assert a.peers == [] and b.peers == []
            b.join_cluster()
            b.join_cluster()  # idempotent
            assert wait_until(lambda: a.peers == ["b"] and b.peers == ["a"], DEADLINE)
            assert [(r.node_id, r.name) for r in a.group_members("g")] == [("b", "m")]
        finally:
            b.shutdown()
            a.shutdown()
            convention.close()
        with pytest.raises(NodeShutdownError):
            b.join_cluster()


class TestRefsAndGroups:
    def test_local_and_remote_refs(self, pair: tuple[ThespianRuntime, ThespianRuntime]) -> None:
        a, b = pair
        ref_a = a.spawn("m", Recorder())
        ref_b = b.spawn("m", Recorder())
        a.join_group("g", ref_a)
        a.join_group("g", ref_a)  # twice is a no-op
        b.join_group("g", ref_b)
        far = remote(a, "g", "b")
        assert far.is_local is False
        assert far.alive
        assert far == remote(a, "g", "b")
        assert hash(far) == hash(remote(a, "g", "b"))
        assert far != ref_a
        assert "from 'a'" in repr(far)
        assert "local" in repr(ref_a)
        assert a.group_members("g")[0] == ref_a
        with pytest.raises(ValueError, match="from here"):
            far.stop()
        with pytest.raises(ValueError, match="not an actor of runtime"):
            a.join_group("g", far)
        with pytest.raises(ValueError, match="not an actor of runtime"):
            b.join_group("g", ref_a)
        with pytest.raises(TypeError):
            a.join_group("g", object())  # type: ignore[arg-type]
        ref_a.stop()
        with pytest.raises(ActorSendError):
            a.join_group("h", ref_a)
        assert a.group_members("g") == [far]
        assert wait_until(lambda: [r.node_id for r in b.group_members("g")] == ["b"], DEADLINE)

    def test_timers_may_target_remote_actors(
        self, pair: tuple[ThespianRuntime, ThespianRuntime]
    ) -> None:
        a, b = pair
        rec = Recorder()
        b.join_group("g", b.spawn("m", rec))
        far = remote(a, "g", "b")
        with pytest.raises(TypeError, match="bytes"):
            a.send_after(far, 0.01, "text")
        a.send_after(far, 0.01, b"later")
        assert wait_until(lambda: rec.has(b"later"), DEADLINE)

    def test_counters_and_drops(self, pair: tuple[ThespianRuntime, ThespianRuntime]) -> None:
        a, b = pair
        rec = Recorder()
        b.join_group("g", b.spawn("m", rec))
        b.join_group("g", b.spawn("n", rec))
        assert wait_until(lambda: len(a.group_members("g")) == 2, DEADLINE)
        far = remote(a, "g", "b")
        sent, size = a.messages_sent, a.bytes_sent
        far.send(b"12345")
        a.broadcast_group("g", b"abc")
        assert a.messages_sent == sent + 1 + 2
        assert a.bytes_sent == size + 5 + 2 * 3
        assert wait_until(lambda: len(rec.items) == 3, DEADLINE)
        dropped = b.messages_dropped
        outsiders = b.drops.get("not a member", 0)
        a.remote_ref("b", "nobody").send(b"x")
        a._post(Parcel("a", a.incarnation, "b", ParcelKind.GROUPS, "", b"\xc1"))
        a._post(Parcel("a", a.incarnation, "b", "no-such-kind", "m", b"x"))
        assert wait_until(lambda: b.messages_dropped == dropped + 3, DEADLINE)
        b.remote.on_parcel(Parcel("zzz", "1", "b", ParcelKind.REPLY, "", b"", "unknown-ask"))
        # From a node outside the cluster, or an old incarnation of a member: dropped, counted.
        b.remote.on_parcel(Parcel("zzz", "1", "b", ParcelKind.SEND, "m", b"x"))
        b.remote.on_parcel(Parcel("a", "old-incarnation", "b", ParcelKind.CAST, "g", b"x"))
        assert b.drops["not a member"] == outsiders + 3
        assert b.messages_dropped == dropped + 3 + 3


def capture_posts(runtime: ThespianRuntime) -> list[Parcel]:
    """Record every parcel ``runtime`` sends to its gateway (they still go)."""
    posted: list[Parcel] = []
    post = runtime._link.post

    def record(msg: Any) -> None:
        if isinstance(msg, Parcel):
            posted.append(msg)
        post(msg)

    runtime._link.post = record  # type: ignore[method-assign]
    return posted


class TestGroupTables:
    """Group tables count only from members; a peer's table goes when it leaves."""

    def test_tables_from_outside_the_cluster_are_dropped_and_counted(self) -> None:
        runtime = ThespianRuntime("me", "simpleSystemBase")
        try:
            table = encode_groups({"g": ["x"]})
            runtime.remote.on_parcel(Parcel("ghost", "1", "me", ParcelKind.GROUPS, "", table))
            wants = Parcel("ghost", "1", "me", ParcelKind.GROUPS, "", table, WANT_GROUPS)
            runtime.remote.on_parcel(wants)
            runtime.remote.on_parcel(Parcel("ghost", "1", "me", ParcelKind.GROUPS, "", b"\xc1"))
            assert runtime.drops == {"not a member": 3}
            assert runtime.remote.directory._tables == {}
            assert runtime.group_members("g") == []
        finally:
            runtime.shutdown()

    def test_a_table_refused_before_the_view_is_asked_for_again(self) -> None:
        runtime = ThespianRuntime("me", "simpleSystemBase")
        try:
            events: list[Any] = []
            runtime.cluster_events.subscribe(events.append)
            posted = capture_posts(runtime)
            table = encode_groups({"g": ["x"]})
            # b saw us first: its table arrives before the gateway reports b, and is dropped.
            runtime.remote.on_parcel(Parcel("b", "1", "me", ParcelKind.GROUPS, "", table))
            assert runtime.drops == {"not a member": 1}
            runtime._on_message(View((("b", "1"),)))
            assert [(p.dst, p.kind, p.ref) for p in posted] == [
                ("b", ParcelKind.GROUPS, WANT_GROUPS)
            ]
            assert runtime.peers == []
            # b answers with its table (without asking back): b joins.
            runtime.remote.on_parcel(Parcel("b", "1", "me", ParcelKind.GROUPS, "", table))
            assert runtime.peers == ["b"]
            assert [(r.node_id, r.name) for r in runtime.group_members("g")] == [("b", "x")]
            assert len(posted) == 1
            # A member asking for our table gets it.
            runtime.remote.on_parcel(
                Parcel("b", "1", "me", ParcelKind.GROUPS, "", table, WANT_GROUPS)
            )
            assert [(p.dst, p.ref) for p in posted[1:]] == [("b", "")]
            assert decode_groups(posted[1].body) == {}
            # b leaves the view: its table goes, so a return must bring a new one.
            runtime._on_message(View(()))
            assert runtime.remote.directory._tables == {}
            runtime._on_message(View((("b", "1"),)))
            assert runtime.peers == []
            assert runtime.group_members("g") == []
            assert [(p.dst, p.ref) for p in posted[2:]] == [("b", WANT_GROUPS)]
            assert events == [NodeJoined("b"), NodeLeft("b")]
        finally:
            runtime.shutdown()


class TestRemoteAsk:
    def test_replies_failures_and_timeouts(
        self, pair: tuple[ThespianRuntime, ThespianRuntime], faults: FaultModel
    ) -> None:
        a, b = pair

        def handler(msg: bytes) -> Any:
            if msg == b"boom":
                raise KeyError("boom")
            if msg == b"text":
                return "not bytes"
            return b"echo:" + msg

        b.join_group("g", b.spawn("echo", handler))
        far = remote(a, "g", "b")
        assert far.ask(b"hi", DEADLINE) == b"echo:hi"
        with pytest.raises(RemoteAskError, match="KeyError"):
            far.ask(b"boom", DEADLINE)
        with pytest.raises(RemoteAskError, match="not bytes"):
            far.ask(b"text", DEADLINE)
        with pytest.raises(TypeError):
            far.ask("text", DEADLINE)
        with pytest.raises(RemoteAskError, match="no actor"):
            a.remote_ref("b", "nobody").ask(b"x", DEADLINE)
        faults.partition(["a"], ["b"])
        with pytest.raises(ActorAskTimeout):
            far.ask(b"lost", 0.2)

    def test_shutdown_fails_a_waiting_ask(
        self, pair: tuple[ThespianRuntime, ThespianRuntime]
    ) -> None:
        a, b = pair
        release = threading.Event()
        b.join_group("g", b.spawn("slow", lambda msg: release.wait(DEADLINE) and b"done"))
        far = remote(a, "g", "b")
        errors: list[BaseException] = []

        def asker() -> None:
            try:
                far.ask(b"x", DEADLINE)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=asker)
        thread.start()
        assert wait_until(lambda: a.remote.waiting == 1, DEADLINE)
        a.shutdown()
        thread.join(DEADLINE)
        release.set()
        assert len(errors) == 1
        assert isinstance(errors[0], NodeShutdownError)


class TestLifecycle:
    def test_after_shutdown_everything_refuses(
        self, pair: tuple[ThespianRuntime, ThespianRuntime]
    ) -> None:
        a, b = pair
        ref = a.spawn("m", Recorder())
        a.join_group("g", ref)
        b.join_group("g", b.spawn("m", Recorder()))
        far = remote(a, "g", "b")
        a.shutdown()
        a.shutdown()
        for call in (
            lambda: a.spawn("x", Recorder()),
            lambda: a.send_after(ref, 0.1, "x"),
            lambda: a.broadcast_group("g", b"x"),
            lambda: a.group_members("g"),
            lambda: far.send(b"x"),
            lambda: a.cluster_events.subscribe(print),
        ):
            with pytest.raises(NodeShutdownError):
                call()
        a.leave_group("g", ref)  # still idempotent
        assert not far.alive
        assert "shut down" in repr(a)

    def test_shutdown_from_a_handler(self) -> None:
        runtime = ThespianRuntime("solo", "simpleSystemBase")
        done = threading.Event()

        def handler(msg: Any) -> None:
            runtime.shutdown()
            done.set()

        runtime.spawn("killer", handler).send("go")
        assert done.wait(DEADLINE)
        assert runtime.is_shut_down

    def test_subscribe_replays_joined_peers(
        self, pair: tuple[ThespianRuntime, ThespianRuntime]
    ) -> None:
        a, _ = pair
        events: list[Any] = []
        a.cluster_events.subscribe(events.append)
        assert events == [NodeJoined("b")]


class TestMultiprocTCPBase:
    def test_a_member_whose_leader_is_absent_starts_anyway(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        nobody = free_port()
        with caplog.at_level(logging.WARNING, logger="dstate.thespian"):
            runtime = ThespianRuntime(
                "lonely",
                convention_address=f"127.0.0.1:{nobody}",
                host="127.0.0.1",
                join_timeout=0.3,
            )
        try:
            assert "not yet admitted" in caplog.text
            assert runtime.peers == []
            assert len(runtime.pids) >= 3
            port = runtime.admin_port
            assert port is not None and port_open(port)
            with pytest.raises(ValueError, match="in use"):
                ThespianRuntime("twin", admin_port=port, host="127.0.0.1")
        finally:
            runtime.shutdown()
        assert not runtime.alive_pids()
        assert not port_open(port)

    def test_stop_system_clears_a_system_left_running(self) -> None:
        port = free_port()
        leftover = start_system("multiprocTCPBase", {"Admin Port": port})
        try:
            assert port_open(port)
            del leftover  # the process that started it "went away" without shutdown()
            stop_system(port)
            assert wait_until(lambda: not port_open(port), DEADLINE)
        finally:
            stop_system(port)
        stop_system(port)  # nothing there: no-op
