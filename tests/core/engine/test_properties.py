"""Properties of the engine under arbitrary message fates.

(a) Whatever subset of an owner's messages reaches a peer, in whatever order and
    with duplicates, the peer's view never goes back, always equals what the
    owner published at that generation, and one final snapshot makes it equal
    to the owner's view.
(d) The private fields of a delta-aware state never appear in any byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstate_core.engine._actions import Action, Broadcast, CancelTimer, SendTo, StartTimer
from dstate_core.engine._engine import ShardEngine
from dstate_core.engine._events import MessageReceived, PeerJoined, TimerFired
from dstate_core.model._config import PushMode, StateConfig, SyncStrategy
from dstate_core.model._errors import MutationError
from dstate_core.model._generation import Generation, IncarnationSource
from dstate_core.shell._inbox import InboundRouter
from dstate_core.testing import FailingPersistence, TestClock, TestState
from dstate_core.testing._states import TestDeltaChange, UrgentDeltaState
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import RequestSnapshot

from .engine_net import EngineNet, commit_mutation, make_engine, start_engine

PREFIXES = ["", "now:", "late:", "quiet:"]

# -- (a) any subsequence, any order, duplicates ---------------------------------------

mutation = st.tuples(
    st.just("mutate"), st.sampled_from(PREFIXES), st.sampled_from("xyz"), st.integers(1, 9)
)
failed = st.tuples(st.just("fail"), st.sampled_from(PREFIXES), st.just("x"), st.just(1))
tick = st.tuples(st.just("tick"), st.sampled_from([0.1, 0.3, 0.6, 2.0]), st.just(""), st.just(0))
reply = st.tuples(st.just("reply"), st.just(""), st.just(""), st.just(0))
programs = st.lists(
    st.one_of(mutation, mutation, mutation, failed, tick, reply), min_size=1, max_size=14
)


@dataclass
class Owner:
    """One owner engine whose every outgoing frame to peer ``b`` lands in ``pool``."""

    engine: ShardEngine[Any]
    clock: TestClock
    store: FailingPersistence
    pool: list[bytes] = field(default_factory=list)
    timers: dict[tuple[Any, ...], float] = field(default_factory=dict)
    #: generation -> the owner's published view (as a plain dict) at that generation
    history: dict[Generation, Any] = field(default_factory=dict)
    next_request: int = 1000

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Broadcast(data=data):
                    self.pool.append(data)
                case SendTo(node_id="b", data=data):
                    self.pool.append(data)
                case StartTimer(key=key, delay=delay):
                    self.timers[key] = self.clock.now() + delay
                case CancelTimer(key=key):
                    self.timers.pop(key, None)
        self.record()

    def record(self) -> None:
        own = self.engine.published.views["a"]
        self.history[own.generation] = own.value.model_dump()

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        while True:
            due = [k for k, t in self.timers.items() if t <= self.clock.now()]
            if not due:
                return
            key = min(due, key=lambda k: self.timers[k])
            del self.timers[key]
            self.run(self.engine.handle(TimerFired(key)))

    def reply(self) -> bytes:
        """Answer a snapshot request from ``b``; returns the reply (the owner may also
        probe ``b``, of which it holds no view)."""
        self.next_request += 1
        request = RequestSnapshot(self.engine.name, "b", self.next_request)
        sent = len(self.pool)
        self.run(self.engine.handle(MessageReceived(request)))
        return self.pool[sent]


def make_owner(state_type: type, strategy: SyncStrategy, clock: TestClock) -> Owner:
    store = FailingPersistence()
    config = StateConfig(sync_strategy=strategy, persistence=store)
    engine, loaded = start_engine(state_type, config, "a", clock, WireCodec())
    owner = Owner(engine, clock, store)
    owner.record()
    owner.run(loaded)
    owner.run(engine.handle(PeerJoined("b")))
    return owner


def change_for(state_type: type, prefix: str, key: str, amount: int) -> tuple[Any, bool]:
    if state_type is TestState:

        def simple(state: TestState) -> None:
            state.value += amount
            state.items[key] = state.items.get(key, 0) + amount

        return simple, False
    return UrgentDeltaState.bump(prefix + key, amount), True


def play(owner: Owner, state_type: type, program: list[tuple[str, str, str, int]]) -> None:
    for op, arg, key, amount in program:
        if op == "mutate":
            fn, with_delta = change_for(state_type, arg, key, amount)
            owner.run(commit_mutation(owner.engine, fn, with_delta=with_delta)[1])
        elif op == "fail":
            owner.store.fail_next_save()
            fn, with_delta = change_for(state_type, arg, "fail", 100)
            with pytest.raises(MutationError):
                commit_mutation(owner.engine, fn, with_delta=with_delta)
        elif op == "tick":
            owner.tick(float(arg))
        else:
            owner.reply()


def check_view(peer: ShardEngine[Any], owner: Owner, previous: Generation | None) -> Generation:
    view = peer.published.views.get("a")
    assert view is not None or previous is None, "the view disappeared"
    if view is None:
        return previous  # type: ignore[return-value]
    if previous is not None:
        assert view.generation >= previous, "the view went backwards"
    assert view.value.model_dump() == owner.history[view.generation], (
        "the view differs from what the owner published at that generation"
    )
    return view.generation


VARIANTS = [
    pytest.param(TestState, SyncStrategy.active_push(), id="simple-push"),
    pytest.param(TestState, SyncStrategy.feed_lazy_pull(), id="simple-feed"),
    pytest.param(UrgentDeltaState, SyncStrategy.active_push(), id="delta-push"),
    pytest.param(UrgentDeltaState, SyncStrategy.feed_lazy_pull(), id="delta-feed"),
    pytest.param(
        UrgentDeltaState, SyncStrategy(PushMode.NONE, periodic_full_sync=1.0), id="delta-periodic"
    ),
]


@pytest.mark.parametrize(("state_type", "strategy"), VARIANTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs, data=st.data())
def test_any_delivery_never_goes_back_and_a_final_snapshot_converges(
    state_type: type, strategy: SyncStrategy, program: Any, data: st.DataObject
) -> None:
    clock = TestClock()
    owner = make_owner(state_type, strategy, clock)
    play(owner, state_type, program)
    pool = owner.pool
    order = data.draw(st.lists(st.integers(0, len(pool) - 1), max_size=40), label="deliveries")

    peer = make_engine(state_type, StateConfig(), "b", clock, source=IncarnationSource(floor=5))
    peer.handle(PeerJoined("a"))
    router = InboundRouter("b", WireCodec(), clock)
    generation: Generation | None = None
    for index in order:
        for _, event in router.route(pool[index], {state_type.NAME}):
            peer.handle(event)
        generation = check_view(peer, owner, generation)
    assert router.drops == {}
    assert peer.drops == {}

    final_reply = owner.reply()  # one final snapshot
    for _, event in router.route(final_reply, {state_type.NAME}):
        peer.handle(event)
    check_view(peer, owner, generation)
    final = peer.published.views["a"]
    mine = owner.engine.published.views["a"]
    assert final.generation == mine.generation == owner.engine.own.generation
    assert final.value.model_dump() == mine.value.model_dump()
    assert peer.metrics().sync_failures == 0


# -- (d) private fields never leave the node -------------------------------------------

secrets = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=6, max_size=16).map(
    lambda s: "PRIV-" + s
)
nodes = st.sampled_from(["a", "b", "c"])
operations = st.one_of(
    st.tuples(st.just("secret"), nodes, secrets),
    st.tuples(st.just("plain_secret"), nodes, secrets),
    st.tuples(st.just("bump"), nodes, st.sampled_from([p + "k" for p in PREFIXES])),
    st.tuples(st.just("query"), nodes, st.just("")),
    st.tuples(st.just("tick"), nodes, st.sampled_from(["0.3", "1.1", "6"])),
    st.tuples(st.just("rejoin"), nodes, st.just("")),
)

STRATEGIES = [
    SyncStrategy.active_push(),
    SyncStrategy.feed_with_periodic_sync(1.0),
    SyncStrategy.periodic_only(0.5),
    SyncStrategy(PushMode.NONE),
]


def set_secret(value: str, key: str) -> Any:
    def mutation(state: UrgentDeltaState) -> TestDeltaChange:
        state.secret = value
        state.history.append(len(value))
        state.counters[key] = state.counters.get(key, 0) + 1
        state.total += 1
        return TestDeltaChange(key, state.counters[key], state.total)

    return mutation


@pytest.mark.parametrize("strategy", STRATEGIES, ids=["push", "feed+periodic", "periodic", "none"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operations, min_size=1, max_size=14))
def test_private_fields_never_leave_the_node(
    strategy: SyncStrategy, ops: list[tuple[str, str, str]]
) -> None:
    net = EngineNet(
        UrgentDeltaState, ["a", "b", "c"], StateConfig(sync_strategy=strategy), batch_interval=0.5
    )
    used = {UrgentDeltaState().secret}
    query_id = 0
    for op, node, arg in ops:
        if op == "secret":
            used.add(arg)
            net.mutate(node, set_secret(arg, "now:s"), with_delta=True)
        elif op == "plain_secret":  # a plain mutate(): the whole view goes as a snapshot
            used.add(arg)
            net.mutate(node, lambda s, v=arg: setattr(s, "secret", v))
        elif op == "bump":
            net.mutate(node, UrgentDeltaState.bump(arg, 1), with_delta=True)
        elif op == "query":
            query_id += 1
            net.query(node, query_id, 0.0)
        elif op == "tick":
            net.advance(float(arg), step=0.25)
        else:
            net.leave(node)
            net.add(node)
        net.run()
    net.advance(2.0, step=0.25)  # flush windows, feed batches, periodic syncs
    frames = [data for _, _, data in net.log]
    assert frames
    for data in frames:
        for secret in used:
            assert secret.encode() not in data
        assert b"secret" not in data
        assert b"history" not in data
