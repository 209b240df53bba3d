"""A blocking ``mutate`` on a threaded runtime commits in the caller's thread.

The shard's actor and a committing caller take the same engine lock, so the
engine still sees one change at a time, in call order; the caller saves the
two hand-offs to the actor and back.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

from dstate_core import DStateNode, Generation, NodeShutdownError
from dstate_core.runtime import ActorAskTimeout
from dstate_core.testing import TestState
from dstate_pykka import PykkaRuntime, local_cluster


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_blocking_mutation_runs_in_the_callers_thread_and_reaches_peers() -> None:
    with local_cluster(["a", "b"]) as cluster:
        shards = {n: cluster.node(n).register(TestState) for n in ("a", "b")}
        wait_for(lambda: "a" in shards["b"].snapshot())
        ran_on: list[int] = []

        def record(state: TestState) -> None:
            ran_on.append(threading.get_ident())
            state.value += 1

        generation = shards["a"].mutate(record)  # type: ignore[arg-type]
        pipelined = shards["a"].mutate(record, block=False)  # type: ignore[arg-type]

        assert pipelined.result(timeout=10) == generation.next()
        assert ran_on[0] == threading.get_ident()  # no hand-off to the actor
        assert ran_on[1] != threading.get_ident()  # a pipelined one runs on the actor
        wait_for(lambda: shards["b"].snapshot()["a"].value.value == 2)


def test_a_mutation_cannot_mutate_its_own_shard_while_it_runs() -> None:
    with local_cluster(["a"]) as cluster:
        shard = cluster.node("a").register(TestState)
        start = shard.state.generation

        def nested(state: TestState) -> None:
            shard.mutate(TestState.increment())

        with pytest.raises(RuntimeError, match="while this shard was changing"):
            shard.mutate(nested)
        assert shard.state.generation == start
        assert shard.mutate(TestState.increment()) == start.next()  # the lock was released


def test_a_busy_shard_times_out_a_blocking_mutation_and_changes_nothing() -> None:
    runtime = PykkaRuntime("a")
    node = DStateNode(runtime, ask_timeout=0.2)
    try:
        shard = node.register(TestState)
        release = threading.Event()

        def slow(state: TestState) -> None:
            release.wait(5)
            state.value += 1

        busy = shard.mutate(slow, block=False)  # type: ignore[arg-type]
        time.sleep(0.05)  # let the actor take it (the assertions hold either way)
        with pytest.raises(ActorAskTimeout, match=r"ask_timeout=0\.2s"):
            shard.mutate(TestState.increment(10))
        release.set()
        assert busy.result(timeout=5).age == 1
        assert shard.state.value.value == 1  # the timed-out mutation never ran
    finally:
        release.set()
        node.shutdown()
        runtime.shutdown()


def test_callers_and_the_actor_commit_one_at_a_time_in_call_order() -> None:
    """Four threads mix blocking and pipelined increments while peers update: every
    increment lands once, and each thread's generations rise in its call order."""
    with local_cluster(["a", "b", "c"]) as cluster:
        shards = {n: cluster.node(n).register(TestState) for n in ("a", "b", "c")}
        wait_for(lambda: all(len(s.snapshot()) == 3 for s in shards.values()))
        per_thread = 150
        results: dict[int, list[Generation | Future[Generation]]] = {}

        def writer(index: int) -> None:
            got: list[Generation | Future[Generation]] = []
            for i in range(per_thread):
                block = (i + index) % 3 == 0
                got.append(shards["a"].mutate(TestState.increment(), block=block))
                shards["b"].mutate(TestState.increment(), block=False)
            results[index] = got

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        generations = []
        for got in results.values():
            ages = [g.age if isinstance(g, Generation) else g.result(10).age for g in got]
            assert ages == sorted(ages)
            generations += ages
        assert sorted(generations) == list(range(1, 4 * per_thread + 1))
        assert shards["a"].state.value.value == 4 * per_thread
        wait_for(lambda: shards["c"].snapshot()["a"].value.value == 4 * per_thread)
        wait_for(lambda: shards["a"].snapshot()["b"].value.value == 4 * per_thread)


def test_a_peer_update_is_applied_by_the_delivering_thread_when_the_shard_is_idle() -> None:
    with local_cluster(["a", "b"]) as cluster:
        shards = {n: cluster.node(n).register(TestState) for n in ("a", "b")}
        wait_for(lambda: "a" in shards["b"].snapshot())
        engine = shards["b"]._engine
        handled_on: list[int] = []
        handle = engine.handle

        def recording(event: object) -> object:
            handled_on.append(threading.get_ident())
            return handle(event)  # type: ignore[arg-type]

        engine.handle = recording  # type: ignore[method-assign]
        shards["a"].mutate(TestState.increment())
        wait_for(lambda: shards["b"].snapshot()["a"].value.value == 1)
        actor_thread = shards["b"]._ref._cell.thread_ident  # type: ignore[attr-defined]
        assert handled_on and actor_thread not in handled_on


def test_a_blocking_mutation_after_the_runtime_stopped_changes_nothing() -> None:
    runtime = PykkaRuntime("a")
    node = DStateNode(runtime)
    try:
        shard = node.register(TestState)
        runtime.shutdown()  # the shard's actors stop; the node object does not know yet
        with pytest.raises(NodeShutdownError):
            shard.mutate(TestState.increment())
        assert shard.state.value.value == 0
    finally:
        node.shutdown()


def test_stopping_every_pykka_actor_stops_blocking_mutations() -> None:
    import pykka

    runtime = PykkaRuntime("a")
    node = DStateNode(runtime)
    try:
        shard = node.register(TestState)
        pykka.ActorRegistry.stop_all()
        with pytest.raises(NodeShutdownError):
            shard.mutate(TestState.increment())
        assert shard.state.value.value == 0
    finally:
        node.shutdown()
        runtime.shutdown()


def test_a_committed_batch_settles_its_futures_even_if_a_send_fails() -> None:
    """A view change told to a stopped notifier must not strand the batch's callers."""
    runtime = PykkaRuntime("a")
    node = DStateNode(runtime)
    try:
        shard = node.register(TestState)
        shard.subscribe(lambda *_: None)
        shard._notifier.stop()  # the notifier is gone (a shutdown under way)
        assert shard.mutate(TestState.increment()).age == 1
        pipelined = [shard.mutate(TestState.increment(), block=False) for _ in range(3)]
        assert [f.result(timeout=5).age for f in pipelined] == [2, 3, 4]
    finally:
        node.shutdown()
        runtime.shutdown()
