"""Bring your own actor framework: dstate on a from-scratch runtime of ~200 lines.

dstate_core reaches an actor framework only through the ``ActorRuntime``
protocol. This module implements it without Pykka or the test kit:
``LoopRuntime`` puts every node of a cluster on one ``EventLoop`` with a single
FIFO queue of messages and a heap of real-time timers. Nothing runs in the
background: handlers run in whichever thread drives the loop, either
``loop.run_until(predicate, timeout)`` or an ``ask``, which drives the loop
until its reply arrives.

A runtime is correct when it passes dstate's conformance suite
(``dstate_core.testing.conformance``); ``LoopHarness`` below is all the suite
needs. The demo then runs two ``DStateNode``s on the loop and replicates a counter.

Run it::

    python -m examples.custom_runtime              # conformance suite, then the demo
    python -m examples.custom_runtime --demo-only
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dstate_core import (
    ActorAskTimeout,
    ActorRef,
    ActorRuntime,
    ActorSendError,
    ClusterEvent,
    DistributedState,
    DStateNode,
    NodeJoined,
    NodeLeft,
    NodeShutdownError,
    PendingReply,
    StateViewObject,
    SubscriptionId,
)
from dstate_core.testing.conformance import RuntimeConformanceSuite

log = logging.getLogger("examples.custom_runtime")
Handler = Callable[[Any], Any]


class _Actor:
    """A spawned actor: its node, name and handler; dead once stopped."""

    def __init__(self, runtime: LoopRuntime, name: str, handler: Handler) -> None:
        self.runtime, self.name, self.handler, self.alive = runtime, name, handler, True


class _Reply:
    """Where the answer to one ``ask`` lands; done once a ``PendingReply`` resolves too."""

    def __init__(self) -> None:
        self.ready = False
        self.value: Any = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self.ready and not (isinstance(self.value, PendingReply) and not self.value.done)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value.result() if isinstance(self.value, PendingReply) else self.value


class _Timer:
    """A ``send_after`` (``every`` is None) or ``send_interval``; it is its own handle."""

    def __init__(self, actor: _Actor, msg: Any, every: float | None) -> None:
        self.actor, self.msg, self.every, self.cancelled = actor, msg, every, False

    def cancel(self) -> None:
        self.cancelled = True


class LoopRef:
    """An ``ActorRef``: sends go from the node the ref was obtained on (``via``)."""

    def __init__(self, actor: _Actor, via: LoopRuntime) -> None:
        self._actor, self._via = actor, via

    @property
    def node_id(self) -> str:
        return self._actor.runtime.node_id

    @property
    def name(self) -> str:
        return self._actor.name

    def send(self, msg: Any) -> None:
        self._via.loop.post(self._via, self._actor, msg, None)

    def ask(self, msg: Any, timeout: float) -> Any:
        reply = _Reply()
        self._via.loop.post(self._via, self._actor, msg, reply)
        if not self._via.loop.run_until(reply.done, timeout):
            raise ActorAskTimeout(f"{self._actor.name!r} did not answer within {timeout}s")
        return reply.result()

    def stop(self) -> None:
        self._via.loop.stop_actor(self._actor)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoopRef) and other._actor is self._actor

    def __hash__(self) -> int:
        return id(self._actor)


def _actor_of(ref: ActorRef) -> _Actor:
    if not isinstance(ref, LoopRef):
        raise TypeError(f"not an actor of a LoopRuntime: {ref!r}")
    return ref._actor


class _Events:
    """``cluster_events``: callbacks run synchronously when membership changes."""

    def __init__(self, runtime: LoopRuntime) -> None:
        self._runtime = runtime
        self._ids = itertools.count(1)
        self._callbacks: dict[SubscriptionId, Callable[[ClusterEvent], None]] = {}

    def subscribe(self, callback: Callable[[ClusterEvent], None]) -> SubscriptionId:
        sid = SubscriptionId(next(self._ids))
        self._callbacks[sid] = callback
        for node_id in sorted(self._runtime.loop.runtimes):
            if node_id != self._runtime.node_id:
                self.emit(NodeJoined(node_id), only=sid)
        return sid

    def unsubscribe(self, subscription: SubscriptionId) -> None:
        self._callbacks.pop(subscription, None)

    def emit(self, event: ClusterEvent, only: SubscriptionId | None = None) -> None:
        for sid, callback in list(self._callbacks.items()):
            if only in (None, sid):
                try:
                    callback(event)
                except Exception:
                    log.exception("a cluster-event callback raised on %r", event)


class LoopRuntime:
    """One node's ``ActorRuntime`` on a shared :class:`EventLoop`.

    Concurrency: not thread-safe. Use it from the one thread that drives the
    loop; a handler (or a ``subscribe`` callback) must not ``ask``, as nothing
    else could run the loop meanwhile: it gets a ``RuntimeError``.
    """

    def __init__(self, node_id: str, loop: EventLoop) -> None:
        self._node_id, self.loop, self.running = node_id, loop, True
        self._events = _Events(self)

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def cluster_events(self) -> _Events:
        return self._events

    def _check(self) -> None:
        if not self.running:
            raise NodeShutdownError(f"node {self._node_id!r} is shut down")

    def spawn(self, name: str, handler: Handler) -> LoopRef:
        self._check()
        return LoopRef(_Actor(self, name, handler), self)

    def send_after(self, ref: ActorRef, seconds: float, msg: Any) -> _Timer:
        return self._timer(ref, seconds, msg, None)

    def send_interval(self, ref: ActorRef, seconds: float, msg: Any) -> _Timer:
        return self._timer(ref, seconds, msg, seconds)

    def _timer(self, ref: ActorRef, seconds: float, msg: Any, every: float | None) -> _Timer:
        self._check()
        if not seconds > 0:
            raise ValueError(f"a timer needs seconds > 0, got {seconds!r}")
        timer = _Timer(_actor_of(ref), msg, every)
        self.loop.schedule(time.monotonic() + seconds, timer)
        return timer

    def join_group(self, name: str, ref: ActorRef) -> None:
        self._check()
        if _actor_of(ref) not in self.loop.groups[name]:
            self.loop.groups[name].append(_actor_of(ref))

    def leave_group(self, name: str, ref: ActorRef) -> None:
        if _actor_of(ref) in self.loop.groups[name]:
            self.loop.groups[name].remove(_actor_of(ref))

    def broadcast_group(self, name: str, msg: Any) -> None:
        self._check()
        if not isinstance(msg, bytes):
            raise TypeError(f"a broadcast crosses nodes and must be bytes, got {type(msg)}")
        for actor in self.loop.groups[name]:
            if actor.runtime is not self:
                self.loop.post(self, actor, msg, None)

    def group_members(self, name: str) -> list[ActorRef]:
        return [LoopRef(actor, self) for actor in self.loop.groups[name]]

    def shutdown(self) -> None:
        self.loop.remove_node(self._node_id)


class EventLoop:
    """The whole cluster: one message queue, one timer heap, the groups; single-threaded."""

    def __init__(self) -> None:
        self.runtimes: dict[str, LoopRuntime] = {}
        self.groups: defaultdict[str, list[_Actor]] = defaultdict(list)
        self._queue: deque[tuple[_Actor, Any, _Reply | None]] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._driving = False

    def add_node(self, node_id: str) -> LoopRuntime:
        """Start a node and tell the others it joined."""
        runtime = self.runtimes[node_id] = LoopRuntime(node_id, self)
        for other in [r for r in self.runtimes.values() if r is not runtime]:
            other.cluster_events.emit(NodeJoined(node_id))
        return runtime

    def remove_node(self, node_id: str) -> None:
        """Stop a node's actors and timers and tell the others it left; idempotent."""
        runtime = self.runtimes.pop(node_id, None)
        if runtime is not None:
            runtime.running = False
            for members in self.groups.values():
                members[:] = [actor for actor in members if actor.runtime is not runtime]
            for other in list(self.runtimes.values()):
                other.cluster_events.emit(NodeLeft(node_id))

    def stop_actor(self, actor: _Actor) -> None:
        actor.alive = False
        for members in self.groups.values():
            if actor in members:
                members.remove(actor)

    def post(self, via: LoopRuntime, actor: _Actor, msg: Any, reply: _Reply | None) -> None:
        if not (actor.alive and actor.runtime.running):
            raise ActorSendError(f"actor {actor.name!r} on {actor.runtime.node_id!r} is stopped")
        if actor.runtime is not via and not isinstance(msg, bytes):
            raise TypeError(f"a message to another node must be bytes, got {type(msg)}")
        self._queue.append((actor, msg, reply))

    def schedule(self, due: float, timer: _Timer) -> None:
        heapq.heappush(self._timers, (due, next(self._seq), timer))

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run handlers and due timers until ``predicate()``; False after ``timeout`` s."""
        if self._driving:
            raise RuntimeError("a handler cannot block (ask) on a single-threaded loop")
        deadline = time.monotonic() + timeout
        self._driving = True
        try:
            while not predicate():
                if self._step():
                    continue
                now = time.monotonic()
                if now >= deadline:
                    return False
                wake = min(deadline, self._timers[0][0] if self._timers else deadline)
                time.sleep(max(0.0, wake - now))  # idle: nothing can happen before then
            return True
        finally:
            self._driving = False

    def _step(self) -> bool:
        """Queue the due timers, then run one message; False when there was nothing to do."""
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            live = timer.actor.alive and timer.actor.runtime.running
            if live and not timer.cancelled:
                self._queue.append((timer.actor, timer.msg, None))
                if timer.every is not None:
                    self.schedule(now + timer.every, timer)
        if not self._queue:
            return False
        actor, msg, reply = self._queue.popleft()
        if not (actor.alive and actor.runtime.running):
            if reply is not None:
                reply.ready, reply.error = True, ActorSendError(f"{actor.name!r} stopped")
            return True
        try:
            value = actor.handler(msg)
        except Exception as exc:
            log.exception("actor %r on %r raised", actor.name, actor.runtime.node_id)
            if reply is not None:
                reply.ready, reply.error = True, exc
        else:
            if reply is not None:
                reply.ready, reply.value = True, value
        return True


# -- what a runtime author adds to their tests ----------------------------------------


class LoopHarness:
    """The conformance suite's ``RuntimeHarness`` for :class:`LoopRuntime`."""

    def __init__(self) -> None:
        self.loop = EventLoop()

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        return [self.loop.add_node(node_id) for node_id in node_ids]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return self.loop.run_until(predicate, timeout)

    def remove(self, node_id: str) -> None:
        self.loop.remove_node(node_id)

    def close(self) -> None:
        for node_id in list(self.loop.runtimes):
            self.loop.remove_node(node_id)


