"""PykkaRuntime: actors, asks, pending replies, failures, groups, shutdown."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from dstate_core import ActorSendError, NodeShutdownError
from dstate_core.runtime._protocol import (
    ActorAskTimeout,
    ActorRef,
    ActorRuntime,
    ClusterEvent,
    PendingReply,
    SubscriptionId,
    TimerHandle,
)
from dstate_pykka import PykkaActorRef, PykkaRuntime

from .helpers import Recorder, wait_until


class TestActors:
    def test_conforms_to_the_protocols(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("a", Recorder())
        assert isinstance(runtime, ActorRuntime)
        assert isinstance(ref, ActorRef)
        assert isinstance(runtime.send_after(ref, 10, "x"), TimerHandle)
        assert (ref.node_id, ref.name) == ("solo", "a")

    def test_ask_returns_the_handler_value(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("double", lambda m: m * 2)
        assert ref.ask(21, timeout=1.0) == 42

    def test_messages_are_handled_in_order(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("rec", rec)
        for i in range(200):
            ref.send(i)
        ref.ask("end", timeout=2.0)
        assert rec.items == [*range(200), "end"]

    def test_one_message_at_a_time(self, runtime: PykkaRuntime) -> None:
        active = 0
        overlaps = 0
        lock = threading.Lock()

        def handler(_: Any) -> None:
            nonlocal active, overlaps
            with lock:
                active += 1
                overlaps += active > 1
            time.sleep(0.001)
            with lock:
                active -= 1

        ref = runtime.spawn("serial", handler)

        def burst() -> None:
            for i in range(20):
                ref.send(i)

        senders = [threading.Thread(target=burst) for _ in "xyz"]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        ref.ask("last", timeout=2.0)
        assert overlaps == 0

    def test_local_messages_may_be_any_object(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("echo", lambda m: m)
        payload = {"nested": [1, object()]}
        assert ref.ask(payload, timeout=1.0) is payload

    def test_handler_can_send_to_itself_and_others(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        sink = runtime.spawn("sink", rec)
        refs: dict[str, PykkaActorRef] = {}

        def relay(msg: int) -> None:
            if msg > 0:
                refs["relay"].send(msg - 1)
            sink.send(msg)

        refs["relay"] = runtime.spawn("relay", relay)
        refs["relay"].send(3)
        assert wait_until(lambda: rec.items == [3, 2, 1, 0])

    def test_duplicate_name_is_rejected_until_stopped(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        with pytest.raises(ValueError, match="already running"):
            runtime.spawn("x", Recorder())
        ref.stop()
        assert runtime.spawn("x", lambda m: "new").ask(1, timeout=1.0) == "new"

    @pytest.mark.parametrize("name", ["", 3])
    def test_bad_names_are_rejected(self, runtime: PykkaRuntime, name: Any) -> None:
        with pytest.raises(ValueError, match="non-empty"):
            runtime.spawn(name, Recorder())

    def test_handler_must_be_callable(self, runtime: PykkaRuntime) -> None:
        with pytest.raises(TypeError, match="callable"):
            runtime.spawn("x", "nope")  # type: ignore[arg-type]

    def test_refs_to_one_actor_are_equal(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("g", Recorder())
        runtime.join_group("grp", ref)
        (member,) = runtime.group_members("grp")
        assert member == ref
        assert hash(member) == hash(ref)
        assert ref != runtime.spawn("h", Recorder())


class TestFailures:
    def test_raising_on_a_message_is_logged_and_the_actor_lives(
        self, runtime: PykkaRuntime, caplog: pytest.LogCaptureFixture
    ) -> None:
        def handler(msg: str) -> str:
            if msg == "boom":
                raise RuntimeError("kaboom")
            return "ok"

        ref = runtime.spawn("fragile", handler)
        with caplog.at_level(logging.ERROR, logger="dstate.pykka"):
            ref.send("boom")
            assert ref.ask("ping", timeout=1.0) == "ok"
        (record,) = [r for r in caplog.records if r.name == "dstate.pykka"]
        assert record.levelno == logging.ERROR
        assert "'fragile'" in record.getMessage()
        assert "'solo'" in record.getMessage()
        assert record.exc_info is not None

    def test_raising_on_an_ask_reraises_in_the_caller(
        self, runtime: PykkaRuntime, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Oops(Exception):
            pass

        def handler(msg: str) -> str:
            if msg == "boom":
                raise Oops("bad input")
            return "ok"

        ref = runtime.spawn("fragile", handler)
        with (
            caplog.at_level(logging.ERROR, logger="dstate.pykka"),
            pytest.raises(Oops, match="bad input"),
        ):
            ref.ask("boom", timeout=1.0)
        assert ref.ask("ping", timeout=1.0) == "ok"
        assert any(r.levelno == logging.ERROR for r in caplog.records)

    def test_system_exit_stops_only_that_actor(self, runtime: PykkaRuntime) -> None:
        def handler(msg: str) -> str:
            if msg == "exit":
                raise SystemExit(3)
            return "ok"

        other_runtime = PykkaRuntime("other")
        try:
            bystander = other_runtime.spawn("bystander", lambda m: "alive")
            neighbour = runtime.spawn("neighbour", lambda m: "alive")
            ref = runtime.spawn("quitter", handler)
            with pytest.raises(SystemExit):
                ref.ask("exit", timeout=1.0)
            with pytest.raises(ActorSendError):
                ref.send("again")
            assert neighbour.ask(1, timeout=1.0) == "alive"
            assert bystander.ask(1, timeout=1.0) == "alive"
            assert "quitter" not in runtime.actor_names()
        finally:
            other_runtime.shutdown()


class TestAsk:
    def test_timeout_raises_a_timeout_error(self, runtime: PykkaRuntime) -> None:
        release = threading.Event()
        ref = runtime.spawn("slow", lambda m: release.wait(2.0))
        start = time.monotonic()
        with pytest.raises(ActorAskTimeout) as info:
            ref.ask("x", timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        assert 0.09 <= time.monotonic() - start < 1.0
        release.set()
        assert ref.ask("y", timeout=1.0) is True

    @pytest.mark.parametrize("timeout", [0, -1, float("inf"), True, "1"])
    def test_bad_timeouts_are_rejected(self, runtime: PykkaRuntime, timeout: Any) -> None:
        ref = runtime.spawn("x", Recorder())
        with pytest.raises(ValueError, match="timeout"):
            ref.ask(1, timeout=timeout)

    def test_pending_reply_resolved_later(self, runtime: PykkaRuntime) -> None:
        pending: list[PendingReply] = []

        def handler(msg: str) -> Any:
            if msg == "later":
                pending.append(PendingReply())
                return pending[-1]
            pending.pop().resolve("resolved")
            return None

        ref = runtime.spawn("deferred", handler)
        threading.Timer(0.05, lambda: ref.send("resolve")).start()
        assert ref.ask("later", timeout=2.0) == "resolved"

    def test_pending_reply_failed(self, runtime: PykkaRuntime) -> None:
        reply = PendingReply()
        ref = runtime.spawn("deferred", lambda m: reply)
        reply.fail(KeyError("gone"))
        with pytest.raises(KeyError, match="gone"):
            ref.ask("x", timeout=1.0)

    def test_unresolved_pending_reply_times_out(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("deferred", lambda m: PendingReply())
        start = time.monotonic()
        with pytest.raises(ActorAskTimeout):
            ref.ask("x", timeout=0.1)
        assert time.monotonic() - start < 1.0

    def test_asking_itself_fails_fast(self, runtime: PykkaRuntime) -> None:
        refs: list[PykkaActorRef] = []
        ref = runtime.spawn("narcissus", lambda m: refs[0].ask("me?", timeout=5.0))
        refs.append(ref)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="cannot ask itself"):
            ref.ask("go", timeout=5.0)
        assert time.monotonic() - start < 1.0

    def test_pending_reply_on_a_tell_is_ignored(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("deferred", lambda m: PendingReply() if m == "p" else "ok")
        ref.send("p")
        assert ref.ask("q", timeout=1.0) == "ok"


class TestStop:
    def test_send_and_ask_after_stop_raise(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        assert runtime.actor("x") == ref
        ref.stop()
        ref.stop()  # idempotent
        with pytest.raises(KeyError, match="no running actor"):
            runtime.actor("x")
        assert not ref.alive
        with pytest.raises(ActorSendError):
            ref.send(1)
        with pytest.raises(ActorSendError):
            ref.ask(1, timeout=1.0)

    def test_queued_messages_are_discarded(self, runtime: PykkaRuntime) -> None:
        release = threading.Event()
        rec = Recorder()

        def handler(msg: str) -> None:
            rec(msg)
            release.wait(2.0)

        ref = runtime.spawn("busy", handler)
        ref.send("first")
        assert wait_until(lambda: rec.items == ["first"])
        ref.send("queued")
        errors: list[BaseException] = []

        def asker() -> None:
            try:
                ref.ask("queued-ask", timeout=2.0)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=asker)
        thread.start()
        inbox: Any = ref._cell.pykka_ref.actor_inbox  # type: ignore[union-attr]
        assert wait_until(lambda: inbox.qsize() >= 2)  # "queued" and the ask wait behind "first"
        ref.stop()
        release.set()
        thread.join(3.0)
        runtime.shutdown()  # waits for the actor's thread to process its stop
        assert rec.items == ["first"]
        assert len(errors) == 1
        assert isinstance(errors[0], ActorSendError)

    def test_stopped_actor_leaves_its_groups(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        runtime.join_group("g", ref)
        ref.stop()
        assert runtime.group_members("g") == []


class TestGroups:
    def test_join_leave_idempotent(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        runtime.join_group("g", ref)
        runtime.join_group("g", ref)
        assert runtime.group_members("g") == [ref]
        runtime.leave_group("g", ref)
        runtime.leave_group("g", ref)
        runtime.leave_group("never", ref)
        assert runtime.group_members("g") == []

    def test_only_local_live_actors_join(self, runtime: PykkaRuntime) -> None:
        other = PykkaRuntime("other")
        try:
            foreign = other.spawn("f", Recorder())
            with pytest.raises(ValueError, match="not hosted"):
                runtime.join_group("g", foreign)
            dead = runtime.spawn("dead", Recorder())
            dead.stop()
            with pytest.raises(ActorSendError):
                runtime.join_group("g", dead)
            with pytest.raises(TypeError):
                runtime.join_group("g", object())  # type: ignore[arg-type]
        finally:
            other.shutdown()

    def test_standalone_runtime_is_a_one_node_cluster(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        runtime.join_group("g", ref)
        events: list[ClusterEvent] = []
        runtime.cluster_events.subscribe(events.append)
        runtime.broadcast_group("g", b"only-others")
        ref.ask("marker", timeout=1.0)
        assert rec.items == ["marker"]
        assert events == []
        assert runtime.network.live_nodes() == ["solo"]


class TestShutdown:
    def test_calls_after_shutdown_raise_clearly(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        runtime.join_group("g", ref)
        timer = runtime.send_interval(ref, 0.05, "tick")
        runtime.shutdown()
        runtime.shutdown()  # idempotent
        assert runtime.is_shut_down
        with pytest.raises(NodeShutdownError, match="shut down"):
            runtime.spawn("y", Recorder())
        with pytest.raises(KeyError):
            runtime.actor("x")
        with pytest.raises(NodeShutdownError):
            runtime.send_after(ref, 1.0, "x")
        with pytest.raises(NodeShutdownError):
            runtime.send_interval(ref, 1.0, "x")
        with pytest.raises(NodeShutdownError):
            runtime.join_group("g", ref)
        with pytest.raises(NodeShutdownError):
            runtime.group_members("g")
        with pytest.raises(NodeShutdownError):
            runtime.broadcast_group("g", b"x")
        with pytest.raises(NodeShutdownError):
            runtime.cluster_events.subscribe(lambda e: None)
        with pytest.raises(ActorSendError):
            ref.send("x")
        with pytest.raises(ActorSendError):
            ref.ask("x", timeout=1.0)
        runtime.leave_group("g", ref)
        runtime.cluster_events.unsubscribe(SubscriptionId(999))
        timer.cancel()
        ref.stop()

    def test_shutdown_from_inside_a_handler(self, runtime: PykkaRuntime) -> None:
        done = threading.Event()

        def handler(msg: str) -> None:
            runtime.shutdown()
            done.set()

        runtime.spawn("x", handler).send("go")
        assert done.wait(2.0)
        assert runtime.is_shut_down

    def test_shutdown_returns_quickly_despite_a_busy_handler(self, runtime: PykkaRuntime) -> None:
        release = threading.Event()
        started = threading.Event()

        def handler(msg: str) -> None:
            started.set()
            release.wait(5.0)

        runtime.spawn("stuck", handler).send("go")
        assert started.wait(1.0)
        start = time.monotonic()
        runtime.shutdown()
        assert time.monotonic() - start < 2.0
        release.set()
