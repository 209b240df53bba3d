"""ThreadedActor / ThreadedActorHost: one thread and FIFO queue per actor."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dstate_core.model._errors import ActorSendError
from dstate_core.runtime._protocol import ActorAskTimeout, PendingReply
from dstate_core.runtime._threaded import ThreadedActor, ThreadedActorHost


def _wait(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


@pytest.fixture
def host() -> Iterator[ThreadedActorHost]:
    h = ThreadedActorHost("n1")
    yield h
    assert h.close(2.0) == []


class TestThreadedActor:
    def test_fifo_and_one_at_a_time(self, host: ThreadedActorHost) -> None:
        seen: list[int] = []
        busy = threading.Lock()
        overlaps: list[int] = []

        def handler(n: int) -> None:
            if not busy.acquire(blocking=False):
                overlaps.append(n)
                return
            seen.append(n)
            busy.release()

        actor = host.spawn("fifo", handler)
        for n in range(500):
            actor.tell(n)
        assert _wait(lambda: len(seen) == 500)
        assert seen == list(range(500))
        assert overlaps == []

    def test_ask_returns_value_and_awaits_pending_reply(self, host: ThreadedActorHost) -> None:
        later: list[PendingReply] = []

        def handler(msg: Any) -> Any:
            if msg == "later":
                reply = PendingReply()
                later.append(reply)
                threading.Timer(0.02, reply.resolve, ("done",)).start()
                return reply
            return ("echo", msg)

        actor = host.spawn("echo", handler)
        assert actor.ask(1, 2.0) == ("echo", 1)
        assert actor.ask("later", 2.0) == "done"

    def test_ask_times_out_on_an_unresolved_reply(self, host: ThreadedActorHost) -> None:
        actor = host.spawn("silent", lambda msg: PendingReply())
        with pytest.raises(ActorAskTimeout):
            actor.ask("?", 0.05)

    def test_ask_times_out_while_the_handler_is_busy(self, host: ThreadedActorHost) -> None:
        release = threading.Event()
        actor = host.spawn("busy", lambda msg: release.wait(2.0))
        actor.tell("block")
        with pytest.raises(TimeoutError):
            actor.ask("?", 0.05)
        release.set()

    def test_handler_errors_are_logged_and_reraised_by_ask(
        self, host: ThreadedActorHost, caplog: pytest.LogCaptureFixture
    ) -> None:
        def handler(msg: Any) -> Any:
            if msg == "boom":
                raise KeyError("boom")
            return msg

        actor = host.spawn("fragile", handler)
        with caplog.at_level(logging.ERROR, logger="dstate.actors"):
            actor.tell("boom")
            with pytest.raises(KeyError):
                actor.ask("boom", 2.0)
        assert actor.ask("alive", 2.0) == "alive"
        assert any("fragile" in r.getMessage() for r in caplog.records)

    def test_a_base_exception_stops_only_that_actor(self, host: ThreadedActorHost) -> None:
        def handler(msg: Any) -> Any:
            raise SystemExit(3)

        actor = host.spawn("exits", handler)
        with pytest.raises(SystemExit):
            actor.ask("x", 2.0)
        assert _wait(lambda: host.get("exits") is None)
        assert not actor.alive
        other = host.spawn("exits", lambda msg: msg)  # the name is free again
        assert other.ask("ok", 2.0) == "ok"

    def test_stop_discards_queued_messages_and_fails_queued_asks(
        self, host: ThreadedActorHost
    ) -> None:
        release = threading.Event()
        seen: list[Any] = []

        def handler(msg: Any) -> Any:
            if msg == "block":
                release.wait(2.0)
            seen.append(msg)
            return msg

        actor = host.spawn("stopping", handler)
        actor.tell("block")
        errors: list[BaseException] = []

        def asker() -> None:
            try:
                actor.ask("queued", 2.0)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=asker)
        thread.start()
        actor.tell("dropped")
        time.sleep(0.02)
        actor.stop()
        actor.stop()
        release.set()
        thread.join(2.0)
        assert actor.join(2.0)
        assert seen == ["block"]
        assert len(errors) == 1
        assert isinstance(errors[0], ActorSendError)
        with pytest.raises(ActorSendError):
            actor.tell("late")
        with pytest.raises(ActorSendError):
            actor.ask("late", 1.0)

    def test_an_actor_cannot_ask_itself(self, host: ThreadedActorHost) -> None:
        me: list[ThreadedActor] = []
        outcome: list[BaseException] = []

        def handler(msg: Any) -> None:
            try:
                me[0].ask("again", 1.0)
            except RuntimeError as exc:
                outcome.append(exc)

        me.append(host.spawn("narcissus", handler))
        me[0].tell("go")
        assert _wait(lambda: bool(outcome))

    def test_invalid_timeout(self, host: ThreadedActorHost) -> None:
        actor = host.spawn("t", lambda msg: msg)
        with pytest.raises(ValueError, match="timeout"):
            actor.ask(1, 0)
        assert "alive" in repr(actor)


class TestThreadedActorHost:
    def test_names_get_and_duplicates(self, host: ThreadedActorHost) -> None:
        a = host.spawn("a", lambda msg: msg)
        host.spawn("b", lambda msg: msg)
        assert host.names() == ["a", "b"]
        assert host.get("a") is a
        assert host.get("zzz") is None
        with pytest.raises(ValueError, match="already running"):
            host.spawn("a", lambda msg: msg)
        host.stop(a)
        assert host.get("a") is None
        assert host.names() == ["b"]
        host.spawn("a", lambda msg: msg)

    def test_close_stops_everything_and_refuses_new_actors(self) -> None:
        before = set(threading.enumerate())
        h = ThreadedActorHost("n2")
        actors = [h.spawn(f"x{i}", lambda msg: msg) for i in range(5)]
        assert h.close(2.0) == []
        assert all(not actor.alive for actor in actors)
        with pytest.raises(ActorSendError):
            h.spawn("late", lambda msg: msg)
        assert _wait(lambda: not (set(threading.enumerate()) - before))

    def test_close_reports_busy_actors_and_may_run_on_an_actor_thread(self) -> None:
        h = ThreadedActorHost("n3")
        release = threading.Event()
        closed: list[list[ThreadedActor]] = []
        started = threading.Event()
        busy = h.spawn("busy", lambda msg: (started.set(), release.wait(2.0)))
        busy.tell("block")
        assert started.wait(2.0)  # busy inside its handler, not just queued
        closer = h.spawn("closer", lambda msg: closed.append(h.close(0.05)))
        closer.tell("close")
        assert _wait(lambda: bool(closed))
        assert closed[0] == [busy]
        release.set()
        assert busy.join(2.0)
