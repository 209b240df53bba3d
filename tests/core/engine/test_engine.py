"""ShardEngine end to end through bytes.

Engines are wired by :class:`tests.core.engine.engine_net.EngineNet`: every message
goes through the wire codec and an :class:`InboundRouter`, and time only moves
when a test says so.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from dstate_core.engine import DELAYED_PUSH, FEED_FLUSH, PERIODIC_SYNC, ProbeTimer, PullTimer
from dstate_core.engine._actions import CancelTimer, FinishQuery, NotifyView, SendTo, StartTimer
from dstate_core.engine._engine import ShardEngine
from dstate_core.engine._events import (
    ChangeAnnounced,
    MessageReceived,
    PeerJoined,
    PeerLeft,
    QueryStarted,
    TimerFired,
)
from dstate_core.engine._peers import Membership, PeerStatuses, grade_state
from dstate_core.engine._pulls import PullTracker
from dstate_core.engine._views import ViewTable
from dstate_core.model._config import PushMode, StateConfig, SyncStrategy, VersionMismatchPolicy
from dstate_core.model._diagnostics import (
    HealthStatus,
    MetricCounters,
    PeerSyncStatus,
    StateSyncMetrics,
    SystemHealth,
)
from dstate_core.model._errors import (
    DeserializeError,
    ForeignRecordError,
    MutationError,
    NewerRecordError,
    PersistError,
)
from dstate_core.model._generation import (
    Generation,
    IncarnationSource,
    StateObject,
    StateViewObject,
)
from dstate_core.model._msgpack import pack, unpack
from dstate_core.model._state import DistributedState
from dstate_core.model._urgency import SyncUrgency
from dstate_core.testing import (
    FailingPersistence,
    InMemoryPersistence,
    TestClock,
    TestDeltaState,
    TestState,
)
from dstate_core.testing._states import TestDeltaView, UrgentDeltaState
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaUpdate,
    FullSnapshot,
    Message,
    RequestSnapshot,
    SnapshotReply,
)

from .engine_net import EngineNet, commit_mutation, start_engine

WALL = 1_700_000_000_000

# -- helpers -------------------------------------------------------------------------


def sent_since(
    net: EngineNet,
    mark: int,
    *,
    src: str | None = None,
    dst: str | None = None,
    kind: type | tuple[type, ...] = object,
) -> list[Message]:
    """Messages queued since ``net.log[mark]``, decoded and filtered."""
    out = []
    for s, d, data in net.log[mark:]:
        if (src is None or s == src) and (dst is None or d == dst):
            message = net.codec.decode(data)
            if isinstance(message, kind):
                out.append(message)
    return out


def frames_since(net: EngineNet, mark: int, src: str, dst: str) -> list[bytes]:
    return [data for s, d, data in net.log[mark:] if s == src and d == dst]


def snapshot_frame(
    net: EngineNet,
    source: str,
    generation: Generation,
    payload: bytes,
    *,
    wire_version: int = 1,
    name: str | None = None,
) -> bytes:
    return net.codec.encode(
        FullSnapshot(
            name or net.state_type.NAME, source, generation, wire_version, payload, WALL, WALL
        )
    )


def delta_frame(
    net: EngineNet,
    source: str,
    generation: Generation,
    payload: bytes,
    *,
    wire_version: int = 1,
) -> bytes:
    return net.codec.encode(
        DeltaUpdate(net.state_type.NAME, source, generation, wire_version, payload, WALL, WALL)
    )


def own_view(net: EngineNet, node: str, name: str | None = None) -> Any:
    return net.engine(node, name).published.views[node]


def peer_view(net: EngineNet, observer: str, owner: str, name: str | None = None) -> Any:
    return net.engine(observer, name).published.views.get(owner)


def row(engine: ShardEngine[Any], node: str) -> PeerSyncStatus:
    [found] = [r for r in engine.sync_status() if r.node_id == node]
    return found


def assert_converged(net: EngineNet, name: str | None = None) -> None:
    for observer in net.nodes:
        for owner in net.nodes:
            mine = own_view(net, owner, name)
            seen = peer_view(net, observer, owner, name)
            assert seen is not None, f"{observer} has no view of {owner}"
            assert seen.generation == mine.generation, (observer, owner)
            assert seen.value.model_dump() == mine.value.model_dump(), (observer, owner)


def active() -> StateConfig:
    return StateConfig(sync_strategy=SyncStrategy.active_push())


def feed_config() -> StateConfig:
    return StateConfig(sync_strategy=SyncStrategy.feed_lazy_pull())


# -- sample states used only here ----------------------------------------------------


class Picky(DistributedState):
    """Its deserializer rejects negative values with a plain ValueError (malformed)."""

    NAME = "picky"
    value: int = 0

    @classmethod
    def deserialize_state(cls, data: bytes, wire_version: int) -> Picky:
        state = super().deserialize_state(data, wire_version)
        if state.value < 0:
            raise ValueError(f"negative value {state.value}")
        return state


class RollV1(DistributedState):
    """Rolling-upgrade sample, old code: reads and writes wire version 1 only."""

    NAME = "rolling"
    value: int = 0


class RollPhase1(RollV1):
    """Phase 1: reads v1 and v2, still writes v1."""

    @classmethod
    def deserialize_state(cls, data: bytes, wire_version: int) -> RollPhase1:
        if wire_version == 2:
            raw = unpack(data)
            return cls(value=raw["count"])
        if wire_version == 1:
            return cls.model_validate(unpack(data))
        raise DeserializeError("unknown", unknown_version=wire_version)


class RollPhase2(RollPhase1):
    """Phase 2: reads v1 and v2, writes v2 (``{"count": n}``)."""

    WIRE_VERSION = 2

    def serialize_state(self) -> bytes:
        return pack({"count": self.value, "format": 2})


class RollDeltaV1(TestDeltaState):
    NAME = "rolling_delta"


class RollDeltaPhase1(RollDeltaV1):
    @classmethod
    def deserialize_view(cls, data: bytes, wire_version: int) -> BaseModel:
        raw = unpack(data)
        if wire_version == 2:
            return TestDeltaView(counters=raw["c"], total=raw["t"])
        if wire_version == 1:
            return TestDeltaView.model_validate(raw)
        raise DeserializeError("unknown", unknown_version=wire_version)

    @classmethod
    def deserialize_delta(cls, data: bytes, wire_version: int) -> BaseModel:
        raw = unpack(data)
        if wire_version == 2:
            key, value, total = raw
            return cls.Delta.model_validate({"key": key, "value": value, "total": total})
        if wire_version == 1:
            return cls.Delta.model_validate(raw)
        raise DeserializeError("unknown", unknown_version=wire_version)


class RollDeltaPhase2(RollDeltaPhase1):
    WIRE_VERSION = 2

    @classmethod
    def serialize_view(cls, view: BaseModel) -> bytes:
        assert isinstance(view, TestDeltaView)
        return pack({"c": view.counters, "t": view.total})

    @classmethod
    def serialize_delta(cls, delta: BaseModel) -> bytes:
        d = delta.model_dump()
        return pack([d["key"], d["value"], d["total"]])


class StoredV1(DistributedState):
    NAME = "stored"
    count: int = 0


class StoredV2(DistributedState):
    NAME = "stored"
    STORAGE_VERSION = 2
    total: int = 0

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> StoredV2:
        assert from_version == 1
        return cls(total=data["count"] * 10)


class StoredV2NoMigration(DistributedState):
    NAME = "stored"
    STORAGE_VERSION = 2
    total: int = 0


class WrongDelta(TestDeltaState):
    NAME = "wrong_delta"

    @classmethod
    def project_delta(cls, change: Any) -> Any:
        return {"key": "k"}


class SameView(TestDeltaState):
    NAME = "same_view"

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> Any:
        view.total = delta.total  # changes the argument readers may hold
        return view


class WrongView(TestDeltaState):
    NAME = "wrong_view"

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> Any:
        return {"total": delta.total}


class WrongUrgency(TestDeltaState):
    NAME = "wrong_urgency"

    @classmethod
    def sync_urgency(cls, old_view: Any, new_view: Any, delta: Any) -> Any:
        return "now"


class WrongProjection(TestDeltaState):
    NAME = "wrong_projection"

    def project_view(self) -> Any:
        return {"total": self.total}


class Fragile(TestDeltaState):
    """Its apply_delta fails on key "boom" and returns a dict on key "odd" (receiver side)."""

    NAME = "fragile"

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> Any:
        if delta.key == "boom":
            raise ValueError("cannot apply boom")
        if delta.key == "odd":
            return {"odd": True}
        return super().apply_delta(view, delta)


class Sloppy(DistributedState):
    """Its deserializer returns a plain dict instead of the state."""

    NAME = "sloppy"
    value: int = 0

    @classmethod
    def deserialize_state(cls, data: bytes, wire_version: int) -> Any:
        return unpack(data)


class ForeignStore(InMemoryPersistence):
    def load(self) -> StateObject[Any] | None:
        raise ForeignRecordError("the record belongs to state 'other'")


class TwoDelays(UrgentDeltaState):
    NAME = "two_delays"

    @classmethod
    def sync_urgency(cls, old_view: Any, new_view: Any, delta: Any) -> SyncUrgency:
        if delta.key.startswith("slow:"):
            return SyncUrgency.delayed(1.0)
        return SyncUrgency.delayed(0.2)


# -- mutation ------------------------------------------------------------------------


class TestMutation:
    def test_in_place_closure(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        start = net.engine("a").own.generation
        generation = net.mutate("a", TestState.increment(3))
        assert generation == start.next()
        assert net.engine("a").own.generation == generation
        assert net.engine("a").own.value.value == 3
        assert own_view(net, "a").generation == generation
        net.run()
        assert net.view("b", "a").value == 3

    def test_closure_returning_a_new_state(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        fresh = TestState(value=9, label="new")
        net.mutate("a", lambda _state: fresh)
        assert net.engine("a").own.value.label == "new"
        assert net.engine("a").own.value.value == 9
        net.run()
        assert net.view("b", "a").label == "new"

    def test_wrong_return_type_names_the_expected_type(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        engine = net.engine("a")
        before = (engine.own, engine.published)
        with pytest.raises(TypeError, match="TestState") as caught:
            commit_mutation(engine, lambda _state: {"value": 1})
        assert "dict" in str(caught.value)
        assert (engine.own, engine.published) == before

    def test_closure_raising_changes_nothing_and_reraises(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        engine = net.engine("a")
        own, published, peers = engine.own, engine.published, engine.peers
        metrics = engine.metrics()
        mark = len(net.log)

        def broken(state: TestDeltaState) -> None:
            state.counters["k"] = 5
            state.total = 5
            state.history.append(5)
            raise RuntimeError("closure failed")

        with pytest.raises(RuntimeError, match="closure failed"):
            commit_mutation(engine, broken, with_delta=True)
        assert engine.own is own
        assert engine.own.value.counters == {}
        assert engine.own.value.history == []
        assert engine.published is published
        assert engine.peers == peers
        assert engine.metrics() == metrics
        assert net.log[mark:] == []
        # the next mutation continues from the untouched state, at the next age
        generation = net.mutate("a", TestDeltaState.bump("k", 1), with_delta=True)
        assert generation == own.generation.next()
        net.run()
        assert net.view("b", "a").counters == {"k": 1}

    def test_mutate_with_delta_on_a_simple_state(self) -> None:
        net = EngineNet(TestState, ["a"])
        with pytest.raises(TypeError, match="mutate\\(\\)"):
            commit_mutation(net.engine("a"), TestState.increment(), with_delta=True)
        assert net.engine("a").own.generation.age == 0

    def test_non_callable_is_rejected(self) -> None:
        net = EngineNet(TestState, ["a"])
        with pytest.raises(TypeError, match="callable"):
            commit_mutation(net.engine("a"), 42)  # type: ignore[arg-type]

    def test_nested_in_place_changes_do_not_leak_when_the_closure_raises(self) -> None:
        net = EngineNet(TestState, ["a"])
        net.mutate("a", lambda s: s.items.update(x=1))
        engine = net.engine("a")
        committed = engine.own

        def broken(state: TestState) -> None:
            state.items["x"] = 100
            state.items["y"] = 2
            state.label = "changed"
            raise KeyError("late")

        with pytest.raises(KeyError):
            commit_mutation(engine, broken)
        assert committed.value.items == {"x": 1}
        assert committed.value.label == ""
        assert own_view(net, "a").value.items == {"x": 1}

    def test_a_commit_does_not_change_the_previous_state_object(self) -> None:
        net = EngineNet(TestState, ["a"])
        net.mutate("a", lambda s: s.items.update(x=1))
        previous = net.engine("a").own
        net.mutate("a", lambda s: s.items.update(x=2, y=3))
        assert previous.value.items == {"x": 1}
        assert net.engine("a").own.value.items == {"x": 2, "y": 3}

    def test_save_failure_is_a_mutation_error_and_changes_nothing(self) -> None:
        store = FailingPersistence()
        net = EngineNet(TestState, ["a", "b"], StateConfig(persistence=store))
        net.run()
        engine = net.engine("a")
        own, published = engine.own, engine.published
        mark = len(net.log)
        store.fail_next_save()
        with pytest.raises(MutationError) as caught:
            commit_mutation(engine, TestState.increment(7))
        cause = caught.value.__cause__
        assert isinstance(cause, PersistError)
        assert str(cause) in str(caught.value)
        assert "injected save failure" in str(caught.value)
        assert engine.own is own
        assert engine.published is published
        assert engine.metrics().total_mutations == 0
        assert net.log[mark:] == []
        assert store.saved is None
        net.run()
        assert net.view("b", "a").value == 0

    @pytest.mark.parametrize(
        ("state_type", "prepare", "failing", "winning"),
        [
            (TestState, None, TestState.increment(1), TestState.increment(5)),
            (
                UrgentDeltaState,
                UrgentDeltaState.bump("quiet:q", 1),
                UrgentDeltaState.bump("k", 1),
                UrgentDeltaState.bump("k", 50),
            ),
        ],
    )
    def test_peers_get_the_committed_state_after_a_failed_save(
        self, state_type: type, prepare: Any, failing: Any, winning: Any
    ) -> None:
        """A failed save must not leave its (never committed) snapshot behind.

        Regression: the publisher cached the snapshot it encoded for the failed
        mutation by generation, and the next mutation reuses that generation.
        """
        store = FailingPersistence()
        net = EngineNet(state_type, ["a", "b"], StateConfig(persistence=store))
        net.run()
        delta = state_type is not TestState
        if prepare is not None:
            net.mutate("a", prepare, with_delta=delta)
        store.fail_next_save()
        with pytest.raises(MutationError):
            net.mutate("a", failing, with_delta=delta)
        net.mutate("a", winning, with_delta=delta)
        net.run()
        assert_converged(net)
        net.engine("b").handle(PeerJoined("a"))  # any later snapshot too
        reply = net.engine("a").handle(MessageReceived(RequestSnapshot(state_type.NAME, "b", 99)))
        net.apply("a", reply)
        net.run()
        assert_converged(net)

    def test_persist_happens_before_publish(self) -> None:
        class Peeking(InMemoryPersistence):
            engine: ShardEngine[Any] | None = None
            seen: ClassVar[list[tuple[Generation, Generation, Generation]]] = []

            def save(self, state: StateObject[Any], state_delta: Any) -> None:
                engine = self.engine
                if engine is not None:
                    visible = engine.published.views[engine.node_id].generation
                    self.seen.append((state.generation, engine.own.generation, visible))
                super().save(state, state_delta)

        store = Peeking()
        net = EngineNet(TestState, ["a"], StateConfig(persistence=store))
        engine = net.engine("a")
        store.engine = engine
        before = engine.own.generation
        generation = net.mutate("a", TestState.increment())
        assert store.seen == [(generation, before, before)]
        assert own_view(net, "a").generation == generation
        assert store.saved is not None and store.saved.generation == generation

    def test_delta_is_handed_to_the_store(self) -> None:
        store = InMemoryPersistence()
        net = EngineNet(TestDeltaState, ["a"], StateConfig(persistence=store))
        net.mutate("a", TestDeltaState.bump("k", 4), with_delta=True)
        net.mutate("a", lambda _state: None)
        assert store.deltas[0] == TestDeltaState.Delta(key="k", value=4, total=4)
        assert store.deltas[1] is None


class TestStateHooks:
    """A state hook that breaks its contract fails the mutation and changes nothing."""

    @pytest.mark.parametrize(
        ("state_type", "match"),
        [
            (WrongDelta, "project_delta\\(\\) must return a TestDeltaDelta"),
            (SameView, "apply_delta\\(\\) must return a new TestDeltaView.*its argument"),
            (WrongView, "apply_delta\\(\\) must return a new TestDeltaView.*dict"),
            (WrongUrgency, "sync_urgency\\(\\) must return a SyncUrgency"),
        ],
    )
    def test_broken_hook_is_a_type_error(self, state_type: type, match: str) -> None:
        net = EngineNet(state_type, ["a", "b"])
        net.run()
        engine = net.engine("a")
        own, published = engine.own, engine.published
        mark = len(net.log)
        with pytest.raises(TypeError, match=match):
            commit_mutation(engine, TestDeltaState.bump("k", 1), with_delta=True)
        assert engine.own is own
        assert engine.published is published
        assert engine.metrics().total_mutations == 0
        assert net.log[mark:] == []

    def test_project_view_of_the_wrong_type_fails_registration(self) -> None:
        with pytest.raises(TypeError, match="project_view\\(\\) must return a TestDeltaView"):
            make_engine(WrongProjection)

    def test_an_update_too_big_for_the_wire_fails_the_mutation(self) -> None:
        engine = start_engine(
            TestState, StateConfig(), "a", TestClock(), WireCodec(max_message_bytes=300)
        )[0]
        engine.handle(PeerJoined("b"))
        own = engine.own
        with pytest.raises(MutationError, match="max_message_bytes"):
            commit_mutation(engine, lambda s: setattr(s, "label", "x" * 1000))
        assert engine.own is own

    def test_a_snapshot_too_big_for_the_wire_never_raises_from_peer_input(self) -> None:
        config = StateConfig(sync_strategy=SyncStrategy(PushMode.NONE))
        engine = start_engine(
            TestState, config, "a", TestClock(), WireCodec(max_message_bytes=300)
        )[0]
        engine.handle(PeerJoined("b"))
        commit_mutation(engine, lambda s: setattr(s, "label", "x" * 1000))  # nothing encoded yet
        engine.handle(MessageReceived(RequestSnapshot(TestState.NAME, "b", 1)))
        engine.handle(PeerJoined("c"))
        assert engine.metrics().sync_failures >= 1

    def test_a_periodic_snapshot_too_big_for_the_wire_is_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        config = StateConfig(sync_strategy=SyncStrategy.periodic_only(1.0))
        engine = start_engine(
            TestState, config, "a", TestClock(), WireCodec(max_message_bytes=300)
        )[0]
        engine.handle(PeerJoined("b"))
        commit_mutation(engine, lambda s: setattr(s, "label", "x" * 1000))
        with caplog.at_level(logging.ERROR, "dstate.engine"):
            assert engine.handle(TimerFired(PERIODIC_SYNC)) == []
        assert engine.metrics().sync_failures == 1
        assert any("test_state" in r.getMessage() for r in caplog.records)


# -- receiver rules through bytes ----------------------------------------------------


class TestReceiverRules:
    def test_duplicates_and_stale_updates_are_counted(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        mark = len(net.log)
        net.mutate("a", TestDeltaState.bump("k", 1), with_delta=True)
        net.mutate("a", TestDeltaState.bump("k", 1), with_delta=True)
        frames = frames_since(net, mark, "a", "b")
        assert len(frames) == 2
        net.run()
        b = net.engine("b")
        view = peer_view(net, "b", "a")
        base = b.metrics().stale_deltas_discarded
        for data in frames:  # duplicates, and the first is also stale
            net.deliver("b", data)
        assert b.metrics().stale_deltas_discarded == base + 2
        assert peer_view(net, "b", "a") is view
        join_snapshot = snapshot_frame(
            net,
            "a",
            Generation(view.generation.incarnation, 0),
            TestDeltaState.serialize_view(TestDeltaView()),
        )
        net.deliver("b", join_snapshot)
        assert b.metrics().stale_deltas_discarded == base + 3
        assert peer_view(net, "b", "a") is view
        # Older updates contradict the view: b asks a once (one pull in flight), a confirms.
        asked = [(type(net.codec.decode(data)).__name__, dst) for dst, data in net.queue]
        assert asked == [("RequestSnapshot", "a")]
        net.run()
        assert peer_view(net, "b", "a").generation == view.generation
        assert b.drops.get("unproduced_generation") is None

    def test_age_gap_requests_a_snapshot_and_heals(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        kept = peer_view(net, "b", "a")
        net.link_filter = lambda s, d, data: False
        net.mutate("a", TestDeltaState.bump("x", 1), with_delta=True)
        net.link_filter = None
        mark = len(net.log)
        net.mutate("a", TestDeltaState.bump("y", 2), with_delta=True)
        [update] = sent_since(net, mark, src="a", dst="b")
        assert isinstance(update, DeltaUpdate)
        net.deliver("b", net.queue.popleft()[1])
        b = net.engine("b")
        assert b.metrics().age_gaps_detected == 1
        assert row(b, "a").gap_count == 1
        assert peer_view(net, "b", "a") is kept
        [request] = sent_since(net, mark, src="b", dst="a")
        assert isinstance(request, RequestSnapshot)
        net.run()
        healed = peer_view(net, "b", "a")
        assert healed.generation == net.engine("a").own.generation
        assert healed.value == own_view(net, "a").value
        status = row(b, "a")
        assert status.local_generation == status.remote_generation
        assert b.stale_peers(5.0) == []

    def test_delta_without_any_view_is_a_gap(self) -> None:
        net = EngineNet(TestDeltaState, ["a"])
        net.link_filter = lambda s, d, data: False  # the join exchange is lost
        net.add("b")
        net.advance(6.0)  # and the join probe pull timed out
        b = net.engine("b")
        gen = net.engine("a").own.generation.next()
        payload = TestDeltaState.serialize_delta(TestDeltaState.Delta(key="k", value=1, total=1))
        update = DeltaUpdate("test_delta_state", "a", gen, 1, payload, WALL, WALL)
        actions = b.handle(MessageReceived(update))
        assert b.metrics().age_gaps_detected == 1
        assert "a" not in b.published.views
        requests = [x for x in actions if isinstance(x, SendTo)]
        assert len(requests) == 1
        assert requests[0].node_id == "a"
        assert isinstance(net.codec.decode(requests[0].data), RequestSnapshot)

    def test_newer_incarnation_replaces_a_higher_age_view(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        for _ in range(5):
            net.mutate("a", TestState.increment(2))
        net.run()
        old = peer_view(net, "b", "a")
        assert old.generation.age == 5
        mark = len(net.log)
        net.crash("a")
        net.add("a")  # a new process without persistence
        net.run()
        new = peer_view(net, "b", "a")
        assert new.generation.incarnation > old.generation.incarnation
        assert new.generation.age == 0
        assert new.value.value == 0
        # anything from the older lifetime is now discarded
        b = net.engine("b")
        base = b.metrics().stale_deltas_discarded
        stale = snapshot_frame(
            net, "a", old.generation.next(), TestState(value=99).serialize_state()
        )
        net.deliver("b", stale)
        assert b.metrics().stale_deltas_discarded == base + 1
        assert peer_view(net, "b", "a") is new
        # It contradicts the view, so b asks a, whose answer is its new lifetime.
        assert len(sent_since(net, mark, src="b", kind=RequestSnapshot)) == 1
        net.run()
        assert peer_view(net, "b", "a").generation == new.generation
        assert b.drops.get("unproduced_generation") is None

    def test_older_incarnation_delta_is_discarded(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        view = peer_view(net, "b", "a")
        old = Generation(view.generation.incarnation - 1, view.generation.age + 1)
        payload = TestDeltaState.serialize_delta(TestDeltaState.Delta(key="k", value=1, total=1))
        b = net.engine("b")
        base = b.metrics()
        net.deliver("b", delta_frame(net, "a", old, payload))
        assert b.metrics().stale_deltas_discarded == base.stale_deltas_discarded + 1
        assert b.metrics().age_gaps_detected == 0
        assert peer_view(net, "b", "a") is view
        assert [dst for dst, _ in net.queue] == ["a"]  # a pull: the owner confirms its view
        net.run()
        assert peer_view(net, "b", "a").generation == view.generation

    def test_equal_generation_snapshot_only_refreshes_synced_at(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        mark = len(net.log)
        net.mutate("a", TestState.increment(4))
        net.run()
        [frame] = frames_since(net, mark, "a", "b")
        b = net.engine("b")
        view = peer_view(net, "b", "a")
        notified = len(net.nodes["b"].notified)
        metrics = b.metrics()
        net.clock.advance(3.0)
        net.deliver("b", frame)
        refreshed = peer_view(net, "b", "a")
        assert refreshed.synced_at == net.clock.now() == view.synced_at + 3.0
        assert refreshed.value is view.value
        assert refreshed.generation == view.generation
        assert len(net.nodes["b"].notified) == notified
        after = b.metrics()
        assert after.snapshots_received == metrics.snapshots_received + 1
        assert after.stale_deltas_discarded == metrics.stale_deltas_discarded
        assert after.sync_failures == metrics.sync_failures

    @pytest.mark.parametrize(("key", "detail"), [("boom", "cannot apply boom"), ("odd", "dict")])
    def test_apply_delta_failing_on_the_receiver_is_malformed(self, key: str, detail: str) -> None:
        net = EngineNet(Fragile, ["a", "b"])
        net.run()
        kept = peer_view(net, "b", "a")
        payload = Fragile.serialize_delta(Fragile.Delta(key=key, value=1, total=1))
        net.deliver("b", delta_frame(net, "a", kept.generation.next(), payload))
        b = net.engine("b")
        assert peer_view(net, "b", "a") is kept
        assert b.metrics().sync_failures == 1
        status = row(b, "a")
        assert status.last_error is not None and detail in status.last_error
        assert not net.queue

    def test_deserializer_returning_the_wrong_type_is_malformed(self) -> None:
        net = EngineNet(Sloppy, ["a", "b"])
        net.run()
        assert peer_view(net, "b", "a") is None
        last_error = row(net.engine("b"), "a").last_error
        assert last_error is not None and "dict" in last_error
        assert net.engine("b").metrics().sync_failures >= 1

    def test_an_announcement_its_owner_never_made_is_overruled(self) -> None:
        net = EngineNet(TestState, ["a", "b"], feed_config())
        net.run()
        b = net.engine("b")
        real = net.engine("a").own.generation
        announced = real.next().next()
        note = ChangeNotification(TestState.NAME, "a", announced)
        net.apply("b", b.handle(ChangeAnnounced(note)))
        assert peer_view(net, "b", "a").pending_remote_generation == announced
        net.query("b", 1, 100.0)
        net.run()  # a answers with what it really holds: the mark was never its own
        assert net.nodes["b"].finished[1].failures == ()
        assert peer_view(net, "b", "a").pending_remote_generation is None
        assert peer_view(net, "b", "a").generation == real
        assert b.drops["unproduced_generation"] == 1
        assert b.stale_peers(100.0) == []

    def test_a_reply_to_a_pull_sent_before_the_announcement_fails_the_query(self) -> None:
        net = EngineNet(TestState, ["a", "b"], feed_config())
        net.run()
        b = net.engine("b")
        net.clock.advance(10.0)
        net.query("b", 1, 1.0)  # the pull leaves before the announcement arrives
        announced = net.engine("a").own.generation.next().next()
        net.apply(
            "b", b.handle(ChangeAnnounced(ChangeNotification(TestState.NAME, "a", announced)))
        )
        net.run()
        [(peer, reason)] = net.nodes["b"].finished[1].failures
        assert peer == "a"
        assert "announced" in reason
        assert b.metrics().sync_failures == 1
        assert peer_view(net, "b", "a").pending_remote_generation == announced
        assert [r.node_id for r in b.stale_peers(100.0)] == ["a"]

    def test_an_announcement_not_newer_than_the_view_is_ignored(self) -> None:
        net = EngineNet(TestState, ["a", "b"], feed_config())
        net.run()
        b = net.engine("b")
        view = peer_view(net, "b", "a")
        note = ChangeNotification(TestState.NAME, "a", view.generation)
        assert b.handle(ChangeAnnounced(note)) == []
        assert peer_view(net, "b", "a") is view
        newer = ChangeNotification(TestState.NAME, "a", view.generation.next())
        b.handle(ChangeAnnounced(newer))
        marked = peer_view(net, "b", "a")
        b.handle(ChangeAnnounced(newer))  # the same announcement again
        assert peer_view(net, "b", "a") is marked

    def test_a_delta_for_a_simple_state_is_malformed(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        view = peer_view(net, "b", "a")
        net.deliver("b", delta_frame(net, "a", view.generation.next(), b"\x80"))
        assert net.engine("b").metrics().sync_failures == 1
        assert peer_view(net, "b", "a") is view


# -- push modes ----------------------------------------------------------------------


class TestPushModes:
    def test_active_push_of_a_simple_state_sends_snapshots(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"], active())
        net.run()
        a = net.engine("a")
        before = a.metrics()
        mark = len(net.log)
        net.mutate("a", TestState.increment())
        sent = sent_since(net, mark, src="a")
        assert len(sent) == 2
        assert all(isinstance(m, FullSnapshot) for m in sent)
        after = a.metrics()
        assert after.snapshots_sent == before.snapshots_sent + 2
        assert after.deltas_sent == 0
        assert after.bytes_sent > before.bytes_sent
        net.run()
        assert_converged(net)

    def test_active_push_of_a_delta_state_sends_deltas(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b", "c"], active())
        net.run()
        mark = len(net.log)
        for i in range(3):
            net.mutate("a", TestDeltaState.bump(f"k{i}", i + 1), with_delta=True)
        sent = sent_since(net, mark, src="a")
        assert len(sent) == 6
        assert all(isinstance(m, DeltaUpdate) for m in sent)
        assert net.engine("a").metrics().deltas_sent == 6
        net.run()
        assert_converged(net)
        assert net.engine("b").metrics().deltas_received == 3

    def test_feed_sends_one_batch_for_all_states_per_interval(self) -> None:
        names = (TestState.NAME, TestDeltaState.NAME)
        net = EngineNet(
            [TestState, TestDeltaState], ["a", "b", "c"], feed_config(), batch_interval=1.0
        )
        net.run()
        mark = len(net.log)
        start = net.clock.now()
        net.mutate("a", TestState.increment())
        net.mutate("a", TestDeltaState.bump("k", 2), with_delta=True, name=TestDeltaState.NAME)
        net.mutate("b", TestState.increment(10))
        assert net.timer_due("a", "feed", FEED_FLUSH) == start + 1.0
        net.advance(0.9)
        net.mutate("a", TestState.increment())  # same (state, source): highest wins
        assert sent_since(net, mark) == []
        net.advance(0.15)
        sent = sent_since(net, mark)
        assert all(isinstance(m, BatchedChangeFeed) for m in sent)
        from_a = [m for m in sent_since(net, mark, src="a") if isinstance(m, BatchedChangeFeed)]
        assert len(from_a) == 2  # one batch, delivered to b and c
        batch = from_a[0]
        assert from_a[1] == batch
        got = {n.state_name: n.generation for n in batch.notifications}
        assert got == {name: net.engine("a", name).own.generation for name in names}
        assert got[TestState.NAME].age == 2
        feed = net.nodes["a"].feed
        assert feed.batches_sent == 1
        assert all(feed.batches_for(name) == 1 for name in names)
        metrics = net.engine("a").metrics(feed.batches_for(TestState.NAME))
        assert metrics.feed_batches_sent == 1
        # the receivers only mark the views as pending
        c = net.engine("c")
        for name in names:
            held = peer_view(net, "c", "a", name)
            assert held.pending_remote_generation == net.engine("a", name).own.generation
        assert c.published.pending == 2  # a and b
        assert net.engine("c", TestDeltaState.NAME).published.pending == 1
        assert not c.published.is_fresh(net.clock.now(), 100.0)
        # a query pulls them
        qmark = len(net.log)
        assert net.query("c", 1, 100.0) is None
        requests = sent_since(net, qmark, src="c", kind=RequestSnapshot)
        assert sorted(r.state_name for r in requests) == [TestState.NAME] * 2  # type: ignore[attr-defined]
        net.run()
        assert net.nodes["c"].finished[1] == FinishQuery(1, ())
        assert peer_view(net, "c", "a").value.value == 2
        assert peer_view(net, "c", "b").value.value == 10
        assert c.published.pending == 0

    def test_feed_batch_leaves_at_most_one_interval_after_its_first_note(self) -> None:
        net = EngineNet(TestState, ["a", "b"], feed_config(), batch_interval=0.5)
        net.run()
        net.advance(0.3)
        mark = len(net.log)
        first = net.clock.now()
        net.mutate("a", TestState.increment())
        sent_at = None
        while sent_at is None:
            net.advance(0.05)
            if sent_since(net, mark):
                sent_at = net.clock.now()
            net.mutate("a", TestState.increment())  # keep notifying
            assert net.clock.now() < first + 2.0
        assert sent_at - first <= 0.5 + 1e-9
        assert sent_at - first > 0.4

    def test_feed_announcement_of_an_unknown_view_pulls_it(self) -> None:
        net = EngineNet(TestState, ["a"], feed_config(), batch_interval=0.5)

        def lost(src: str, dst: str, data: bytes) -> bool:
            asks = src == "b" and isinstance(net.codec.decode(data), RequestSnapshot)
            return dst != "b" and not asks

        net.link_filter = lost  # b misses the join exchange, and its probes are lost
        net.add("b")
        net.run()
        assert peer_view(net, "b", "a") is None
        net.advance(6.0)  # the join probes time out: no failure, the peer may lack the state
        assert peer_view(net, "b", "a") is None
        assert net.engine("b").metrics().sync_failures == 0
        net.link_filter = None
        mark = len(net.log)
        net.mutate("a", TestState.increment(3))
        net.advance(0.6)
        assert sent_since(net, mark, src="b", kind=RequestSnapshot)
        assert peer_view(net, "b", "a").value.value == 3

    def test_periodic_full_sync_first_fires_one_interval_after_start(self) -> None:
        config = StateConfig(sync_strategy=SyncStrategy.periodic_only(2.0))
        net = EngineNet(TestState, ["a", "b"], config)
        net.run()
        assert net.timer_due("a", TestState.NAME, PERIODIC_SYNC) == 2.0
        mark = len(net.log)
        net.mutate("a", TestState.increment(5))
        assert sent_since(net, mark) == []
        net.advance(1.9)
        assert peer_view(net, "b", "a").value.value == 0
        net.advance(0.2)
        assert peer_view(net, "b", "a").value.value == 5
        snaps = sent_since(net, mark, src="a", kind=FullSnapshot)
        assert len(snaps) == 1
        net.advance(2.0)  # and again every interval
        assert len(sent_since(net, mark, src="a", kind=FullSnapshot)) == 2

    def test_periodic_full_sync_heals_a_dropped_message(self) -> None:
        config = StateConfig(
            sync_strategy=SyncStrategy(PushMode.ACTIVE_PUSH, periodic_full_sync=1.0)
        )
        net = EngineNet(TestDeltaState, ["a", "b"], config)
        net.run()
        net.link_filter = lambda s, d, data: s != "a"
        net.mutate("a", TestDeltaState.bump("lost", 1), with_delta=True)
        net.run()
        net.link_filter = None
        assert peer_view(net, "b", "a").value.counters == {}
        net.advance(1.05)
        assert_converged(net)

    def test_push_mode_none_sends_nothing(self) -> None:
        config = StateConfig(sync_strategy=SyncStrategy(PushMode.NONE))
        net = EngineNet(TestDeltaState, ["a", "b"], config)
        net.run()
        mark = len(net.log)
        net.mutate("a", TestDeltaState.bump("k", 1), with_delta=True)
        net.mutate("a", lambda _state: None)
        net.advance(10.0)
        assert sent_since(net, mark, src="a") == []
        assert net.nodes["a"].feed.pending == 0
        assert peer_view(net, "b", "a").value.counters == {}
        # pull on query still refreshes it
        net.query("b", 1, 1.0)
        net.run()
        assert net.nodes["b"].finished[1] == FinishQuery(1, ())
        assert_converged(net)


# -- urgency -------------------------------------------------------------------------


class TestUrgency:
    def test_immediate_pushes_at_once_under_feed_mode(self) -> None:
        net = EngineNet(UrgentDeltaState, ["a", "b", "c"], feed_config())
        net.run()
        mark = len(net.log)
        net.mutate("a", UrgentDeltaState.bump("now:x", 1), with_delta=True)
        sent = sent_since(net, mark, src="a")
        assert len(sent) == 2
        assert all(isinstance(m, DeltaUpdate) for m in sent)
        metrics = net.engine("a").metrics()
        assert metrics.deltas_immediate == 1
        assert metrics.deltas_sent == 2
        assert net.nodes["a"].feed.pending == 0
        net.run()
        assert_converged(net)
        assert peer_view(net, "b", "a").pending_remote_generation is None
        # a DEFAULT change under the same mode only goes to the feed
        mark = len(net.log)
        net.mutate("a", UrgentDeltaState.bump("k", 1), with_delta=True)
        assert sent_since(net, mark) == []
        assert net.nodes["a"].feed.pending == 1

    def test_suppress_then_update_sends_one_snapshot_and_no_gap(self) -> None:
        net = EngineNet(UrgentDeltaState, ["a", "b", "c"], active())
        net.run()
        mark = len(net.log)
        net.mutate("a", UrgentDeltaState.bump("quiet:1", 1), with_delta=True)
        net.mutate("a", UrgentDeltaState.bump("quiet:2", 2), with_delta=True)
        assert sent_since(net, mark) == []
        assert net.engine("a").metrics().deltas_suppressed == 2
        net.mutate("a", UrgentDeltaState.bump("k", 3), with_delta=True)
        sent = sent_since(net, mark, src="a")
        assert len(sent) == 2
        assert all(isinstance(m, FullSnapshot) for m in sent)
        net.run()
        assert_converged(net)
        for peer in ("b", "c"):
            assert net.engine(peer).metrics().age_gaps_detected == 0
        assert sent_since(net, mark, kind=RequestSnapshot) == []
        assert peer_view(net, "b", "a").value.counters == {"quiet:1": 1, "quiet:2": 2, "k": 3}
        # and the next default change is a delta again
        mark = len(net.log)
        net.mutate("a", UrgentDeltaState.bump("k", 1), with_delta=True)
        assert all(isinstance(m, DeltaUpdate) for m in sent_since(net, mark))

    def test_delayed_deltas_in_one_window_leave_as_one_message(self) -> None:
        net = EngineNet(UrgentDeltaState, ["a", "b", "c"], active())
        net.run()
        mark = len(net.log)
        first = net.clock.now()
        net.mutate("a", UrgentDeltaState.bump("late:x", 1), with_delta=True)
        net.advance(0.2)
        net.mutate("a", UrgentDeltaState.bump("late:x", 5), with_delta=True)
        net.advance(0.2)
        net.mutate("a", UrgentDeltaState.bump("late:y", 2), with_delta=True)
        assert sent_since(net, mark) == []
        net.advance(first + 0.5 - net.clock.now() + 0.01)
        sent = sent_since(net, mark, src="a")
        assert len(sent) == 2  # one message, to each of the two peers
        latest = net.engine("a").own.generation
        assert all(m.generation == latest for m in sent)  # type: ignore[union-attr]
        net.run()
        assert_converged(net)
        assert peer_view(net, "b", "a").value.counters == {"late:x": 6, "late:y": 2}
        net.advance(2.0)
        assert len(sent_since(net, mark, src="a")) == 2

    def test_a_single_delayed_delta_leaves_as_a_delta(self) -> None:
        net = EngineNet(UrgentDeltaState, ["a", "b"], active())
        net.run()
        mark = len(net.log)
        net.mutate("a", UrgentDeltaState.bump("late:x", 1), with_delta=True)
        net.advance(0.45)
        assert sent_since(net, mark) == []
        net.advance(0.1)
        [message] = sent_since(net, mark, src="a")
        assert isinstance(message, DeltaUpdate)
        net.run()
        assert_converged(net)

    def test_a_shorter_delay_closes_the_window_earlier(self) -> None:
        net = EngineNet(TwoDelays, ["a", "b"], active())
        net.run()
        mark = len(net.log)
        net.mutate("a", TwoDelays.bump("slow:x", 1), with_delta=True)
        net.advance(0.1)
        net.mutate("a", TwoDelays.bump("fast:y", 1), with_delta=True)
        net.advance(0.15)
        assert sent_since(net, mark) == []
        net.advance(0.1)  # 0.1 + 0.2 after the first change, well before 1.0
        [message] = sent_since(net, mark, src="a")
        assert isinstance(message, FullSnapshot)
        net.run()
        assert_converged(net)
        net.advance(1.0)
        assert len(sent_since(net, mark, src="a")) == 1

    def test_a_stale_window_timer_sends_nothing(self) -> None:
        net = EngineNet(UrgentDeltaState, ["a", "b"], active())
        net.run()
        a = net.engine("a")
        net.mutate("a", UrgentDeltaState.bump("late:x", 1), with_delta=True)
        net.mutate("a", UrgentDeltaState.bump("k", 1), with_delta=True)  # sent at once
        assert a.handle(TimerFired(DELAYED_PUSH)) == []
        assert a.handle(TimerFired(DELAYED_PUSH)) == []

    def test_immediate_cancels_an_open_window(self) -> None:
        net = EngineNet(UrgentDeltaState, ["a", "b"], feed_config())
        net.run()
        mark = len(net.log)
        net.mutate("a", UrgentDeltaState.bump("late:x", 1), with_delta=True)
        net.mutate("a", UrgentDeltaState.bump("now:y", 1), with_delta=True)
        [message] = sent_since(net, mark, src="a")
        net.advance(1.0)
        assert len(sent_since(net, mark, src="a")) == 1
        assert message.generation == net.engine("a").own.generation  # type: ignore[union-attr]
        assert_converged(net)

    def test_warning_when_custom_urgency_has_no_fallback(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        bare = StateConfig(sync_strategy=SyncStrategy(PushMode.NONE, pull_on_query=False))
        with caplog.at_level(logging.WARNING, "dstate.engine"):
            EngineNet(UrgentDeltaState, ["a"], bare)
        warnings = [r for r in caplog.records if r.name == "dstate.engine"]
        assert len(warnings) == 1
        assert "urgent_delta_state" in warnings[0].getMessage()
        assert "sync_urgency" in warnings[0].getMessage()

    @pytest.mark.parametrize(
        ("state_type", "strategy"),
        [
            (UrgentDeltaState, SyncStrategy(PushMode.NONE, pull_on_query=True)),
            (UrgentDeltaState, SyncStrategy(PushMode.NONE, 5.0, pull_on_query=False)),
            (UrgentDeltaState, SyncStrategy(PushMode.ACTIVE_PUSH, pull_on_query=False)),
            (TestDeltaState, SyncStrategy(PushMode.NONE, pull_on_query=False)),
        ],
    )
    def test_no_warning_with_a_fallback_or_no_override(
        self, state_type: type, strategy: SyncStrategy, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, "dstate.engine"):
            EngineNet(state_type, ["a"], StateConfig(sync_strategy=strategy))
        assert [r for r in caplog.records if r.name == "dstate.engine"] == []


# -- queries and pulls ---------------------------------------------------------------


class TestQueries:
    def test_all_fresh_finishes_at_once(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"])
        net.run()
        mark = len(net.log)
        assert net.query("a", 7, 5.0) == FinishQuery(7, ())
        assert net.log[mark:] == []

    def test_stale_peers_are_pulled_once_each_for_concurrent_queries(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c", "d"])
        net.run()
        net.clock.advance(10.0)
        mark = len(net.log)
        for query_id in (1, 2, 3):
            assert net.query("a", query_id, 1.0) is None
        requests = sent_since(net, mark, src="a", kind=RequestSnapshot)
        assert sorted(net.log[mark + i][1] for i in range(len(net.log) - mark)) == [
            "b",
            "c",
            "d",
        ]
        assert len(requests) == 3
        assert net.nodes["a"].finished == {}
        net.run()
        finished = net.nodes["a"].finished
        assert finished == {q: FinishQuery(q, ()) for q in (1, 2, 3)}
        a = net.engine("a")
        assert a.published.is_fresh(net.clock.now(), 0.0)
        for peer in ("b", "c", "d"):
            status = row(a, peer)
            assert status.last_sync_time == net.clock.now()
            assert status.last_attempt_time == net.clock.now()
            assert status.last_sync_latency_ms == 0.0

    def test_only_the_stale_peers_are_pulled(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"])
        net.run()
        net.clock.advance(10.0)
        net.mutate("b", TestState.increment())
        net.run()
        mark = len(net.log)
        net.query("a", 1, 5.0)
        assert [d for s, d, _ in net.log[mark:]] == ["c"]

    def test_pull_timeout_fails_the_query(self) -> None:
        net = EngineNet(TestState, ["a", "b"], StateConfig(pull_timeout=2.0))
        net.run()
        net.clock.advance(10.0)
        net.link_filter = lambda s, d, data: d != "a"
        net.query("a", 1, 1.0)
        net.advance(1.9)
        assert 1 not in net.nodes["a"].finished
        net.advance(0.2)
        finish = net.nodes["a"].finished[1]
        [(peer, reason)] = finish.failures
        assert peer == "b"
        assert "pull_timeout" in reason
        a = net.engine("a")
        assert a.metrics().sync_failures == 1
        status = row(a, "b")
        assert status.consecutive_failures == 1
        assert status.last_error is not None and "pull_timeout" in status.last_error
        net.query("a", 2, 1.0)
        net.advance(2.1)
        assert row(a, "b").consecutive_failures == 2
        assert a.metrics().sync_failures == 2
        # a reply clears the failure streak
        net.link_filter = None
        net.query("a", 3, 1.0)
        net.run()
        assert net.nodes["a"].finished[3] == FinishQuery(3, ())
        assert row(a, "b").consecutive_failures == 0
        assert row(a, "b").last_error is None

    def test_pull_on_query_off_fails_at_once_and_sends_nothing(self) -> None:
        config = StateConfig(sync_strategy=SyncStrategy(PushMode.ACTIVE_PUSH, pull_on_query=False))
        net = EngineNet(TestState, ["a", "b", "c"], config)
        net.run()
        net.clock.advance(10.0)
        mark = len(net.log)
        timers = dict(net.nodes["a"].timers)
        finish = net.query("a", 1, 1.0)
        assert finish is not None
        assert [peer for peer, _ in finish.failures] == ["b", "c"]
        assert all("pull_on_query" in reason for _, reason in finish.failures)
        assert net.log[mark:] == []
        assert net.nodes["a"].timers == timers

    def test_a_cancelled_query_is_not_finished(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        net.clock.advance(10.0)
        net.query("a", 1, 1.0)
        net.engine("a").cancel_query(1)
        net.run()
        assert net.nodes["a"].finished == {}

    def test_a_peer_leaving_settles_the_waiting_query(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"])
        net.run()
        net.clock.advance(10.0)
        net.link_filter = lambda s, d, data: s != "b"
        net.query("a", 1, 1.0)
        net.leave("b")
        net.run()
        assert net.nodes["a"].finished[1] == FinishQuery(1, ())


# -- version mismatch and malformed payloads -----------------------------------------


class TestVersionMismatch:
    def setup_net(self, policy: VersionMismatchPolicy) -> EngineNet:
        net = EngineNet(TestState, ["a", "b"], StateConfig(version_mismatch_policy=policy))
        net.mutate("a", TestState.increment(3))
        net.run()
        return net

    def test_keep_stale_keeps_the_view_counts_and_warns(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        net = self.setup_net(VersionMismatchPolicy.KEEP_STALE)
        kept = peer_view(net, "b", "a")
        newer = kept.generation.next()
        frame = snapshot_frame(net, "a", newer, pack({"count": 4}), wire_version=2)
        with caplog.at_level(logging.WARNING, "dstate.engine"):
            net.deliver("b", frame)
        b = net.engine("b")
        assert peer_view(net, "b", "a") is kept
        assert b.metrics().sync_failures == 1
        status = row(b, "a")
        assert status.consecutive_failures == 1
        assert status.remote_generation == newer
        assert b.stale_peers(100.0)[0].node_id == "a"
        [warning] = [r for r in caplog.records if r.name == "dstate.engine"]
        text = warning.getMessage()
        assert warning.levelno == logging.WARNING
        assert "wire version 2" in text and "'a'" in text and "test_state" in text
        assert not net.queue

    def test_drop_and_wait_removes_the_view_until_readable(self) -> None:
        net = self.setup_net(VersionMismatchPolicy.DROP_AND_WAIT)
        old = peer_view(net, "b", "a")
        newer = old.generation.next()
        net.deliver("b", snapshot_frame(net, "a", newer, pack({"count": 4}), wire_version=2))
        assert peer_view(net, "b", "a") is None
        assert net.nodes["b"].notified[-1] == NotifyView("a", old, None)
        assert net.engine("b").metrics().sync_failures == 1
        readable = snapshot_frame(net, "a", newer, TestState(value=4).serialize_state())
        net.deliver("b", readable)
        back = peer_view(net, "b", "a")
        assert back is not None and back.value.value == 4
        assert net.nodes["b"].notified[-1] == NotifyView("a", None, back)
        assert row(net.engine("b"), "a").consecutive_failures == 0

    def test_drop_and_wait_then_an_older_readable_update_is_discarded(self) -> None:
        net = self.setup_net(VersionMismatchPolicy.DROP_AND_WAIT)
        old = peer_view(net, "b", "a")
        newer = old.generation.next()
        net.deliver("b", snapshot_frame(net, "a", newer, pack({"count": 4}), wire_version=2))
        assert peer_view(net, "b", "a") is None
        b = net.engine("b")
        base = b.metrics().stale_deltas_discarded
        older = Generation(old.generation.incarnation, old.generation.age - 1)
        net.deliver("b", snapshot_frame(net, "a", older, TestState(value=1).serialize_state()))
        assert peer_view(net, "b", "a") is None
        assert b.metrics().stale_deltas_discarded == base + 1
        net.deliver("b", snapshot_frame(net, "a", old.generation, old.value.serialize_state()))
        back = peer_view(net, "b", "a")
        assert back is not None and back.generation == old.generation

    def test_drop_and_wait_on_an_unreadable_delta(self) -> None:
        config = StateConfig(version_mismatch_policy=VersionMismatchPolicy.DROP_AND_WAIT)
        net = EngineNet(TestDeltaState, ["a", "b"], config)
        net.run()
        view = peer_view(net, "b", "a")
        net.deliver("b", delta_frame(net, "a", view.generation.next(), b"\x80", wire_version=9))
        assert peer_view(net, "b", "a") is None
        assert net.engine("b").metrics().sync_failures == 1

    def test_drop_and_wait_without_a_view(self) -> None:
        config = StateConfig(version_mismatch_policy=VersionMismatchPolicy.DROP_AND_WAIT)
        net = EngineNet(TestState, ["a"], config)
        net.link_filter = lambda s, d, data: False
        net.add("b")
        net.link_filter = None
        notified = len(net.nodes["b"].notified)
        net.deliver("b", snapshot_frame(net, "a", Generation(5, 5), b"\x80", wire_version=2))
        assert peer_view(net, "b", "a") is None
        assert len(net.nodes["b"].notified) == notified
        assert net.engine("b").metrics().sync_failures == 1

    def test_an_old_node_cannot_read_a_phase_two_node(self) -> None:
        store_a = InMemoryPersistence()
        net = EngineNet(RollV1, ["b"])
        net.add("a", StateConfig(persistence=store_a), state_type=RollPhase2)
        net.run()
        b = net.engine("b")
        assert peer_view(net, "b", "a") is None
        assert b.metrics().sync_failures >= 1
        assert peer_view(net, "a", "b") is not None

    @pytest.mark.parametrize(
        ("old", "phase1", "phase2", "with_delta"),
        [
            (RollV1, RollPhase1, RollPhase2, False),
            (RollDeltaV1, RollDeltaPhase1, RollDeltaPhase2, True),
        ],
        ids=["simple", "delta"],
    )
    def test_two_phase_rolling_upgrade_converges_at_every_step(
        self, old: type, phase1: type, phase2: type, with_delta: bool
    ) -> None:
        nodes = ["a", "b", "c"]
        stores = {n: InMemoryPersistence() for n in nodes}
        net = EngineNet(old, [])
        for n in nodes:
            net.add(n, StateConfig(persistence=stores[n]))
        counter = iter(range(1, 1000))

        def mutate_all() -> None:
            for n in nodes:
                amount = next(counter)
                if with_delta:
                    net.mutate(n, TestDeltaState.bump(f"k{n}", amount), with_delta=True)
                else:
                    net.mutate(n, lambda s, x=amount: setattr(s, "value", s.value + x))

        def check(step: str) -> None:
            net.run()
            mutate_all()
            net.run()
            assert_converged(net)
            failures = {n: net.engine(n).metrics().sync_failures for n in nodes}
            assert failures == dict.fromkeys(nodes, 0), step
            values = {n: own_view(net, n).value.model_dump() for n in nodes}
            for n in nodes:  # persisted state survived every restart
                assert values[n] != type(own_view(net, n).value)().model_dump(), step

        def restart(n: str, kind: type) -> None:
            net.leave(n)
            net.add(n, StateConfig(persistence=stores[n]), state_type=kind)
            net.run()

        check("all old")
        for step, kind in (("phase 1", phase1), ("phase 2", phase2)):
            for n in nodes:
                restart(n, kind)
                check(f"{step}: {n} upgraded")
        wires = {net.engine(n).state_type.WIRE_VERSION for n in nodes}
        assert wires == {2}

    @pytest.mark.parametrize("policy", list(VersionMismatchPolicy))
    def test_malformed_payload_keeps_the_view_and_sends_nothing(
        self, policy: VersionMismatchPolicy, caplog: pytest.LogCaptureFixture
    ) -> None:
        net = self.setup_net(policy)
        kept = peer_view(net, "b", "a")
        with caplog.at_level(logging.WARNING, "dstate.engine"):
            net.deliver("b", snapshot_frame(net, "a", kept.generation.next(), b"\xc1\xc1"))
        b = net.engine("b")
        assert peer_view(net, "b", "a") is kept
        assert b.metrics().sync_failures == 1
        assert not net.queue
        assert [r for r in caplog.records if r.name == "dstate.engine"]

    @pytest.mark.parametrize("policy", list(VersionMismatchPolicy))
    def test_deserializer_raising_a_plain_error_is_malformed(
        self, policy: VersionMismatchPolicy, caplog: pytest.LogCaptureFixture
    ) -> None:
        net = EngineNet(Picky, ["a", "b"], StateConfig(version_mismatch_policy=policy))
        net.mutate("a", lambda s: setattr(s, "value", 5))
        net.run()
        kept = peer_view(net, "b", "a")
        mark = len(net.log)
        with caplog.at_level(logging.WARNING, "dstate.engine"):
            net.mutate("a", lambda s: setattr(s, "value", -1))
            net.run()
        b = net.engine("b")
        assert peer_view(net, "b", "a") is kept
        assert b.metrics().sync_failures == 1
        assert sent_since(net, mark, src="b") == []
        status = row(b, "a")
        assert status.last_error is not None and "ValueError" in status.last_error
        messages = [r.getMessage() for r in caplog.records if r.name == "dstate.engine"]
        assert any("negative value" in m and "'a'" in m for m in messages)

    def test_malformed_delta_keeps_the_view(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        kept = peer_view(net, "b", "a")
        net.deliver("b", delta_frame(net, "a", kept.generation.next(), b"\x92\x01"))
        assert peer_view(net, "b", "a") is kept
        assert net.engine("b").metrics().sync_failures == 1
        assert not net.queue


# -- membership ----------------------------------------------------------------------


class TestMembership:
    def test_join_exchange_gives_every_node_every_view(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.mutate("a", TestState.increment(2))
        net.mutate("b", TestState.increment(3))
        net.run()
        net.add("c")
        net.run()
        for n in ("a", "b", "c"):
            assert set(net.engine(n).published.views) == {"a", "b", "c"}
            assert net.engine(n).peers == frozenset({"a", "b", "c"} - {n})
        assert_converged(net)
        assert net.view("c", "a").value == 2

    def test_leave_removes_views_and_ignores_late_messages(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"])
        mark = len(net.log)
        net.mutate("c", TestState.increment(1))
        late = frames_since(net, mark, "c", "a")
        net.run()
        old = peer_view(net, "a", "c")
        net.leave("c")
        for n in ("a", "b"):
            assert "c" not in net.engine(n).published.views
            assert "c" not in net.engine(n).peers
            assert net.nodes[n].notified[-1].node_id == "c"
            assert net.nodes[n].notified[-1].new is None
        assert net.nodes["a"].notified[-1] == NotifyView("c", old, None)
        a = net.engine("a")
        base = a.metrics().stale_deltas_discarded
        for data in late:
            net.deliver("a", data)
        assert "c" not in a.published.views
        assert "c" not in a.peers
        assert a.metrics().stale_deltas_discarded == base + len(late)
        assert [r.node_id for r in a.sync_status()] == ["b"]

    def test_a_newer_message_from_a_departed_node_does_not_resurrect_it(self) -> None:
        """A message still in flight when the node left must not re-add it."""
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        net.mutate("b", TestDeltaState.bump("x", 1), with_delta=True)
        net.mutate("b", TestDeltaState.bump("x", 1), with_delta=True)
        in_flight = [data for dst, data in net.queue if dst == "a"]
        assert len(in_flight) == 2
        net.queue.clear()
        net.leave("b")
        a = net.engine("a")
        base = a.metrics().stale_deltas_discarded
        for data in in_flight:
            net.deliver("a", data)
        newer = snapshot_frame(
            net,
            "b",
            Generation(2**50, 0),
            TestDeltaState.serialize_view(TestDeltaView(total=5)),
        )
        net.deliver("a", newer)
        assert "b" not in a.peers
        assert "b" not in a.published.views
        assert a.metrics().stale_deltas_discarded == base + 3
        assert not net.queue  # and no pull was started for it

    @pytest.mark.parametrize("state_type", [TestState, TestDeltaState])
    def test_a_late_message_after_a_rejoin_never_moves_the_view_back(
        self, state_type: type
    ) -> None:
        """Rejoined but no view yet: an update older than the last view held is a late
        message of the past and is discarded; the owner resuming at that very
        generation (persisted) is taken."""
        delta = state_type is TestDeltaState
        net = EngineNet(state_type, ["a", "b"])
        net.run()
        change = TestDeltaState.bump("x", 1) if delta else TestState.increment(1)
        mark = len(net.log)
        net.mutate("a", change, with_delta=delta)
        net.mutate("a", change, with_delta=delta)
        net.run()
        late = frames_since(net, mark, "a", "b")[0]  # age 1; b holds age 2
        held = peer_view(net, "b", "a").generation
        assert held.age == 2
        net.leave("a")
        b = net.engine("b")
        b.handle(PeerJoined("a"))  # back, but its join snapshot is still on the way
        base = b.metrics().stale_deltas_discarded
        net.deliver("b", late)
        payload = (
            TestDeltaState.serialize_view(TestDeltaView(total=99))
            if delta
            else TestState(value=99).serialize_state()
        )
        older_lifetime = Generation(held.incarnation - 1, held.age + 5)
        net.deliver("b", snapshot_frame(net, "a", older_lifetime, payload))
        net.deliver("b", snapshot_frame(net, "a", Generation(held.incarnation, 1), payload))
        assert peer_view(net, "b", "a") is None
        assert b.metrics().stale_deltas_discarded == base + 3
        assert not net.queue  # and none of them started a pull
        net.deliver("b", snapshot_frame(net, "a", held, payload))  # resumed where it left
        view = peer_view(net, "b", "a")
        assert view is not None and view.generation == held

    def test_an_announcement_older_than_the_last_view_held_starts_no_pull(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        net.mutate("a", TestState.increment(1))
        net.run()
        held = peer_view(net, "b", "a").generation
        net.leave("a")
        b = net.engine("b")
        b.handle(PeerJoined("a"))
        old = Generation(held.incarnation, held.age - 1)
        name = TestState.NAME
        assert b.handle(ChangeAnnounced(ChangeNotification(name, "a", old))) == []
        pull = b.handle(ChangeAnnounced(ChangeNotification(name, "a", held)))
        assert [x for x in pull if isinstance(x, SendTo)]

    @pytest.mark.parametrize("state_type", [TestState, TestDeltaState])
    def test_late_node_left_is_healed_by_the_next_peer_joined(self, state_type: type) -> None:
        """Crash, restart, then the old NodeLeft arrives late: the node shell re-announces
        the live node (PeerJoined) and the join exchange restores its view."""
        net = EngineNet(state_type, ["a", "b", "c"])
        net.run()
        net.crash("c")
        net.add("c")  # restarted before the failure detector noticed
        net.run()
        net.announce_left("c")  # the old NodeLeft arrives late
        for n in ("a", "b"):
            assert "c" not in net.engine(n).published.views
        for n in ("a", "b"):
            net.apply(n, net.engine(n).handle(PeerJoined("c")))
        net.run()
        for n in ("a", "b"):
            assert "c" in net.engine(n).peers
        assert_converged(net)
        delta = state_type is TestDeltaState
        change = TestDeltaState.bump("x", 4) if delta else TestState.increment(9)
        net.mutate("c", change, with_delta=delta)
        net.run()
        assert_converged(net)
        assert net.engine("a").metrics().age_gaps_detected == 0

    def test_a_lost_join_exchange_is_retried_with_backoff(self) -> None:
        net = EngineNet(TestState, ["a"], StateConfig(pull_timeout=1.0))
        net.link_filter = lambda s, d, data: False
        net.add("b")
        net.advance(1.05)  # the join probes time out (after at most 1 s)
        probe = ProbeTimer("b")
        first = net.timer_due("a", TestState.NAME, probe)
        assert first is not None and first == pytest.approx(1.0 + 0.5, abs=0.1)
        net.advance(1.5)  # the retry times out too: the delay doubles
        second = net.timer_due("a", TestState.NAME, probe)
        assert second is not None and second == pytest.approx(2.5 + 1.0, abs=0.1)
        assert net.engine("a").metrics().sync_failures == 0
        net.link_filter = None
        net.advance(5.0)
        assert_converged(net)
        assert net.timer_due("a", TestState.NAME, probe) is None
        assert net.engine("a").metrics().sync_failures == 0

    def test_a_request_from_a_peer_without_a_view_probes_it_at_once(self) -> None:
        net = EngineNet(TestState, ["a"], StateConfig(pull_timeout=1.0))
        net.link_filter = lambda s, d, data: False
        net.add("b")
        net.advance(1.05)  # the first probes time out
        for _ in range(3):  # and every retry: a's next one is 4 s away now
            due = net.timer_due("a", TestState.NAME, ProbeTimer("b"))
            assert due is not None
            net.advance(due - net.clock.now() + 1.05)
        waiting = net.timer_due("a", TestState.NAME, ProbeTimer("b"))
        assert waiting is not None and waiting >= net.clock.now() + 3.9
        net.link_filter = None
        # A request from b reaches a (b probing, or pulling): a answers, and probes b at once.
        net.deliver("a", WireCodec().encode(RequestSnapshot(TestState.NAME, "b", 99)))
        net.run()
        assert_converged(net)
        assert net.timer_due("a", TestState.NAME, ProbeTimer("b")) is None
        assert net.clock.now() < waiting

    def test_leaving_cancels_the_probe_retry(self) -> None:
        net = EngineNet(TestState, ["a"], StateConfig(pull_timeout=1.0))
        net.link_filter = lambda s, d, data: False
        net.add("b")
        net.advance(1.05)
        assert net.timer_due("a", TestState.NAME, ProbeTimer("b")) is not None
        net.leave("b")
        assert net.timer_due("a", TestState.NAME, ProbeTimer("b")) is None
        assert net.engine("a").handle(TimerFired(ProbeTimer("b"))) == []

    def test_leave_of_an_unknown_node_is_ignored(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        views = net.engine("a").published
        assert net.engine("a").handle(PeerLeft("zzz")) == []
        assert net.engine("a").published is views

    def test_rejoin_after_a_clean_leave(self) -> None:
        net = EngineNet(TestState, ["a", "b"], StateConfig(persistence=None))
        net.run()
        net.leave("b")
        net.add("b")
        net.run()
        assert_converged(net)

    @pytest.mark.parametrize(
        "message",
        [
            FullSnapshot(
                "test_state", "zzz", Generation(1, 1), 1, TestState().serialize_state(), 0, 0
            ),
            DeltaUpdate("test_state", "zzz", Generation(1, 1), 1, b"\x80", 0, 0),
            RequestSnapshot("test_state", "zzz", 1),
            SnapshotReply(1, FullSnapshot("test_state", "zzz", Generation(1, 1), 1, b"\x80", 0, 0)),
        ],
    )
    def test_messages_from_unknown_nodes_are_dropped(self, message: Message) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        a = net.engine("a")
        views = a.published
        net.deliver("a", net.codec.encode(message))
        assert a.drops == {"unknown_node": 1}
        assert a.published is views
        assert not net.queue

    def test_feed_from_an_unknown_node_is_dropped(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        a = net.engine("a")
        note = ChangeNotification("test_state", "zzz", Generation(1, 1))
        net.deliver("a", net.codec.encode(BatchedChangeFeed("zzz", (note,))))
        assert a.drops == {"unknown_node": 1}
        assert a.handle(ChangeAnnounced(note)) == []
        assert a.drops == {"unknown_node": 2}

    def test_a_message_claiming_to_be_from_this_node_is_dropped(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        a = net.engine("a")
        payload = TestState(value=5).serialize_state()
        net.deliver("a", snapshot_frame(net, "a", Generation(2**50, 1), payload))
        assert a.drops == {"own_node": 1}
        assert a.own.value.value == 0

    def test_a_message_for_another_state_is_dropped(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        a = net.engine("a")
        wrong = FullSnapshot("other", "b", Generation(1, 1), 1, b"\x80", 0, 0)
        assert a.handle(MessageReceived(wrong)) == []
        assert a.drops == {"wrong_state": 1}

    def test_unknown_event_is_a_type_error(self) -> None:
        net = EngineNet(TestState, ["a"])
        with pytest.raises(TypeError):
            net.engine("a").handle("nonsense")  # type: ignore[arg-type]


# -- startup and persistence ---------------------------------------------------------


def make_engine(
    state_type: type,
    store: Any = None,
    *,
    clock: TestClock | None = None,
    source: IncarnationSource | None = None,
) -> ShardEngine[Any]:
    return start_engine(
        state_type,
        StateConfig(persistence=store),
        "a",
        clock or TestClock(),
        WireCodec(),
        source or IncarnationSource(),
    )[0]


class TestStartup:
    def test_fresh_start(self) -> None:
        clock = TestClock(wall_ms=1_234_567)
        engine = make_engine(TestState, clock=clock)
        assert engine.own.generation == Generation(1_234_567, 0)
        assert engine.own.created_time == engine.own.modified_time == 1_234_567
        assert engine.own.value == TestState()
        assert engine.own.storage_version == TestState.STORAGE_VERSION
        view = engine.published.views["a"]
        assert view.generation == engine.own.generation
        assert view.source_node == "a"

    def test_fresh_start_after_the_clock_stepped_back(self) -> None:
        source = IncarnationSource()
        make_engine(TestState, clock=TestClock(wall_ms=5_000), source=source)
        again = make_engine(TestState, clock=TestClock(wall_ms=4_000), source=source)
        assert again.own.generation == Generation(5_001, 0)

    def test_loaded_state_keeps_generation_and_timestamps(self) -> None:
        store = InMemoryPersistence()
        clock = TestClock()
        first = make_engine(TestState, store, clock=clock)
        for _ in range(3):
            clock.advance(1.0)
            commit_mutation(first, TestState.increment(2))
        saved = first.own
        clock.advance(100.0)
        second = make_engine(TestState, store, clock=clock)
        assert second.own.generation == saved.generation
        assert second.own.created_time == saved.created_time
        assert second.own.modified_time == saved.modified_time
        assert second.own.value == saved.value
        assert second.own.generation.age == 3
        assert commit_mutation(second, TestState.increment())[0] == saved.generation.next()

    def test_a_loaded_incarnation_is_observed(self) -> None:
        store = InMemoryPersistence()
        first = make_engine(TestState, store, clock=TestClock(wall_ms=9_000))
        commit_mutation(first, TestState.increment())
        source = IncarnationSource()
        make_engine(TestState, store, clock=TestClock(wall_ms=1_000), source=source)
        assert source.last == 9_000
        assert source.fresh(1_000) == 9_001

    def test_load_failure_starts_fresh_with_a_newer_incarnation(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = FailingPersistence()
        clock = TestClock()
        source = IncarnationSource()
        first = make_engine(TestState, store, clock=clock, source=source)
        commit_mutation(first, TestState.increment(5))
        stored = first.own.generation
        store.fail_load(True)
        with caplog.at_level(logging.WARNING, "dstate"):
            second = make_engine(TestState, store, clock=clock, source=source)
        assert second.own.generation.incarnation > stored.incarnation
        assert second.own.generation.age == 0
        assert second.own.value == TestState()
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("injected load failure" in r.getMessage() for r in warnings)
        assert all(r.name.startswith("dstate") for r in warnings)

    def test_older_storage_version_is_migrated(self) -> None:
        store = InMemoryPersistence()
        old = make_engine(StoredV1, store)
        commit_mutation(old, lambda s: setattr(s, "count", 4))
        saved = old.own
        new = make_engine(StoredV2, store)
        assert new.own.value == StoredV2(total=40)
        assert new.own.generation == saved.generation
        assert new.own.storage_version == 2
        assert new.own.created_time == saved.created_time

    def test_failed_migration_starts_fresh(self, caplog: pytest.LogCaptureFixture) -> None:
        store = InMemoryPersistence()
        old = make_engine(StoredV1, store)
        commit_mutation(old, lambda s: setattr(s, "count", 4))
        source = IncarnationSource()
        source.observe(old.own.generation.incarnation)
        with caplog.at_level(logging.WARNING, "dstate"):
            new = make_engine(StoredV2NoMigration, store, source=source)
        assert new.own.value == StoredV2NoMigration()
        assert new.own.generation.age == 0
        assert new.own.generation.incarnation > old.own.generation.incarnation
        assert any("storage version 1" in r.getMessage() for r in caplog.records)

    def test_a_newer_storage_version_is_refused_and_never_overwritten(self) -> None:
        store = InMemoryPersistence()
        commit_mutation(make_engine(StoredV2, store), lambda s: setattr(s, "total", 1))
        saves = store.save_count
        with pytest.raises(NewerRecordError, match="storage version 2"):
            make_engine(StoredV1, store)
        saved = store.saved
        assert store.save_count == saves and saved is not None and saved.storage_version == 2

    def test_a_foreign_record_is_not_overwritten_by_a_fresh_start(self) -> None:
        with pytest.raises(ForeignRecordError):
            make_engine(TestState, ForeignStore())

    def test_state_without_defaults_is_a_type_error(self) -> None:
        class Needy(DistributedState):
            NAME = "needy"
            required: int

        with pytest.raises(TypeError, match="default"):
            make_engine(Needy)


# -- diagnostics ---------------------------------------------------------------------


def status_row(node: str, *, synced: float | None = 0.0, failures: int = 0) -> PeerSyncStatus:
    return PeerSyncStatus(
        node_id=node,
        state_name="s",
        local_generation=Generation(1, 1),
        remote_generation=Generation(1, 1),
        gap_count=0,
        consecutive_failures=failures,
        last_sync_time=synced,
        last_attempt_time=None,
        last_error=None,
        last_sync_latency_ms=None,
    )


class TestDiagnostics:
    def test_sync_status_rows(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"])
        net.mutate("b", TestState.increment())
        net.run()
        a = net.engine("a")
        rows = a.sync_status()
        assert [r.node_id for r in rows] == ["b", "c"]
        for r in rows:
            assert r.state_name == "test_state"
            assert r.local_generation == net.engine(r.node_id).own.generation
            assert r.remote_generation == r.local_generation
            assert r.gap_count == 0
            assert r.consecutive_failures == 0
            assert r.last_sync_time == net.clock.now()
            assert r.last_error is None

    def test_stale_peers(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c"])
        net.run()
        net.clock.advance(10.0)
        a = net.engine("a")
        assert [r.node_id for r in a.stale_peers(5.0)] == ["b", "c"]
        assert a.stale_peers(20.0) == []
        net.mutate("c", TestState.increment())
        net.run()
        assert [r.node_id for r in a.stale_peers(5.0)] == ["b"]

    def test_metrics_counters(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"])
        net.run()
        for _ in range(3):
            net.mutate("a", TestDeltaState.bump("k", 1), with_delta=True)
        net.run()
        a, b = net.engine("a").metrics(), net.engine("b").metrics()
        assert isinstance(a, StateSyncMetrics)
        assert a.total_mutations == 3
        assert a.deltas_sent == 3
        assert b.deltas_received == 3
        assert a.snapshots_sent >= 1  # join exchange
        assert b.snapshots_received >= 1
        assert a.bytes_sent > 0 and b.bytes_received > 0
        assert a.sync_failures == b.sync_failures == 0
        assert a.feed_batches_sent == 0
        assert net.engine("a").metrics(4).feed_batches_sent == 4

    def test_pull_request_bytes_count_as_sent(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        net.clock.advance(10.0)
        before = net.engine("a").metrics().bytes_sent
        mark = len(net.log)
        net.query("a", 1, 1.0)
        sent = sum(len(data) for s, _, data in net.log[mark:] if s == "a")
        assert net.engine("a").metrics().bytes_sent == before + sent

    @pytest.mark.parametrize(
        ("peers", "bad", "expected"),
        [
            (0, 0, HealthStatus.HEALTHY),
            (4, 0, HealthStatus.HEALTHY),
            (4, 1, HealthStatus.DEGRADED),
            (4, 2, HealthStatus.DEGRADED),  # exactly half is not more than half
            (4, 3, HealthStatus.UNHEALTHY),
            (3, 2, HealthStatus.UNHEALTHY),
            (1, 1, HealthStatus.UNHEALTHY),
            (2, 1, HealthStatus.DEGRADED),
        ],
    )
    @pytest.mark.parametrize("how", ["stale", "failing", "never_synced", "mixed"])
    def test_health_grading(self, peers: int, bad: int, expected: HealthStatus, how: str) -> None:
        rows = []
        for i in range(peers):
            node = f"n{i}"
            if i >= bad:
                rows.append(status_row(node, synced=9.0))
            elif how == "stale" or (how == "mixed" and i % 2):
                rows.append(status_row(node, synced=1.0))
            elif how == "failing" or how == "mixed":
                rows.append(status_row(node, synced=9.0, failures=2))
            else:
                rows.append(status_row(node, synced=None))
        health = grade_state("s", rows, now=10.0, default_staleness=5.0)
        assert health.status is expected
        assert health.healthy_peers == peers - bad
        assert health.stale_peers + health.failing_peers == bad
        if how == "failing":
            assert health.failing_peers == bad

    def test_a_peer_behind_its_announced_generation_is_stale(self) -> None:
        behind = PeerSyncStatus(
            "b", "s", Generation(1, 1), Generation(1, 2), 1, 0, 10.0, None, None, None
        )
        assert behind.is_stale(10.0, 5.0)
        health = grade_state("s", [behind], now=10.0, default_staleness=5.0)
        assert health.status is HealthStatus.UNHEALTHY
        pulled = grade_state("s", [behind], now=10.0, default_staleness=5.0, pullable=True)
        assert pulled.status is HealthStatus.HEALTHY  # the next query pulls it

    def test_an_idle_peer_is_healthy_without_a_promise_of_contact(self) -> None:
        net = EngineNet(TestState, ["a", "b", "c", "d"], StateConfig(default_staleness=5.0))
        net.run()
        a = net.engine("a")
        assert a.health().status is HealthStatus.HEALTHY
        assert a.health().healthy_peers == 3
        net.clock.advance(60.0)  # nobody mutates: the views are still the owners' states
        assert a.health().status is HealthStatus.HEALTHY
        assert SystemHealth.of([]).status is HealthStatus.HEALTHY

    def test_missing_periodic_syncs_make_a_peer_stale(self) -> None:
        config = StateConfig(
            default_staleness=5.0, sync_strategy=SyncStrategy(periodic_full_sync=2.0)
        )
        net = EngineNet(TestState, ["a", "b", "c", "d"], config)
        net.run()
        net.link_filter = lambda s, d, data: s not in ("c", "d")  # their syncs stop coming
        net.advance(6.0)
        health = net.engine("a").health()
        assert (health.healthy_peers, health.stale_peers) == (1, 2)
        assert health.status is HealthStatus.UNHEALTHY
        net.link_filter = lambda s, d, data: s != "d"
        net.advance(3.0)
        health = net.engine("a").health()
        assert (health.healthy_peers, health.stale_peers) == (2, 1)
        assert health.status is HealthStatus.DEGRADED
        system = SystemHealth.of([health, net.engine("b").health()])
        assert system.status is HealthStatus.DEGRADED

    def test_contact_is_due_within_two_sync_intervals_when_they_exceed_the_bound(self) -> None:
        rows = [status_row("b", synced=0.0)]
        assert grade_state("s", rows, now=7.0, default_staleness=5.0).stale_peers == 1
        slow = grade_state("s", rows, now=7.0, default_staleness=5.0, contact_within=8.0)
        assert slow.status is HealthStatus.HEALTHY
        idle = grade_state("s", rows, now=1e6, default_staleness=5.0, contact_within=None)
        assert idle.status is HealthStatus.HEALTHY

    def test_failing_pulls_make_a_peer_failing(self) -> None:
        net = EngineNet(TestState, ["a", "b"], StateConfig(pull_timeout=1.0))
        net.run()
        net.clock.advance(10.0)
        net.link_filter = lambda s, d, data: False
        net.query("a", 1, 1.0)
        net.advance(1.5)
        health = net.engine("a").health()
        assert health.failing_peers == 1
        assert health.status is HealthStatus.UNHEALTHY


# -- security ------------------------------------------------------------------------


class TestSecurity:
    SECRET = b"cluster-secret-0123456789"

    def test_signed_cluster_converges(self) -> None:
        net = EngineNet(TestDeltaState, ["a", "b"], secret=self.SECRET)
        net.mutate("a", TestDeltaState.bump("k", 1), with_delta=True)
        net.run()
        assert_converged(net)

    @pytest.mark.parametrize("codec", [WireCodec(), WireCodec(b"wrong-secret")])
    def test_forged_or_unsigned_bytes_are_dropped(self, codec: WireCodec) -> None:
        net = EngineNet(TestState, ["a", "b"], secret=self.SECRET)
        net.run()
        b = net.engine("b")
        view, metrics = peer_view(net, "b", "a"), b.metrics()
        forged = [
            FullSnapshot(
                "test_state",
                "a",
                view.generation.next(),
                1,
                TestState(value=666).serialize_state(),
                0,
                0,
            ),
            DeltaUpdate("test_state", "a", view.generation.next(), 1, b"\x80", 0, 0),
            RequestSnapshot("test_state", "a", 5),
            BatchedChangeFeed(
                "a", (ChangeNotification("test_state", "a", view.generation.next()),)
            ),
        ]
        for message in forged:
            net.deliver("b", codec.encode(message))
        router = net.nodes["b"].router
        assert router.drops == {"unauthenticated": len(forged)}
        assert peer_view(net, "b", "a") is view
        assert b.metrics() == metrics
        assert not net.queue


# -- the pull tracker ----------------------------------------------------------------


class TestPullTracker:
    def make(self, clock: TestClock | None = None) -> tuple[PullTracker, ViewTable]:
        views, peers = ViewTable("a"), Membership()
        for node in ("b", "c"):
            peers.join(node)
        config = StateConfig(pull_timeout=2.0)
        pulls = PullTracker(
            "s",
            "a",
            clock or TestClock(),
            WireCodec(),
            config,
            views,
            peers,
            PeerStatuses(),
            MetricCounters(),
        )
        return pulls, views

    def test_one_pull_per_peer(self) -> None:
        pulls, _ = self.make()
        assert len(pulls.ensure("b", probe=False)) == 2
        assert pulls.in_flight("b")
        assert pulls.ensure("b", probe=False) == []
        assert pulls.ensure("b", probe=True) == []
        assert CancelTimer(PullTimer("b", 1)) in pulls.settle("b", 1, None)
        assert not pulls.in_flight("b")

    def test_a_real_pull_replaces_an_in_flight_probe(self) -> None:
        pulls, _ = self.make()
        pulls.ensure("b", probe=True)
        actions = pulls.ensure("b", probe=False)
        assert CancelTimer(PullTimer("b", 1)) in actions
        assert StartTimer(PullTimer("b", 2), 2.0) in actions
        assert pulls.settle("b", 1, None) == []  # the replaced probe is over already
        assert pulls.in_flight("b")
        pulls.settle("b", 2, None)
        assert not pulls.in_flight("b")

    def test_settling_another_request_changes_nothing(self) -> None:
        pulls, _ = self.make()
        pulls.ensure("b", probe=False)
        assert pulls.settle("b", 99, "lost") == []
        assert pulls.settle("c", 1, "lost") == []
        assert pulls.in_flight("b")

    def test_forget_cancels_and_settles(self) -> None:
        clock = TestClock()
        pulls, views = self.make(clock)
        for node in ("b", "c"):
            views.put(StateViewObject(Generation(1, 1), 1, None, 0, 0, 0.0, None, node))
        clock.advance(5.0)
        assert len(pulls.start_query(7, 1.0)) == 4
        actions = pulls.forget("b")
        assert CancelTimer(PullTimer("b", 1)) in actions
        assert not pulls.in_flight("b")
        finished = pulls.timed_out(PullTimer("c", 2))
        assert finished[-1] == FinishQuery(7, (("c", "no reply within pull_timeout=2.0s"),))


# -- events not covered elsewhere ----------------------------------------------------


class TestEvents:
    def test_query_started_for_an_engine_without_peers(self) -> None:
        net = EngineNet(TestState, ["a"])
        assert net.engine("a").handle(QueryStarted(1, 0.0)) == [FinishQuery(1, ())]

    def test_periodic_timer_without_peers_sends_nothing(self) -> None:
        net = EngineNet(
            TestState, ["a"], StateConfig(sync_strategy=SyncStrategy.periodic_only(1.0))
        )
        assert net.engine("a").handle(TimerFired(PERIODIC_SYNC)) == []

    def test_unknown_timer_key_is_ignored(self) -> None:
        net = EngineNet(TestState, ["a"])
        assert net.engine("a").handle(TimerFired(("nonsense", 1, 2, 3))) == []
        assert net.engine("a").handle(TimerFired(("pull", 5, "x"))) == []

    def test_events_name_their_source(self) -> None:
        snap = FullSnapshot("s", "b", Generation(1, 1), 1, b"", 0, 0)
        assert MessageReceived(snap).source_node == "b"
        assert MessageReceived(SnapshotReply(1, snap)).source_node == "b"
        assert MessageReceived(RequestSnapshot("s", "c", 1)).source_node == "c"
        note = ChangeNotification("s", "d", Generation(1, 1))
        assert ChangeAnnounced(note).source_node == "d"

    def test_view_table_is_the_published_source(self) -> None:
        net = EngineNet(TestState, ["a", "b"])
        net.run()
        engine = net.engine("a")
        assert engine.view_table.published is engine.published

    def test_peer_joined_for_itself_is_ignored(self) -> None:
        net = EngineNet(TestState, ["a"])
        assert net.engine("a").handle(PeerJoined("a")) == []
        assert net.engine("a").peers == frozenset()


class TestCoalescedQueriesKeepTheirOwnBound:
    """Two queries share one pull, but each is answered against its own bound."""

    def test_a_push_after_the_request_satisfies_only_the_looser_query(self) -> None:
        from dstate_core.wire._messages import SnapshotReply

        net = EngineNet(TestState, ["a", "b"], StateConfig(pull_timeout=2.0))
        net.run()
        net.advance(5.0)  # every view is now 5 s old
        # b's replies are lost; its pushes still arrive.
        net.link_filter = lambda src, dst, data: (
            not (src == "b" and isinstance(WireCodec().decode(data), SnapshotReply))
        )
        at_once = net.query("a", 1, 10.0)  # 5 s old views are fresh enough: no pull
        assert at_once is not None
        assert at_once.failures == ()
        assert net.query("a", 2, 1.0) is None  # stale: pulls b
        net.advance(0.5)
        net.mutate("b", TestState.increment(1))  # a push refreshes a's view of b at t=5.5
        net.run()
        net.advance(1.0)
        assert net.query("a", 3, 0.2) is None  # coalesces onto the pull started at t=5.0
        net.advance(1.0)  # the pull times out at t=7.0
        finished = net.nodes["a"].finished
        assert finished[2].failures == ()  # 1 s bound from t=5.0: the t=5.5 push is enough
        assert [node for node, _ in finished[3].failures] == ["b"]  # 0.2 s from t=6.5: not
