"""Timers: one scheduler thread, cancellation, intervals, dead targets."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dstate_core import ActorSendError, NodeShutdownError
from dstate_pykka import PykkaNetwork, PykkaRuntime

from .helpers import Recorder, wait_until


def _timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dstate-timers-")]


class TestSendAfter:
    def test_fires_once(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        runtime.send_after(ref, 0.02, "once")
        assert wait_until(lambda: rec.count("once") == 1)
        runtime.send_after(ref, 0.1, "marker")
        assert wait_until(lambda: rec.count("marker") == 1)
        assert rec.count("once") == 1

    def test_fires_in_due_order(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        runtime.send_after(ref, 0.15, "late")
        runtime.send_after(ref, 0.03, "early")
        assert wait_until(lambda: len(rec.items) == 2)
        assert rec.items == ["early", "late"]

    def test_cancelled_timer_never_fires(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        timer = runtime.send_after(ref, 0.05, "cancelled")
        timer.cancel()
        timer.cancel()
        runtime.send_after(ref, 0.15, "marker")
        assert wait_until(lambda: rec.count("marker") == 1)
        assert rec.items == ["marker"]

    @pytest.mark.parametrize("seconds", [0, -0.5, float("inf"), float("nan"), True, "1"])
    def test_bad_delays_are_rejected(self, runtime: PykkaRuntime, seconds: Any) -> None:
        ref = runtime.spawn("x", Recorder())
        with pytest.raises(ValueError, match="seconds"):
            runtime.send_after(ref, seconds, "x")
        with pytest.raises(ValueError, match="seconds"):
            runtime.send_interval(ref, seconds, "x")


class TestSendInterval:
    def test_repeats_until_cancelled(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        timer = runtime.send_interval(ref, 0.02, "tick")
        assert wait_until(lambda: rec.count("tick") >= 3)
        timer.cancel()
        fired = rec.count("tick")
        runtime.send_after(ref, 0.1, "marker")
        assert wait_until(lambda: rec.count("marker") == 1)
        assert rec.count("tick") == fired

    def test_dead_target_drops_the_fire_and_cancels(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        timer = runtime.send_interval(ref, 0.02, "tick")
        assert wait_until(lambda: rec.count("tick") >= 1)
        ref.stop()
        assert wait_until(lambda: runtime.dropped_timer_fires == 1)
        assert wait_until(lambda: timer.cancelled)

    def test_stopped_target_is_rejected_up_front(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        ref.stop()
        with pytest.raises(ActorSendError, match="stopped"):
            runtime.send_after(ref, 0.02, "x")

    def test_remote_target_that_stops_cancels_the_timer(self, network: PykkaNetwork) -> None:
        a, b = PykkaRuntime("a", network), PykkaRuntime("b", network)
        rec = Recorder()
        target = b.spawn("x", rec)
        b.join_group("g", target)
        (remote,) = a.group_members("g")
        timer = a.send_interval(remote, 0.02, b"tick")
        assert wait_until(lambda: rec.count(b"tick") >= 1)
        target.stop()
        assert wait_until(lambda: a.dropped_timer_fires == 1)
        assert timer.cancelled

    def test_cancel_after_shutdown_is_a_no_op(self, runtime: PykkaRuntime) -> None:
        ref = runtime.spawn("x", Recorder())
        timer = runtime.send_interval(ref, 0.02, "tick")
        runtime.shutdown()
        timer.cancel()
        with pytest.raises(NodeShutdownError):
            runtime.send_after(ref, 0.02, "x")


class TestScheduler:
    def test_one_thread_serves_every_timer(self, runtime: PykkaRuntime) -> None:
        rec = Recorder()
        ref = runtime.spawn("x", rec)
        timers = [runtime.send_interval(ref, 0.01 + i / 1000, i) for i in range(20)]
        assert wait_until(lambda: len(set(rec.items)) == 20)
        assert [t.name for t in _timer_threads()] == ["dstate-timers-solo"]
        for timer in timers:
            timer.cancel()

    def test_no_thread_until_the_first_timer(self) -> None:
        rt = PykkaRuntime("lazy")
        try:
            assert not any(t.name == "dstate-timers-lazy" for t in _timer_threads())
        finally:
            rt.shutdown()

    def test_shutdown_stops_the_scheduler_thread(self) -> None:
        rt = PykkaRuntime("sched")
        rt.send_after(rt.spawn("x", Recorder()), 10.0, "later")
        assert any(t.name == "dstate-timers-sched" for t in _timer_threads())
        rt.shutdown()
        assert wait_until(
            lambda: not any(t.name == "dstate-timers-sched" for t in _timer_threads())
        )


class TestRemoteTimers:
    def test_timer_to_a_remote_actor_needs_bytes(self, network: PykkaNetwork) -> None:
        a, b = PykkaRuntime("a", network), PykkaRuntime("b", network)
        rec = Recorder()
        b.join_group("g", b.spawn("x", rec))
        (remote,) = a.group_members("g")
        with pytest.raises(TypeError, match="bytes"):
            a.send_after(remote, 0.01, "text")
        a.send_after(remote, 0.01, b"ping")
        assert wait_until(lambda: rec.items == [b"ping"])
        assert network.messages_sent == 1

    def test_timers_across_a_partition_are_dropped(self, network: PykkaNetwork) -> None:
        a, b = PykkaRuntime("a", network), PykkaRuntime("b", network)
        rec = Recorder()
        b.join_group("g", b.spawn("x", rec))
        (remote,) = a.group_members("g")
        network.partition(["a"], ["b"])
        a.send_after(remote, 0.01, b"lost")
        assert wait_until(lambda: network.messages_dropped == 1)
        network.heal()
        a.send_after(remote, 0.01, b"found")
        assert wait_until(lambda: rec.items == [b"found"])
