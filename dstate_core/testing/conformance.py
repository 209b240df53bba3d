"""A pytest conformance suite for any :class:`~dstate_core.runtime.ActorRuntime`.

Subclass :class:`RuntimeConformanceSuite` in a test module, name the subclass
``Test...`` and give it a ``harness`` fixture that yields a fresh
:class:`RuntimeHarness` (and closes it afterwards)::

    class TestMyRuntime(RuntimeConformanceSuite):
        @pytest.fixture
        def harness(self) -> Iterator[RuntimeHarness]:
            h = MyHarness()
            yield h
            h.close()

The tests never assume virtual time: they wait with ``harness.wait_until``
and generous timeouts, and prove that something did *not* happen by waiting
for a later marker, never by sleeping. A deterministic harness (like
:class:`SimNetworkHarness`) drives its simulation inside ``wait_until``, so the
suite runs instantly there; a real-time harness polls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import pytest

from ..model._errors import ActorSendError, DStateError
from ..runtime._protocol import (
    ActorRef,
    ActorRuntime,
    ClusterEvent,
    NodeJoined,
    NodeLeft,
    PendingReply,
    TimerHandle,
)
from ._clock import TestClock
from ._simnet import SimNetwork

__all__ = ["Recorder", "RuntimeConformanceSuite", "RuntimeHarness", "SimNetworkHarness"]


class RuntimeHarness(Protocol):
    """What the suite needs to set up and observe a cluster of one runtime kind."""

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        """Start one runtime per id, joined into the harness's one cluster.

        A test may call it again to add nodes that join the running cluster.
        """
        ...

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Drive (deterministic) or poll (real time) until ``predicate()``; False on timeout."""
        ...

    def remove(self, node_id: str) -> None:
        """Make ``node_id`` leave the cluster cleanly (the others see ``NodeLeft``)."""
        ...

    def close(self) -> None:
        """Shut every runtime down; must tolerate runtimes already shut down."""
        ...


