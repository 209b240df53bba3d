"""ChangeFeedAggregator: dedup per (state, source), one batch per interval."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dstate_core.engine import FEED_FLUSH, ChangeFeedAggregator
from dstate_core.engine._actions import Broadcast, StartTimer
from dstate_core.model._config import ChangeFeedConfig
from dstate_core.model._generation import Generation
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import BatchedChangeFeed, ChangeNotification

CODEC = WireCodec()


def note(state: str, age: int, source: str = "a", incarnation: int = 1) -> ChangeNotification:
    return ChangeNotification(state, source, Generation(incarnation, age))


def batches(actions: list[object]) -> list[BatchedChangeFeed]:
    out = []
    for action in actions:
        assert isinstance(action, Broadcast)
        message = CODEC.decode(action.data)
        assert isinstance(message, BatchedChangeFeed)
        out.append(message)
    return out


@pytest.fixture
def feed() -> ChangeFeedAggregator:
    return ChangeFeedAggregator("a", ChangeFeedConfig(batch_interval=0.25), CODEC)


class TestRecord:
    def test_first_notification_starts_the_batch_timer(self, feed: ChangeFeedAggregator) -> None:
        assert feed.record(note("s", 1)) == [StartTimer(FEED_FLUSH, 0.25)]
        assert feed.pending == 1

    def test_later_notifications_do_not_restart_it(self, feed: ChangeFeedAggregator) -> None:
        feed.record(note("s", 1))
        assert feed.record(note("s", 2)) == []
        assert feed.record(note("t", 1)) == []

    def test_highest_generation_wins_per_state_and_source(self, feed: ChangeFeedAggregator) -> None:
        feed.record(note("s", 3))
        feed.record(note("s", 5))
        feed.record(note("s", 4))
        feed.record(note("s", 1, incarnation=0))
        feed.record(note("t", 2))
        assert feed.pending == 2
        [batch] = batches(feed.flush())
        assert set(batch.notifications) == {note("s", 5), note("t", 2)}
        assert batch.source_node == "a"


class TestFlush:
    def test_one_batch_for_all_states(self, feed: ChangeFeedAggregator) -> None:
        for state in ("x", "y", "z"):
            feed.record(note(state, 1))
        [batch] = batches(feed.flush())
        assert {n.state_name for n in batch.notifications} == {"x", "y", "z"}
        assert feed.batches_sent == 1
        assert feed.pending == 0
        for state in ("x", "y", "z"):
            assert feed.batches_for(state) == 1
        assert feed.batches_for("other") == 0

    def test_empty_flush_sends_nothing(self, feed: ChangeFeedAggregator) -> None:
        assert feed.flush() == []
        assert feed.batches_sent == 0

    def test_after_a_flush_the_next_note_starts_a_new_batch(
        self, feed: ChangeFeedAggregator
    ) -> None:
        feed.record(note("s", 1))
        feed.flush()
        assert feed.record(note("s", 2)) == [StartTimer(FEED_FLUSH, 0.25)]
        [batch] = batches(feed.flush())
        assert batch.notifications == (note("s", 2),)
        assert feed.batches_sent == 2
        assert feed.batches_for("s") == 2

    def test_an_oversized_batch_is_split(self) -> None:
        small = WireCodec(max_message_bytes=400)
        feed = ChangeFeedAggregator("a", ChangeFeedConfig(1.0), small)
        notes = [note(f"state-{i:03d}", i + 1) for i in range(40)]
        for n in notes:
            feed.record(n)
        actions = feed.flush()
        assert len(actions) > 1
        got = []
        for action in actions:
            assert isinstance(action, Broadcast)
            assert len(action.data) <= 400
            message = small.decode(action.data)
            assert isinstance(message, BatchedChangeFeed)
            got.extend(message.notifications)
        assert sorted(got, key=lambda n: n.state_name) == notes
        assert feed.batches_sent == len(actions)
        assert feed.batches_for("state-000") == 1

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["s", "t", "u"]),
                st.sampled_from(["a", "b"]),
                st.integers(0, 3),
                st.integers(0, 9),
            ),
            min_size=1,
            max_size=30,
        )
    )
    def test_batch_holds_the_max_per_key(self, recorded: list[tuple[str, str, int, int]]) -> None:
        feed = ChangeFeedAggregator("a", ChangeFeedConfig(1.0), CODEC)
        expected: dict[tuple[str, str], Generation] = {}
        timers = 0
        for state, source, inc, age in recorded:
            generation = Generation(inc, age)
            timers += len(feed.record(ChangeNotification(state, source, generation)))
            key = (state, source)
            expected[key] = max(expected.get(key, generation), generation)
        assert timers == 1
        [batch] = batches(feed.flush())
        got = {(n.state_name, n.source_node): n.generation for n in batch.notifications}
        assert got == expected
        assert len(batch.notifications) == len(expected)
