"""SimNetwork: determinism, faults, partitions, membership, driving and re-entrancy."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from dstate_core import ActorSendError, NodeShutdownError
from dstate_core.runtime._protocol import (
    ActorAskTimeout,
    ClusterEvent,
    NodeJoined,
    NodeLeft,
    PendingReply,
)
from dstate_core.testing._clock import TestClock
from dstate_core.testing._runtime import TestActorRef, TestRuntime
from dstate_core.testing._simnet import SimNetwork

N = 4000


def make(*node_ids: str, seed: int = 0, failure_timeout: float = 5.0) -> SimNetwork:
    net = SimNetwork(TestClock(), seed=seed, failure_timeout=failure_timeout)
    for node_id in node_ids:
        net.add_runtime(node_id)
    return net


def sink(net: SimNetwork, node_id: str, name: str = "sink") -> tuple[TestActorRef, list[Any]]:
    """A recording actor on ``node_id`` in group "g"; returns its ref and what it received."""
    got: list[Any] = []
    runtime = net.runtime(node_id)
    ref = runtime.spawn(name, got.append)
    runtime.join_group("g", ref)
    return ref, got


def remote(net: SimNetwork, src: str, dst: str, name: str = "sink") -> TestActorRef:
    """The ref of ``dst``'s actor ``name`` as seen (and sent to) from ``src``."""
    for ref in net.runtime(src).group_members("g"):
        if ref.node_id == dst and ref.name == name:
            assert isinstance(ref, TestActorRef)
            return ref
    raise AssertionError(f"no member {name} on {dst}")


def blast(net: SimNetwork, count: int = N) -> list[Any]:
    """Send ``count`` numbered messages a -> b; return what b received."""
    _ref, got = sink(net, "b")
    to_b = remote(net, "a", "b")
    for i in range(count):
        to_b.send(i.to_bytes(4, "big"))
    net.advance(10.0)
    return [int.from_bytes(m, "big") for m in got]


# -- determinism -------------------------------------------------------------


def trace_of(seed: int) -> list[tuple[float, str, bytes]]:
    net = make("a", "b", "c", seed=seed)
    net.set_faults(drop=0.1, duplicate=0.1, reorder=0.2, delay=0.05)
    trace: list[tuple[float, str, bytes]] = []
    for node_id in ("a", "b", "c"):
        runtime = net.runtime(node_id)

        def handler(msg: Any, node_id: str = node_id, runtime: TestRuntime = runtime) -> None:
            trace.append((net.clock.now(), node_id, msg))
            if isinstance(msg, bytes) and len(msg) < 6:
                runtime.broadcast_group("g", msg + node_id.encode())
            elif not isinstance(msg, bytes):
                runtime.broadcast_group("g", b"t")

        ref = runtime.spawn("echo", handler)
        runtime.join_group("g", ref)
        runtime.send_interval(ref, 0.3, "tick")
    net.advance(3.0)
    return trace


def test_same_seed_gives_the_same_trace() -> None:
    first = trace_of(7)
    assert len(first) > 100
    assert trace_of(7) == first


def test_different_seeds_differ_with_faults_on() -> None:
    assert trace_of(1) != trace_of(2)


# -- faults ------------------------------------------------------------------


def test_no_faults_delivers_everything_in_order_without_moving_time() -> None:
    net = make("a", "b")
    _ref, got = sink(net, "b")
    to_b = remote(net, "a", "b")
    for i in range(100):
        to_b.send(bytes([i]))
    assert got == []  # nothing runs until the network is driven
    net.run_until_idle()
    assert got == [bytes([i]) for i in range(100)]
    assert net.clock.now() == 0.0


def test_drop_rate_is_roughly_as_configured() -> None:
    net = make("a", "b")
    net.set_faults(drop=0.3)
    got = blast(net)
    assert 0.65 * N < len(got) < 0.75 * N
    assert net.messages_dropped == N - len(got)
    assert got == sorted(got)  # drops alone never reorder


def test_duplicate_rate_is_roughly_as_configured() -> None:
    net = make("a", "b")
    net.set_faults(duplicate=0.25)
    got = blast(net)
    assert 1.2 * N < len(got) < 1.3 * N
    assert set(got) == set(range(N))
    assert net.messages_sent == N
    assert net.messages_delivered == len(got)