class SimNetworkHarness:
    """The :class:`RuntimeHarness` of ``TestRuntime``: one :class:`SimNetwork`, virtual time."""

    def __init__(self, seed: int = 0) -> None:
        self.clock = TestClock()
        self.network = SimNetwork(self.clock, seed=seed)

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        """Add one ``TestRuntime`` per id to the network."""
        return [self.network.add_runtime(node_id) for node_id in node_ids]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run the simulation (moving virtual time) until ``predicate()`` or ``timeout``."""
        return self.network.run_until(predicate, timeout)

    def remove(self, node_id: str) -> None:
        """Clean leave of ``node_id``."""
        self.network.remove(node_id)

    def close(self) -> None:
        """Shut down every live node."""
        for node_id in self.network.live_nodes():
            self.network.remove(node_id)


class Recorder:
    """A thread-safe handler that records every message; answers ``reply(msg)``.

    Concurrency: safe to call from any actor thread and read from the test.
    """

    def __init__(self, reply: Callable[[Any], Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._reply = reply

    def __call__(self, msg: Any) -> Any:
        with self._lock:
            self._items.append(msg)
        return self._reply(msg) if self._reply is not None else None

    @property
    def items(self) -> list[Any]:
        """A copy of what was received, in order."""
        with self._lock:
            return list(self._items)

    def count(self, msg: Any) -> int:
        """How many received messages equal ``msg``."""
        with self._lock:
            return self._items.count(msg)

    def has(self, msg: Any) -> bool:
        """Whether ``msg`` was received."""
        return self.count(msg) > 0


def _by_node(members: list[ActorRef]) -> list[tuple[str, str]]:
    return sorted((ref.node_id, ref.name) for ref in members)


def _members_are(
    runtime: ActorRuntime, group: str, want: list[tuple[str, str]]
) -> Callable[[], bool]:
    return lambda: _by_node(runtime.group_members(group)) == want


class RuntimeConformanceSuite:
    """The ``ActorRuntime`` contract as tests; subclasses provide a ``harness`` fixture."""

    #: Seconds to wait for anything that should happen (generous for real time).
    TIMEOUT: ClassVar[float] = 5.0
    #: A short timer period (seconds).
    TICK: ClassVar[float] = 0.02
    #: An ask timeout the suite expects to expire.
    SHORT_ASK: ClassVar[float] = 0.2

    def _wait(self, harness: RuntimeHarness, predicate: Callable[[], bool], what: str) -> None:
        assert harness.wait_until(predicate, self.TIMEOUT), f"timed out waiting for {what}"

    def _marker(
        self, harness: RuntimeHarness, runtime: ActorRuntime, ref: ActorRef, rec: Recorder
    ) -> None:
        """Wait until a timer well after everything else reached ``ref``."""
        runtime.send_after(ref, self.TICK * 10, "marker")
        self._wait(harness, lambda: rec.has("marker"), "the marker timer")

    # -- messages ---------------------------------------------------------

    def test_messages_are_handled_in_fifo_order(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()
        ref = a.spawn("fifo", rec)
        for i in range(300):
            ref.send(i)
        self._wait(harness, lambda: len(rec.items) == 300, "300 messages")
        assert rec.items == list(range(300))

    def test_one_message_at_a_time_and_fifo_per_sender(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        busy = threading.Lock()
        overlaps: list[Any] = []
        rec = Recorder()

        def sink(msg: Any) -> None:
            if not busy.acquire(blocking=False):
                overlaps.append(msg)
                return
            try:
                rec(msg)
            finally:
                busy.release()

        target = a.spawn("sink", sink)

        def forwarder(tag: str) -> Callable[[Any], None]:
            return lambda n: target.send((tag, n))

        senders = [a.spawn(f"sender-{tag}", forwarder(tag)) for tag in ("x", "y")]
        for n in range(100):
            for sender in senders:
                sender.send(n)
            target.send(("main", n))
        self._wait(harness, lambda: len(rec.items) == 300, "300 forwarded messages")
        assert overlaps == []
        for tag in ("x", "y", "main"):
            assert [n for t, n in rec.items if t == tag] == list(range(100))

    def test_ask_returns_the_handler_value(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        ref = a.spawn("echo", lambda msg: None if msg == "none" else ("echo", msg))
        assert ref.ask(41, self.TIMEOUT) == ("echo", 41)
        assert ref.ask("none", self.TIMEOUT) is None

    def test_ask_timeout_raises_a_timeout_error(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        ref = a.spawn("silent", lambda msg: PendingReply())
        with pytest.raises(TimeoutError):
            ref.ask("hello?", self.SHORT_ASK)

    def test_ask_waits_for_a_pending_reply_resolved_later(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        waiting: list[PendingReply] = []
        me: list[ActorRef] = []

        def handler(msg: Any) -> Any:
            if msg == "get":
                reply = PendingReply()
                waiting.append(reply)
                me[0].send("resolve")  # answered on a later message
                return reply
            waiting.pop(0).resolve("later")
            return None

        me.append(a.spawn("later", handler))
        assert me[0].ask("get", self.TIMEOUT) == "later"

    def test_ask_waits_for_a_timer_that_resolves_the_reply(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        waiting: list[PendingReply] = []
        me: list[ActorRef] = []

        def handler(msg: Any) -> Any:
            if msg == "get":
                waiting.append(PendingReply())
                a.send_after(me[0], self.TICK, "tick")
                return waiting[-1]
            waiting.pop(0).resolve(7)
            return None

        me.append(a.spawn("timed", handler))
        assert me[0].ask("get", self.TIMEOUT) == 7

    def test_ask_raises_when_the_pending_reply_fails(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])

        def handler(msg: Any) -> PendingReply:
            reply = PendingReply()
            reply.fail(KeyError(msg))
            return reply

        ref = a.spawn("failing", handler)
        with pytest.raises(KeyError):
            ref.ask("missing", self.TIMEOUT)

    def test_a_raising_handler_keeps_its_actor_alive(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()

        def handler(msg: Any) -> Any:
            if msg == "boom":
                raise ValueError("boom")
            return rec(msg)

        ref = a.spawn("fragile", handler)
        ref.send("boom")
        ref.send("after")
        self._wait(harness, lambda: rec.has("after"), "the message after the failure")
        with pytest.raises(ValueError, match="boom"):
            ref.ask("boom", self.TIMEOUT)
        rec_reply = ref.ask("still alive", self.TIMEOUT)
        assert rec_reply is None
        assert rec.items == ["after", "still alive"]

    def test_send_and_ask_to_a_stopped_actor_raise(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()
        ref = a.spawn("short-lived", rec)
        assert ref.ask("hi", self.TIMEOUT) is None
        ref.stop()
        with pytest.raises(ActorSendError):
            ref.send("anyone?")
        with pytest.raises(ActorSendError):
            ref.ask("anyone?", self.TIMEOUT)

    def test_stop_is_idempotent(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        ref = a.spawn("stop-twice", Recorder())
        ref.stop()
        ref.stop()

    # -- timers -----------------------------------------------------------

    def test_send_after_fires_once(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()
        ref = a.spawn("once", rec)
        handle = a.send_after(ref, self.TICK, "tick")
        assert isinstance(handle, TimerHandle)
        self._wait(harness, lambda: rec.has("tick"), "the send_after message")
        self._marker(harness, a, ref, rec)
        assert rec.count("tick") == 1

    def test_send_interval_fires_repeatedly(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()
        ref = a.spawn("periodic", rec)
        handle = a.send_interval(ref, self.TICK, "tick")
        self._wait(harness, lambda: rec.count("tick") >= 3, "three interval ticks")
        handle.cancel()

    def test_cancel_stops_an_interval_and_is_idempotent(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()
        ref = a.spawn("cancelled", rec)
        handle = a.send_interval(ref, self.TICK, "tick")
        self._wait(harness, lambda: rec.count("tick") >= 2, "two interval ticks")
        handle.cancel()
        handle.cancel()
        seen = rec.count("tick")
        self._marker(harness, a, ref, rec)
        # A tick already queued when cancel ran may still arrive; no more than that.
        assert rec.count("tick") <= seen + 1

    def test_a_cancelled_send_after_never_fires(self, harness: RuntimeHarness) -> None:
        (a,) = harness.start(["a"])
        rec = Recorder()
        ref = a.spawn("never", rec)
        handle = a.send_after(ref, self.TICK * 2, "never")
        handle.cancel()
        self._marker(harness, a, ref, rec)
        handle.cancel()
        assert not rec.has("never")

    # -- groups and cross-node messages -----------------------------------

    def _two_members(
        self, harness: RuntimeHarness
    ) -> tuple[ActorRuntime, ActorRuntime, ActorRef, ActorRef, Recorder, Recorder]:
        a, b = harness.start(["a", "b"])
        rec_a, rec_b = Recorder(), Recorder()
        ref_a, ref_b = a.spawn("member-a", rec_a), b.spawn("member-b", rec_b)
        a.join_group("g", ref_a)
        b.join_group("g", ref_b)
        both = [("a", "member-a"), ("b", "member-b")]
        for runtime in (a, b):
            self._wait(
                harness,
                _members_are(runtime, "g", both),
                f"both members visible from {runtime.node_id}",
            )
        return a, b, ref_a, ref_b, rec_a, rec_b

    def test_group_members_span_the_cluster(self, harness: RuntimeHarness) -> None:
        a, _b, _ref_a, _ref_b, _rec_a, _rec_b = self._two_members(harness)
        members = a.group_members("g")
        assert all(isinstance(ref, ActorRef) for ref in members)
        assert a.group_members("no-such-group") == []

    def test_broadcast_reaches_only_members_on_other_nodes(self, harness: RuntimeHarness) -> None:
        a, _b, ref_a, _ref_b, rec_a, rec_b = self._two_members(harness)
        a.broadcast_group("g", b"hello")
        self._wait(harness, lambda: rec_b.has(b"hello"), "the broadcast on node b")
        self._marker(harness, a, ref_a, rec_a)
        assert rec_b.items == [b"hello"]
        assert not rec_a.has(b"hello")

    def test_cross_node_send_delivers_bytes(self, harness: RuntimeHarness) -> None:
        a, b, _ref_a, _ref_b, rec_a, rec_b = self._two_members(harness)
        member_b = next(ref for ref in a.group_members("g") if ref.node_id == "b")
        member_a = next(ref for ref in b.group_members("g") if ref.node_id == "a")
        member_b.send(b"direct")
        self._wait(harness, lambda: rec_b.has(b"direct"), "a direct message on node b")
        responder = b.spawn("responder", lambda msg: member_a.send(b"pong:" + msg))
        b.join_group("responders", responder)
        self._wait(harness, _members_are(a, "responders", [("b", "responder")]), "responder")
        a.group_members("responders")[0].send(b"ping")
        self._wait(harness, lambda: rec_a.has(b"pong:ping"), "the pong from node b")

    def test_cross_node_messages_must_be_bytes(self, harness: RuntimeHarness) -> None:
        a, _b, _ref_a, _ref_b, _rec_a, _rec_b = self._two_members(harness)
        remote = next(ref for ref in a.group_members("g") if ref.node_id == "b")
        with pytest.raises(TypeError):
            remote.send("not bytes")
        with pytest.raises(TypeError):
            a.broadcast_group("g", {"not": "bytes"})

    def test_leave_group_removes_the_member(self, harness: RuntimeHarness) -> None:
        a, b, _ref_a, ref_b, _rec_a, _rec_b = self._two_members(harness)
        b.leave_group("g", ref_b)
        b.leave_group("g", ref_b)
        for runtime in (a, b):
            self._wait(
                harness,
                _members_are(runtime, "g", [("a", "member-a")]),
                f"member-b gone as seen from {runtime.node_id}",
            )

    # -- cluster events ---------------------------------------------------

    def test_subscribe_replays_the_other_nodes(self, harness: RuntimeHarness) -> None:
        a, _b, _c = harness.start(["a", "b", "c"])
        events: list[ClusterEvent] = []
        a.cluster_events.subscribe(events.append)
        want = {NodeJoined("b"), NodeJoined("c")}
        self._wait(harness, lambda: want <= set(events), "NodeJoined for b and c")
        assert NodeJoined("a") not in events

    def test_a_node_joining_later_is_reported(self, harness: RuntimeHarness) -> None:
        [a] = harness.start(["a"])
        events: list[ClusterEvent] = []
        a.cluster_events.subscribe(events.append)
        harness.start(["late"])
        self._wait(harness, lambda: NodeJoined("late") in events, "NodeJoined for a later node")
        assert events.count(NodeJoined("late")) == 1

    def test_node_left_is_reported_and_unsubscribe_stops_it(self, harness: RuntimeHarness) -> None:
        a, _b, _c = harness.start(["a", "b", "c"])
        first: list[ClusterEvent] = []
        second: list[ClusterEvent] = []
        sub = a.cluster_events.subscribe(first.append)
        harness.remove("c")
        self._wait(harness, lambda: NodeLeft("c") in first, "NodeLeft for c")
        a.cluster_events.unsubscribe(sub)
        a.cluster_events.unsubscribe(sub)
        a.cluster_events.subscribe(second.append)
        harness.remove("b")
        self._wait(harness, lambda: NodeLeft("b") in second, "NodeLeft for b (second callback)")
        assert NodeLeft("b") not in first

    # -- shutdown ---------------------------------------------------------

    def test_shutdown_stops_actors_and_refuses_new_work(self, harness: RuntimeHarness) -> None:
        a, b = harness.start(["a", "b"])
        events: list[ClusterEvent] = []
        b.cluster_events.subscribe(events.append)
        rec = Recorder()
        ref = a.spawn("doomed", rec)
        assert ref.ask("alive?", self.TIMEOUT) is None
        a.shutdown()
        with pytest.raises(DStateError):
            ref.send("too late")
        with pytest.raises(DStateError):
            a.spawn("newborn", rec)
        a.shutdown()  # idempotent
        self._wait(harness, lambda: NodeLeft("a") in events, "NodeLeft for the shut-down node")
