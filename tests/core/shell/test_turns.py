"""EngineTurns: one turn at a time; a delivery waits behind those already queued."""

from __future__ import annotations

import threading

from dstate_core.shell._turns import EngineTurns


def test_one_turn_at_a_time_and_the_holder_knows_it() -> None:
    turns = EngineTurns()
    assert turns.take()
    assert turns.mine()
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(turns.take(0.05)))
    thread.start()
    thread.join()
    assert other == [False]  # another thread waited and gave up
    turns.give_back()
    assert not turns.mine()
    assert turns.take(0.05)
    turns.give_back()


def test_take_if_idle_refuses_a_held_turn_or_a_queued_delivery() -> None:
    turns = EngineTurns()
    turns.take()
    assert not threading_result(turns.take_if_idle)
    turns.give_back()
    turns.delivery_queued()
    assert not turns.take_if_idle()  # an earlier delivery waits for the actor
    assert turns.take(0.05)  # ...and the refusal gave the lock back
    turns.delivery_taken()
    turns.give_back()
    assert turns.take_if_idle()
    assert turns.mine()
    turns.give_back()


def threading_result(fn: object) -> bool:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(fn()))  # type: ignore[operator]
    thread.start()
    thread.join()
    return result[0]


def test_a_delivery_waits_behind_one_queued_for_a_busy_actor() -> None:
    """On a threaded runtime a delivery is handled at once only if none waits for the
    actor; here the first waits (the turn is held), so the second must too."""
    from dstate_core.engine import MessageReceived
    from dstate_core.testing import TestDeltaState, local_cluster
    from dstate_core.wire import DeltaUpdate

    with local_cluster(["a", "b"]) as cluster:
        cluster.node("b").runtime.threaded = True  # type: ignore[attr-defined]
        a = cluster.node("a").register(TestDeltaState)
        b = cluster.node("b").register(TestDeltaState)
        cluster.run_until_idle()
        held = b.snapshot()["a"].generation

        def update(age: int, total: int) -> MessageReceived:
            delta = TestDeltaState.Delta(key="k", value=total, total=total)
            return MessageReceived(
                DeltaUpdate(
                    "test_delta_state",
                    "a",
                    held.__class__(held.incarnation, age),
                    1,
                    TestDeltaState.serialize_delta(delta),
                    a.state.created_time,
                    a.state.modified_time,
                )
            )

        assert b._turns.take()  # the actor is busy
        b._deliver(update(held.age + 1, 1))  # waits in the actor's mailbox
        b._turns.give_back()
        b._deliver(update(held.age + 2, 2))  # must not overtake it
        cluster.run_until_idle()

        assert b.metrics().age_gaps_detected == 0
        assert b.snapshot()["a"].generation.age == held.age + 2