def test_reorder_lets_following_messages_overtake() -> None:
    net = make("a", "b")
    net.set_faults(reorder=0.2)
    got = blast(net)
    assert sorted(got) == list(range(N))
    overtaken = sum(1 for before, after in itertools.pairwise(got) if before > after)
    assert 0.1 * N < overtaken < 0.3 * N


def test_delay_is_uniform_up_to_the_maximum() -> None:
    net = make("a", "b")
    net.set_faults(delay=1.0)
    times: list[float] = []
    ref = net.runtime("b").spawn("timed", lambda _msg: times.append(net.clock.now()))
    net.runtime("b").join_group("g", ref)
    to_b = remote(net, "a", "b", "timed")
    for _ in range(N):
        to_b.send(b"x")
    net.run_until_idle()
    assert times == []  # every message waits a random delay
    net.advance(1.0)
    assert len(times) == N
    assert all(0.0 < t <= 1.0 for t in times)
    assert 0.45 < sum(times) / N < 0.55
    assert times == sorted(times)


def test_faults_apply_to_the_selected_links_and_later_calls_override() -> None:
    net = make("a", "b", "c")
    _rb, got_b = sink(net, "b")
    _rc, got_c = sink(net, "c")
    net.set_faults(drop=1.0, src="a", dst="b")
    remote(net, "a", "b").send(b"lost")
    remote(net, "a", "c").send(b"kept")
    remote(net, "c", "b").send(b"other link")
    net.run_until_idle()
    assert got_b == [b"other link"]
    assert got_c == [b"kept"]
    net.set_faults(drop=0.0, dst="b")  # later rule wins on a -> b
    remote(net, "a", "b").send(b"again")
    net.run_until_idle()
    assert got_b == [b"other link", b"again"]
    net.set_faults(drop=1.0)
    net.clear_faults()
    remote(net, "a", "c").send(b"clear")
    net.run_until_idle()
    assert got_c == [b"kept", b"clear"]