class TestLoopRuntime(RuntimeConformanceSuite):
    """The conformance suite on LoopRuntime (what ``python -m`` runs through pytest)."""

    @pytest.fixture
    def harness(self) -> Iterator[LoopHarness]:
        harness = LoopHarness()
        yield harness
        harness.close()


def run_conformance() -> int:
    """Run :class:`TestLoopRuntime` with pytest; returns pytest's exit code."""
    here = Path(__file__)
    args = ["-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    args += ["-o", f"python_files={here.name}", f"{here}::TestLoopRuntime"]
    return int(pytest.main(args))


# -- the demo: dstate on the new runtime -----------------------------------------------


class Counter(DistributedState):
    NAME: ClassVar[str] = "counter"
    value: int = 0


def bump(state: Counter) -> None:
    state.value += 1


def counts(views: Mapping[str, StateViewObject[Any]]) -> dict[str, int]:
    return {node: view.value.value for node, view in sorted(views.items())}


def demo() -> None:
    """Two DStateNodes on one EventLoop replicate a counter (active push, the default)."""
    loop = EventLoop()
    nodes = {node_id: DStateNode(loop.add_node(node_id)) for node_id in ("a", "b")}
    shards = {node_id: node.register(Counter) for node_id, node in nodes.items()}
    loop.run_until(lambda: all(len(s.snapshot()) == 2 for s in shards.values()), 5.0)
    print("two DStateNodes on LoopRuntime; a bumps its counter 3 times, b once")
    for node_id, times in (("a", 3), ("b", 1)):
        for _ in range(times):
            shards[node_id].mutate(bump)  # an ask: drives the loop until committed
    want = {"a": 3, "b": 1}
    agreed = loop.run_until(lambda: all(counts(s.snapshot()) == want for s in shards.values()), 5)
    for node_id, shard in shards.items():
        views = shard.query(counts, max_staleness=5.0)
        print(f"  {node_id} sees {views} -> total {sum(views.values())}")
    view_of_a = shards["b"].snapshot()["a"]
    loop.run_until(lambda: time.monotonic() - view_of_a.synced_at > 0.02, 5.0)
    pulled = shards["b"].query(counts, max_staleness=0.01)  # a's view is too old: pull it
    refreshed = shards["b"].snapshot()["a"].synced_at > view_of_a.synced_at
    print(f"  b pulled a fresh view of a (max_staleness=0.01s): {pulled}, refreshed={refreshed}")
    print("replicated on the custom runtime" if agreed else "NOT replicated")
    for node in nodes.values():
        node.shutdown()
        node.runtime.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dstate on a from-scratch actor runtime")
    parser.add_argument("--demo-only", action="store_true", help="skip the conformance suite")
    args = parser.parse_args(argv)
    code = 0
    if not args.demo_only:
        print("running dstate's ActorRuntime conformance suite on LoopRuntime ...")
        code = run_conformance()
        print(f"conformance: {'PASSED' if code == 0 else f'FAILED (pytest exit {code})'}\n")
    demo()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
