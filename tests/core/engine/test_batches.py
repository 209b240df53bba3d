"""Mutations committed together: prepared one on another, saved once, sent as less.

A batch must end where the same mutations committed one by one end (the own
state, every peer's view, what is pending), while sending fewer frames:
consecutive deltas leave as one :class:`DeltaRun`, and a snapshot that a later
one replaces stays home.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstate_core.engine import MessageReceived, SendTo
from dstate_core.engine._engine import Mutation, ShardEngine
from dstate_core.model._config import StateConfig
from dstate_core.model._generation import Generation
from dstate_core.testing import TestDeltaState, TestState
from dstate_core.testing._states import UrgentDeltaState
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import DeltaRun, DeltaUpdate, FullSnapshot, RequestSnapshot

from .engine_net import EngineNet

WALL = 1_700_000_000_000


def prepare_all(engine: ShardEngine[Any], fns: list[Any], with_delta: bool) -> list[Mutation[Any]]:
    """Each mutation prepared on the one before, as the shard shell does for a batch."""
    batch: list[Mutation[Any]] = []
    for fn in fns:
        batch.append(engine.mutate(fn, with_delta=with_delta, after=batch[-1] if batch else None))
    return batch


def commit_together(net: EngineNet, node: str, fns: list[Any], *, with_delta: bool) -> None:
    engine = net.engine(node)
    net.apply(node, engine.commit_batch(prepare_all(engine, fns, with_delta)), engine.name)


def bumps(count: int, key: str = "k") -> list[Any]:
    return [TestDeltaState.bump(f"{key}{i}", i + 1) for i in range(count)]


def test_consecutive_deltas_leave_as_one_run_per_peer() -> None:
    net = EngineNet(TestDeltaState, ["a", "b", "c"])
    net.run()
    mark = len(net.log)
    before = net.engine("a").metrics()

    commit_together(net, "a", bumps(3), with_delta=True)

    sent = [net.codec.decode(data) for _, _, data in net.log[mark:]]
    assert [type(m) for m in sent] == [DeltaRun, DeltaRun]
    run = sent[0]
    assert isinstance(run, DeltaRun)
    assert len(run.deltas) == 3
    assert run.generation.age == 1
    after = net.engine("a").metrics()
    assert after.deltas_sent - before.deltas_sent == 6  # 3 deltas to each of 2 peers
    net.run()
    for peer in ("b", "c"):
        assert net.view(peer, "a") == net.engine("a").published.views["a"].value
        assert net.engine(peer).metrics().age_gaps_detected == 0


def test_a_batch_of_simple_mutations_sends_only_its_last_snapshot() -> None:
    net = EngineNet(TestState, ["a", "b"])
    net.run()
    mark = len(net.log)
    before = net.engine("a").metrics().snapshots_sent

    commit_together(net, "a", [TestState.increment(i) for i in (1, 2, 3)], with_delta=False)

    [sent] = [net.codec.decode(data) for _, _, data in net.log[mark:]]
    assert isinstance(sent, FullSnapshot)
    assert sent.generation.age == 3
    assert net.engine("a").metrics().snapshots_sent - before == 1
    assert net.engine("a").metrics().total_mutations == 3
    net.run()
    assert net.view("b", "a").value == 6


def test_every_own_view_of_a_batch_is_notified_in_order() -> None:
    net = EngineNet(TestState, ["a"])
    net.nodes["a"].notified.clear()
    commit_together(net, "a", [TestState.increment()] * 3, with_delta=False)
    assert [n.new.generation.age for n in net.nodes["a"].notified if n.new] == [1, 2, 3]


def test_a_run_over_the_size_cap_leaves_as_one_frame_per_delta() -> None:
    one = len(WireCodec().encode(_delta_update(Generation(WALL, 1))))
    net = EngineNet(TestDeltaState, ["a", "b"])
    # Room for one delta frame, not for a run of three.
    net.codec = WireCodec(max_message_bytes=one + one // 2)
    for engine_holder in net.nodes.values():
        for engine in engine_holder.engines.values():
            engine._publisher._codec = net.codec
    net.run()
    mark = len(net.log)
    commit_together(net, "a", bumps(3), with_delta=True)
    sent = [net.codec.decode(data) for _, _, data in net.log[mark:]]
    assert [type(m) for m in sent] == [DeltaUpdate] * 3
    net.run()
    assert net.view("b", "a") == net.engine("a").published.views["a"].value


def test_a_batch_must_be_committed_on_the_state_it_was_prepared_on() -> None:
    net = EngineNet(TestState, ["a"])
    engine = net.engine("a")
    first, second = prepare_all(engine, [TestState.increment()] * 2, with_delta=False)
    with pytest.raises(RuntimeError, match="cannot be committed"):
        engine.commit_batch([second])
    engine.commit_batch([first, second])
    assert engine.own.value.value == 2


# -- the receiving side ---------------------------------------------------------------


def _delta_update(generation: Generation, key: str = "k", total: int = 1) -> DeltaUpdate:
    payload = TestDeltaState.serialize_delta(TestDeltaState.Delta(key=key, value=1, total=total))
    return DeltaUpdate("test_delta_state", "a", generation, 1, payload, WALL, WALL)


def _run_from(net: EngineNet, first_age: int, count: int) -> DeltaRun:
    incarnation = net.engine("a").own.generation.incarnation
    payloads = [
        (
            TestDeltaState.serialize_delta(TestDeltaState.Delta(key=f"r{i}", value=1, total=i)),
            WALL,
        )
        for i in range(count)
    ]
    return DeltaRun(
        "test_delta_state", "a", Generation(incarnation, first_age), 1, WALL, tuple(payloads)
    )


def test_a_run_that_starts_past_the_view_is_one_gap_and_one_pull() -> None:
    net = EngineNet(TestDeltaState, ["a", "b"])
    net.run()
    b = net.engine("b")
    held = b.published.views["a"]

    actions = b.handle(MessageReceived(_run_from(net, held.generation.age + 2, 3)))

    assert b.metrics().age_gaps_detected == 1
    assert b.published.views["a"] is held
    pulls = [a for a in actions if isinstance(a, SendTo)]
    assert len(pulls) == 1
    assert isinstance(net.codec.decode(pulls[0].data), RequestSnapshot)


def test_a_run_that_overlaps_the_view_applies_only_what_is_new() -> None:
    net = EngineNet(TestDeltaState, ["a", "b"])
    net.run()
    b = net.engine("b")
    age = b.published.views["a"].generation.age
    first = b.handle(MessageReceived(_run_from(net, age + 1, 2)))
    assert b.published.views["a"].generation.age == age + 2

    b.handle(MessageReceived(_run_from(net, age + 1, 4)))

    view = b.published.views["a"]
    assert view.generation.age == age + 4
    assert b.metrics().stale_deltas_discarded == 2
    assert b.metrics().age_gaps_detected == 0
    assert first  # the first run notified its views


def test_a_run_from_a_non_member_changes_nothing() -> None:
    net = EngineNet(TestDeltaState, ["b"])
    b = net.engine("b")
    run = DeltaRun("test_delta_state", "a", Generation(WALL, 1), 1, WALL, ((b"x", WALL),) * 3)
    assert b.handle(MessageReceived(run)) == []
    assert "a" not in b.published.views
    assert b.drops == {"unknown_node": 1}


# -- a batch ends where one by one ends -----------------------------------------------

PREFIXES = ["", "now:", "late:", "quiet:"]
changes = st.lists(
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from("xyz"), st.integers(1, 9)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=changes, second=changes)
def test_a_batch_converges_like_its_mutations_one_by_one(
    first: list[tuple[str, str, int]], second: list[tuple[str, str, int]]
) -> None:
    """Two batches with random urgencies (a delayed window may span them): every peer's
    view, the owner's state and what is left pending match one-by-one commits, and the
    batches send no more snapshots and frames than one by one."""
    ends = []
    sent = []
    for together in (True, False):
        net = EngineNet(UrgentDeltaState, ["a", "b", "c"], StateConfig())
        net.run()
        for batch in (first, second):
            fns = [UrgentDeltaState.bump(p + k, v) for p, k, v in batch]
            if together:
                commit_together(net, "a", fns, with_delta=True)
            else:
                for fn in fns:
                    net.mutate("a", fn, with_delta=True)
            net.run()
        seen_now = {peer: _plain(net.view(peer, "a")) for peer in ("b", "c")}
        net.advance(1.0)  # delayed windows close
        seen_later = {peer: _plain(net.view(peer, "a")) for peer in ("b", "c")}
        gaps = sum(net.engine(p).metrics().age_gaps_detected for p in ("b", "c"))
        ends.append((_plain(net.engine("a").own.value), seen_now, seen_later, gaps))
        sent.append((net.engine("a").metrics().snapshots_sent, len(net.log)))
    assert ends[0] == ends[1]
    assert sent[0][0] <= sent[1][0] and sent[0][1] <= sent[1][1]


def _plain(value: Any) -> Any:
    return None if value is None else value.model_dump()
