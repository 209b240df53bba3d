"""Thread hygiene: nothing is left behind, and shutdown is quick."""

from __future__ import annotations

import threading
import time

from dstate_pykka import PykkaNetwork, PykkaRuntime

from .helpers import Recorder, wait_until


def test_no_thread_leaks_after_shutdown() -> None:
    before = set(threading.enumerate())
    network = PykkaNetwork(failure_timeout=0.2)
    runtimes = [PykkaRuntime(node_id, network) for node_id in ("a", "b", "c")]
    recs = []
    for rt in runtimes:
        for name in ("one", "two"):
            rec = Recorder()
            recs.append(rec)
            ref = rt.spawn(name, rec)
            rt.join_group("g", ref)
            rt.send_interval(ref, 0.01, "tick")
            rt.send_after(ref, 30.0, "never")
    runtimes[0].broadcast_group("g", b"hello")
    assert wait_until(lambda: all(rec.count("tick") >= 2 for rec in recs))
    assert len(set(threading.enumerate()) - before) >= 3 * 2 + 3
    start = time.monotonic()
    for rt in runtimes:
        rt.shutdown()
    assert time.monotonic() - start < 2.0
    assert wait_until(lambda: not (set(threading.enumerate()) - before), timeout=2.0), [
        t.name for t in set(threading.enumerate()) - before
    ]


def test_network_close_cancels_pending_failure_detectors() -> None:
    before = set(threading.enumerate())
    network = PykkaNetwork(failure_timeout=30.0)
    PykkaRuntime("a", network)
    PykkaRuntime("b", network).spawn("x", Recorder())
    network.crash("b")
    start = time.monotonic()
    network.close()
    assert time.monotonic() - start < 2.0
    assert wait_until(lambda: not (set(threading.enumerate()) - before), timeout=2.0)


def test_standalone_runtime_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    rt = PykkaRuntime("solo")
    ref = rt.spawn("x", Recorder())
    rt.send_interval(ref, 0.01, "tick")
    ref.ask("sync", timeout=1.0)
    rt.shutdown()
    assert wait_until(lambda: not (set(threading.enumerate()) - before), timeout=2.0)