@pytest.mark.parametrize("name", ["drop", "duplicate", "reorder"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_fault_probabilities_are_validated(name: str, value: Any) -> None:
    net = make("a")
    with pytest.raises(ValueError, match=name):
        net.set_faults(**{name: value})


@pytest.mark.parametrize("value", [-1.0, float("inf")])
def test_fault_delay_is_validated(value: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        make("a").set_faults(delay=value)


# -- partitions --------------------------------------------------------------


def test_partition_drops_across_groups_and_heal_restores() -> None:
    net = make("a", "b", "c", "d")
    got = {n: sink(net, n)[1] for n in ("a", "b", "c", "d")}
    net.partition(["a", "b"], ["c"])  # d is alone in the unlisted group
    for dst in ("b", "c", "d"):
        remote(net, "a", dst).send(b"from a")
    net.run_until_idle()
    assert got["b"] == [b"from a"]
    assert got["c"] == got["d"] == []
    assert net.messages_dropped == 2
    net.heal()
    for dst in ("b", "c", "d"):
        remote(net, "a", dst).send(b"healed")
    net.run_until_idle()
    assert got["c"] == got["d"] == [b"healed"]


def test_a_new_partition_loses_messages_in_flight() -> None:
    net = make("a", "b")
    _ref, got = sink(net, "b")
    net.set_faults(delay=1.0)
    for _ in range(10):
        remote(net, "a", "b").send(b"in flight")
    net.partition(["a"], ["b"])
    net.advance(2.0)
    assert got == []
    assert net.messages_dropped == 10
    net.heal()
    remote(net, "a", "b").send(b"after heal")
    net.advance(2.0)
    assert got == [b"after heal"]


def test_partition_rejects_a_node_in_two_groups() -> None:
    with pytest.raises(ValueError, match="two partition groups"):
        make("a").partition(["a", "b"], ["b"])


# -- membership --------------------------------------------------------------


def subscribe(runtime: TestRuntime) -> list[ClusterEvent]:
    events: list[ClusterEvent] = []
    runtime.cluster_events.subscribe(events.append)
    return events


def test_join_and_clean_leave_are_reported_at_once() -> None:
    net = make("a")
    events = subscribe(net.runtime("a"))
    b = net.add_runtime("b")
    assert events == [NodeJoined("b")]
    assert subscribe(b) == [NodeJoined("a")]
    net.remove("b")
    assert events == [NodeJoined("b"), NodeLeft("b")]
    assert net.live_nodes() == ["a"]
    with pytest.raises(ValueError, match="already live"):
        net.add_runtime("a")


def test_crash_reports_node_left_only_after_the_failure_timeout() -> None:
    net = make("a", "b", failure_timeout=3.0)
    events = subscribe(net.runtime("a"))
    net.crash("b")
    net.advance(2.9)
    assert events == [NodeJoined("b")]
    net.advance(0.1)
    assert events == [NodeJoined("b"), NodeLeft("b")]


def test_late_node_left_fires_even_after_the_node_came_back() -> None:
    net = make("a", "b", failure_timeout=5.0)
    events = subscribe(net.runtime("a"))
    net.crash("b")
    net.advance(1.0)
    new_b = net.add_runtime("b")
    new_b_events = subscribe(new_b)
    net.advance(5.0)
    assert events == [NodeJoined("b"), NodeJoined("b"), NodeLeft("b")]
    assert new_b_events == [NodeJoined("a")]  # the re-added node never hears of its own death
    assert net.live_nodes() == ["a", "b"]


def test_crashed_node_timers_and_in_flight_messages_are_lost() -> None:
    net = make("a", "b")
    b = net.runtime("b")
    ref_b, got_b = sink(net, "b")
    net.runtime("b").send_interval(ref_b, 0.5, "tick")
    net.runtime("b").send_after(ref_b, 0.7, "once")
    net.set_faults(delay=0.2)
    remote(net, "a", "b").send(b"in flight")
    net.crash("b")
    net.advance(3.0)
    assert got_b == []
    assert net.messages_dropped == 1
    assert net.next_event_time() == 5.0  # only the late NodeLeft: the dead timers are gone
    assert [ref.node_id for ref in net.runtime("a").group_members("g")] == []
    with pytest.raises(NodeShutdownError, match="crashed"):
        b.spawn("after the crash", print)
    with pytest.raises(KeyError):
        net.runtime("b")


def test_shut_down_runtime_refuses_work() -> None:
    net = make("a", "b")
    a = net.runtime("a")
    ref, _got = sink(net, "a")
    sink(net, "b")
    to_b = remote(net, "a", "b")
    a.shutdown()
    a.shutdown()
    assert not a.running
    assert net.live_nodes() == ["b"]
    with pytest.raises(ActorSendError, match="stopped"):
        ref.send("x")
    with pytest.raises(NodeShutdownError, match="shut down"):
        to_b.send(b"x")
    with pytest.raises(NodeShutdownError):
        a.spawn("late", print)
    with pytest.raises(NodeShutdownError):
        a.send_after(ref, 1.0, "x")
    with pytest.raises(NodeShutdownError):
        a.cluster_events.subscribe(print)


def test_inject_delivers_raw_bytes_now_bypassing_faults() -> None:
    net = make("a", "b")
    ref_b, got = sink(net, "b")
    net.set_faults(drop=1.0)
    net.partition(["a"], ["b"])
    net.inject("a", ref_b, b"\x00garbage")
    net.run_until_idle()
    assert got == [b"\x00garbage"]
    assert net.messages_sent == 0
    with pytest.raises(TypeError):
        net.inject("a", ref_b, "text")  # type: ignore[arg-type]


def test_counters_count_each_destination_at_send_time() -> None:
    net = make("a", "b", "c")
    ref_a, _ = sink(net, "a")
    sink(net, "b")
    sink(net, "c")
    net.set_faults(drop=1.0)
    net.runtime("a").broadcast_group("g", b"12345")
    ref_a.send("local messages are not counted")
    assert (net.messages_sent, net.bytes_sent, net.messages_dropped) == (2, 10, 2)
    net.reset_counters()
    assert (net.messages_sent, net.bytes_sent, net.messages_dropped) == (0, 0, 0)


# -- driving -----------------------------------------------------------------


def test_advance_steps_the_clock_to_each_event() -> None:
    net = make("a")
    a = net.runtime("a")
    seen: list[tuple[float, Any]] = []
    ref = a.spawn("timed", lambda msg: seen.append((net.clock.now(), msg)))
    a.send_interval(ref, 0.5, "every")
    a.send_after(ref, 0.3, "once")
    net.run_until_idle()
    assert seen == []
    assert net.advance(1.2) == 6  # 3 timer firings + 3 handled messages
    assert seen == [(0.3, "once"), (0.5, "every"), (1.0, "every")]
    assert net.clock.now() == 1.2


def test_run_until_stops_when_the_predicate_holds_or_at_the_deadline() -> None:
    net = make("a")
    a = net.runtime("a")
    got: list[Any] = []
    ref = a.spawn("r", got.append)
    a.send_after(ref, 2.0, "late")
    assert net.run_until(lambda: bool(got), 5.0)
    assert net.clock.now() == 2.0
    assert not net.run_until(lambda: len(got) > 1, 1.5)
    assert net.clock.now() == 3.5


def test_livelock_guard_raises() -> None:
    net = make("a")
    a = net.runtime("a")
    refs: list[TestActorRef] = []
    refs.append(a.spawn("ping", lambda msg: refs[1].send(msg)))
    refs.append(a.spawn("pong", lambda msg: refs[0].send(msg)))
    refs[0].send("ball")
    with pytest.raises(RuntimeError, match="livelock"):
        net.run_until_idle(max_events=1000)


def test_blocking_calls_inside_a_handler_raise_a_clear_error() -> None:
    net = make("a")
    a = net.runtime("a")
    errors: list[BaseException] = []
    other = a.spawn("other", lambda msg: msg)

    def handler(msg: Any) -> None:
        try:
            if msg == "ask":
                other.ask("x", 1.0)
            else:
                net.run_until_idle()
        except RuntimeError as exc:
            errors.append(exc)

    ref = a.spawn("nested", handler)
    ref.send("ask")
    ref.send("drive")
    net.run_until_idle()
    assert len(errors) == 2
    assert "would deadlock" in str(errors[0])
    assert "would deadlock" in str(errors[1])


def test_a_cluster_event_callback_cannot_ask() -> None:
    net = make("a")
    a = net.runtime("a")
    target = a.spawn("target", lambda msg: msg)
    caught: list[BaseException] = []

    def callback(_event: ClusterEvent) -> None:
        try:
            target.ask("x", 1.0)
        except RuntimeError as exc:
            caught.append(exc)

    a.cluster_events.subscribe(callback)
    net.add_runtime("z")
    assert len(caught) == 1
    assert "would deadlock" in str(caught[0])
    assert target.ask("outside", 1.0) == "outside"


def test_a_raising_handler_is_logged_and_survives(caplog: pytest.LogCaptureFixture) -> None:
    net = make("a")
    a = net.runtime("a")
    got: list[Any] = []

    def handler(msg: Any) -> None:
        if msg == "boom":
            raise ValueError("kaboom")
        got.append(msg)

    ref = a.spawn("fragile", handler)
    with caplog.at_level(logging.ERROR, logger="dstate.testing"):
        ref.send("boom")
        ref.send("next")
        net.run_until_idle()
    assert got == ["next"]
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "'fragile'" in record.getMessage()
    assert "'a'" in record.getMessage()
    with pytest.raises(ValueError, match="kaboom"):
        ref.ask("boom", 1.0)


# -- ask ---------------------------------------------------------------------


def test_ask_runs_only_the_target_mailbox_and_keeps_time() -> None:
    net = make("a", "b")
    a = net.runtime("a")
    bystander: list[Any] = []
    other = a.spawn("bystander", bystander.append)
    order: list[Any] = []

    def target(msg: Any) -> int:
        order.append(msg)
        return len(order)

    ref = a.spawn("target", target)
    other.send("waits")
    ref.send("first")
    assert ref.ask("second", 1.0) == 2
    assert order == ["first", "second"]
    assert bystander == []
    assert net.clock.now() == 0.0
    net.run_until_idle()
    assert bystander == ["waits"]


def test_ask_timeout_leaves_the_clock_at_the_deadline() -> None:
    net = make("a")
    ref = net.runtime("a").spawn("silent", lambda _msg: PendingReply())
    with pytest.raises(ActorAskTimeout, match="virtual time"):
        ref.ask("hello", 2.5)
    assert net.clock.now() == 2.5


def test_ask_across_nodes_travels_the_wire() -> None:
    net = make("a", "b")
    ref = net.runtime("b").spawn("upper", lambda msg: msg.upper())
    net.runtime("b").join_group("g", ref)
    to_b = remote(net, "a", "b", "upper")
    net.set_faults(delay=0.4)
    assert to_b.ask(b"hi", 1.0) == b"HI"
    assert 0.0 < net.clock.now() <= 0.4
    assert net.messages_sent == 1
    net.partition(["a"], ["b"])
    with pytest.raises(ActorAskTimeout):
        to_b.ask(b"lost", 1.0)
    with pytest.raises(TypeError):
        to_b.ask("not bytes", 1.0)


def test_stopping_an_actor_fails_asks_queued_behind_its_stop() -> None:
    net = make("a")
    refs: list[TestActorRef] = []
    refs.append(net.runtime("a").spawn("quitter", lambda msg: refs[0].stop()))
    refs[0].send("stop please")
    with pytest.raises(ActorSendError, match="stopped before it replied"):
        refs[0].ask("too late", 1.0)


# -- API edges ---------------------------------------------------------------


def test_runtime_api_validates_its_arguments() -> None:
    net = make("a", "b")
    a = net.runtime("a")
    ref = a.spawn("x", print)
    with pytest.raises(ValueError, match="already running"):
        a.spawn("x", print)
    with pytest.raises(ValueError, match="non-empty"):
        a.spawn("", print)
    with pytest.raises(TypeError, match="callable"):
        a.spawn("y", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        TestRuntime("", net)
    with pytest.raises(TypeError, match="TestClock"):
        SimNetwork(object())  # type: ignore[arg-type]
    assert a.actor("x") == ref
    assert hash(a.actor("x")) == hash(ref)
    with pytest.raises(KeyError, match="no running actor"):
        a.actor("nobody")
    with pytest.raises(KeyError, match="not live"):
        net.runtime("nobody")
    with pytest.raises(ValueError, match="seconds"):
        a.send_after(ref, 0, "x")
    other = SimNetwork(TestClock()).add_runtime("a").spawn("x", print)
    with pytest.raises(ValueError, match="another SimNetwork"):
        a.send_after(other, 1.0, "x")
    with pytest.raises(TypeError, match="node id"):
        net.set_faults(src=1)  # type: ignore[arg-type]
    assert "TestRuntime(node_id='a'" in repr(a)
    assert repr(ref) == "TestActorRef(node_id='a', name='x')"
    assert "seed=0" in repr(net)


def test_groups_take_local_live_actors_only() -> None:
    net = make("a", "b")
    a, b = net.runtime("a"), net.runtime("b")
    ref_b = b.spawn("member", print)
    b.join_group("g", ref_b)
    remote_b = remote(net, "a", "b", "member")
    with pytest.raises(ValueError, match="takes an actor of node 'a'"):
        a.join_group("g", remote_b)
    dead = a.spawn("dead", print)
    dead.stop()
    assert not dead.alive
    assert "stopped" in repr(dead)
    with pytest.raises(ActorSendError):
        a.join_group("g", dead)
    with pytest.raises(ActorSendError):
        a.send_after(dead, 1.0, "x")
    b.leave_group("g", ref_b)
    b.leave_group("other", ref_b)
    assert a.group_members("g") == []


def test_timers_to_remote_actors_cross_the_wire() -> None:
    net = make("a", "b")
    _ref_b, got = sink(net, "b")
    to_b = remote(net, "a", "b")
    with pytest.raises(TypeError, match="bytes"):
        net.runtime("a").send_interval(to_b, 1.0, "not bytes")
    handle = net.runtime("a").send_interval(to_b, 1.0, b"tick")
    assert handle.active
    assert "every 1.0s" in repr(handle)
    net.advance(2.0)
    assert got == [b"tick", b"tick"]
    assert net.messages_sent == 2
    handle.cancel()
    assert not handle.active


def test_a_bare_node_id_is_a_partition_group() -> None:
    net = make("a", "b", "c")
    _rb, got_b = sink(net, "b")
    _rc, got_c = sink(net, "c")
    net.partition("a", ["b", "c"])
    remote(net, "a", "b").send(b"cut")
    remote(net, "c", "b").send(b"same side")
    net.run_until_idle()
    assert got_b == [b"same side"]
    assert got_c == []


def test_stopped_remote_actor_silently_loses_messages() -> None:
    net = make("a", "b")
    ref_b, got = sink(net, "b")
    to_b = remote(net, "a", "b")
    ref_b.stop()
    to_b.send(b"into the void")  # a real sender cannot tell either
    net.run_until_idle()
    assert got == []
    assert net.messages_dropped == 1
    net.inject("a", ref_b, b"also lost")
    assert net.messages_dropped == 2
