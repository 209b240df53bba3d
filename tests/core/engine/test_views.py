"""ViewTable and PublishedViews: O(1) freshness summary, immutability."""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dstate_core.engine._views import PublishedViews, ViewTable
from dstate_core.model._generation import Generation, StateViewObject

OWN = "own"
NODES = [OWN, "a", "b", "c", "d"]


def view(
    node: str, synced_at: float, *, age: int = 1, pending: Generation | None = None, value: Any = 0
) -> StateViewObject[Any]:
    return StateViewObject(Generation(7, age), 1, value, 0, 0, synced_at, pending, node)


class ViewTableMachine(RuleBasedStateMachine):
    """Random put/remove/pending sequences, checked against a brute-force model."""

    def __init__(self) -> None:
        super().__init__()
        self.table = ViewTable(OWN)
        self.model: dict[str, StateViewObject[Any]] = {}
        self.now = 0.0
        self.age = 0

    @rule(dt=st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(node=st.sampled_from(NODES), pending=st.booleans())
    def put(self, node: str, pending: bool) -> None:
        self.age += 1
        mark = Generation(7, self.age + 1) if pending else None
        new = view(node, self.now, age=self.age, pending=mark, value=self.age)
        old = self.table.put(new)
        assert old == self.model.get(node)
        self.model[node] = new

    @rule(node=st.sampled_from(NODES), pending=st.booleans())
    def mark_pending(self, node: str, pending: bool) -> None:
        """Like the change feed: same synced_at, only the pending mark changes."""
        current = self.model.get(node)
        if current is None:
            return
        self.age += 1
        mark = Generation(7, self.age) if pending else None
        new = StateViewObject(
            current.generation,
            current.wire_version,
            current.value,
            current.created_time,
            current.modified_time,
            current.synced_at,
            mark,
            node,
        )
        self.table.put(new)
        self.model[node] = new

    @rule(node=st.sampled_from(NODES))
    def remove(self, node: str) -> None:
        assert self.table.remove(node) == self.model.pop(node, None)

    @invariant()
    def summary_matches_brute_force(self) -> None:
        published = self.table.published
        peers = [v for n, v in self.model.items() if n != OWN]
        oldest = min((v.synced_at for v in peers), default=math.inf)
        pending = sum(1 for v in peers if v.pending_remote_generation is not None)
        assert published.oldest_synced_at == oldest
        assert published.pending == pending
        assert dict(published.views) == self.model

    @invariant()
    def stale_matches_brute_force(self) -> None:
        for max_staleness in (0.0, 0.5, 2.0, math.inf):
            expected = {
                n
                for n, v in self.model.items()
                if n != OWN
                and (self.now - v.synced_at > max_staleness or v.pending_remote_generation)
            }
            stale = self.table.stale(self.now, max_staleness)
            assert set(stale) == expected
            assert len(stale) == len(expected)
            times = [self.model[n].synced_at for n in stale]
            assert times == sorted(times), "stale() lists the oldest first"
            fresh = self.table.published.is_fresh(self.now, max_staleness)
            assert fresh == (not expected)

    @invariant()
    def peers_oldest_first(self) -> None:
        order = list(self.table.peers())
        assert set(order) == set(self.model) - {OWN}
        times = [self.model[n].synced_at for n in order]
        assert times == sorted(times)


ViewTableMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestViewTableMachine = ViewTableMachine.TestCase


class TestPublishedSnapshot:
    def test_is_read_only(self) -> None:
        table = ViewTable(OWN)
        table.put(view("a", 1.0))
        published = table.published
        with pytest.raises(TypeError):
            published.views["b"] = view("b", 1.0)  # type: ignore[index]

    def test_later_puts_and_removes_do_not_change_it(self) -> None:
        table = ViewTable(OWN)
        table.put(view("a", 1.0, value="first"))
        before = table.published
        table.put(view("a", 2.0, value="second", pending=Generation(7, 9)))
        table.put(view("b", 2.0))
        table.remove("a")
        assert dict(before.views) == {"a": view("a", 1.0, value="first")}
        assert before.oldest_synced_at == 1.0
        assert before.pending == 0
        after = table.published
        assert set(after.views) == {"b"}
        assert after is not before

    def test_empty_table_is_fresh(self) -> None:
        table = ViewTable(OWN)
        assert table.published.oldest_synced_at == math.inf
        assert table.published.is_fresh(1e9, 0.0)
        assert table.stale(1e9, 0.0) == []

    def test_own_entry_never_counts(self) -> None:
        table = ViewTable(OWN)
        table.put(view(OWN, 0.0, pending=Generation(9, 9)))
        assert table.published.oldest_synced_at == math.inf
        assert table.published.pending == 0
        assert table.stale(100.0, 1.0) == []
        assert OWN in table
        assert list(table.peers()) == []


class TestFreshness:
    def test_strictly_older_than_the_bound_is_stale(self) -> None:
        table = ViewTable(OWN)
        table.put(view("a", 1.0))
        assert table.stale(3.0, 2.0) == []
        assert table.published.is_fresh(3.0, 2.0)
        assert table.stale(3.5, 2.0) == ["a"]
        assert not table.published.is_fresh(3.5, 2.0)

    def test_pending_is_stale_at_any_bound(self) -> None:
        table = ViewTable(OWN)
        table.put(view("a", 5.0, pending=Generation(7, 3)))
        table.put(view("b", 5.0))
        assert table.stale(5.0, math.inf) == ["a"]
        assert not table.published.is_fresh(5.0, math.inf)
        table.put(view("a", 5.0))
        assert table.stale(5.0, math.inf) == []
        assert table.published.pending == 0

    def test_refresh_moves_a_peer_to_the_back(self) -> None:
        table = ViewTable(OWN)
        table.put(view("a", 1.0))
        table.put(view("b", 2.0))
        table.put(view("c", 3.0))
        table.put(view("a", 4.0))
        assert list(table.peers()) == ["b", "c", "a"]
        assert table.published.oldest_synced_at == 2.0
        assert table.stale(10.0, 6.5) == ["b", "c"]

    def test_summary_is_a_published_views(self) -> None:
        table = ViewTable(OWN)
        assert isinstance(table.published, PublishedViews)


def test_publishing_copies_once_per_change_for_the_first_reader() -> None:
    table = ViewTable(OWN)
    table.put(view("a", 1.0))
    table.put(view("b", 2.0))
    assert table.latest is None  # nothing copied yet: an update costs O(1)

    first = table.published
    assert table.latest is first and table.published is first  # read again: no copy
    assert dict(first.views) == {"a": view("a", 1.0), "b": view("b", 2.0)}

    table.put(view("a", 3.0, age=2))
    assert table.latest is None
    assert first.views["a"].generation.age == 1  # an old snapshot never changes
    assert table.published.views["a"].generation.age == 2


def test_readers_on_other_threads_always_see_a_consistent_snapshot() -> None:
    table = ViewTable(OWN)
    stop = threading.Event()
    bad: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                published = table.published
            except Exception as exc:  # a copy taken while the writer changed the map
                bad.append(repr(exc))
                continue
            peers = [v for n, v in published.views.items() if n != OWN]
            pending = sum(1 for v in peers if v.pending_remote_generation is not None)
            oldest = min((v.synced_at for v in peers), default=math.inf)
            if (published.pending, published.oldest_synced_at) != (pending, oldest):
                bad.append(f"{published} disagrees with its own views")

    readers = [threading.Thread(target=read) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    for reader in readers:
        reader.start()
    try:
        now = 0.0
        for step in range(20_000):
            node = NODES[1 + step % 4]
            now += 0.001
            if step % 7 == 0:
                table.remove(node)
            else:
                mark = Generation(7, step + 2) if step % 3 == 0 else None
                table.put(view(node, now, age=step + 1, pending=mark))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        sys.setswitchinterval(interval)
    assert not bad, bad[:3]
