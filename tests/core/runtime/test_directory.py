"""Directory: peers join once reachable *and* their group table is known; group tables."""

from __future__ import annotations

import logging
import threading

import msgpack
import pytest

from dstate_core.runtime import Directory, decode_groups, encode_groups
from dstate_core.runtime._protocol import ClusterEvent, NodeJoined, NodeLeft


class TestGroupTables:
    def test_round_trip(self) -> None:
        table = {"g": ["b", "a"], "h": []}
        assert decode_groups(encode_groups(table)) == {"g": ("a", "b"), "h": ()}

    @pytest.mark.parametrize(
        "data",
        [
            b"\xc1",
            msgpack.packb([1, 2]),
            msgpack.packb({"g": "not a list"}),
            msgpack.packb({"g": [1]}),
            msgpack.packb({"g": [""]}),
            msgpack.packb({1: ["a"]}, strict_types=False),
        ],
        ids=["garbage", "not-a-map", "not-a-list", "not-str", "empty-name", "int-key"],
    )
    def test_malformed_tables_raise_value_error(self, data: bytes) -> None:
        with pytest.raises(ValueError, match=r"group|table"):
            decode_groups(data)


class TestMembership:
    def test_a_peer_joins_once_view_and_table_agree(self) -> None:
        d = Directory("me")
        events: list[ClusterEvent] = []
        d.subscribe(events.append)
        assert d.apply_view([("b", "1"), ("me", "1")]) == ["b"]
        assert events == []
        assert d.remote_members("g") == []
        d.apply_groups("b", "1", {"g": ("x",)})
        assert events == [NodeJoined("b")]
        assert d.remote_members("g") == [("b", "x")]
        assert d.joined() == {"b": "1"}
        d.apply_groups("me", "1", {"g": ("self",)})  # our own table is ignored
        assert d.remote_members("g") == [("b", "x")]

    def test_a_table_from_outside_the_view_is_refused(self) -> None:
        d = Directory("me")
        events: list[ClusterEvent] = []
        d.subscribe(events.append)
        assert d.apply_groups("b", "1", {"g": ("x",)}) is False
        d.apply_view([("b", "2")])
        assert d.apply_groups("b", "1", {"g": ("x",)}) is False  # an old incarnation
        assert d.apply_groups("me", "1", {}) is False
        d.apply_view([("b", "1")])
        assert events == [NodeLeft("b")]  # incarnation 2 went (it never joined)
        assert d.remote_members("g") == []  # nothing was kept: b joins once it sends again
        assert d.apply_groups("b", "1", {"g": ("x",)}) is True
        assert events == [NodeLeft("b"), NodeJoined("b")]

    def test_a_peer_that_leaves_the_view_loses_its_table(self) -> None:
        d = Directory("me")
        d.apply_view([("b", "1"), ("c", "1")])
        assert d.apply_groups("b", "1", {"g": ("x",)})
        assert d.apply_groups("c", "1", {"g": ("y",)})
        events: list[ClusterEvent] = []
        d.subscribe(events.append)
        assert d.apply_view([("c", "1")]) == []
        assert d.remote_members("g") == [("c", "y")]
        assert d._tables.keys() == {"c"}
        # Back in the same incarnation: new to the view, and not joined until its table comes.
        assert d.apply_view([("b", "1"), ("c", "1")]) == ["b"]
        assert events == [NodeJoined("b"), NodeJoined("c"), NodeLeft("b")]
        assert d.joined() == {"c": "1"}
        assert d.remote_members("g") == [("c", "y")]

    def test_a_new_incarnation_leaves_then_joins_again(self) -> None:
        d = Directory("me")
        d.apply_view([("b", "1")])
        d.apply_groups("b", "1", {"g": ("x",)})
        events: list[ClusterEvent] = []
        d.subscribe(events.append)
        assert events == [NodeJoined("b")]
        assert d.apply_view([("b", "2")]) == ["b"]
        assert events == [NodeJoined("b"), NodeLeft("b")]
        assert d.remote_members("g") == []  # the old table is not the new incarnation's
        d.apply_groups("b", "2", {"g": ("y",)})
        assert events == [NodeJoined("b"), NodeLeft("b"), NodeJoined("b")]
        assert d.remote_members("g") == [("b", "y")]

    def test_leaving_the_view_reports_node_left_even_if_never_joined(self) -> None:
        d = Directory("me")
        events: list[ClusterEvent] = []
        d.subscribe(events.append)
        d.apply_view([("b", "1")])
        d.apply_view([])
        assert events == [NodeLeft("b")]

    def test_unsubscribe_and_a_raising_subscriber(self, caplog: pytest.LogCaptureFixture) -> None:
        d = Directory("me")

        def explode(event: ClusterEvent) -> None:
            raise RuntimeError("boom")

        d.subscribe(explode)
        events: list[ClusterEvent] = []
        sid = d.subscribe(events.append)
        with caplog.at_level(logging.ERROR, logger="dstate.thespian"):
            d.apply_view([("b", "1")])
            d.apply_groups("b", "1", {})
        assert events == [NodeJoined("b")]
        assert "subscriber" in caplog.text
        d.unsubscribe(sid)
        d.unsubscribe(sid)
        d.apply_view([])
        assert events == [NodeJoined("b")]
        d.clear_subscribers()

    def test_wait_settled(self) -> None:
        d = Directory("me")
        assert not d.wait_settled(0.01)  # no view yet
        d.apply_view([("b", "1")], complete=False)
        d.apply_groups("b", "1", {})
        assert not d.wait_settled(0.01)  # still waiting for the roster
        d.apply_view([("b", "1"), ("c", "1")])
        assert not d.wait_settled(0.01, expect=["b"])  # c has not joined
        timer = threading.Timer(0.05, d.apply_groups, ("c", "1", {}))
        timer.start()
        assert d.wait_settled(2.0, expect=["b"])
        assert d.reachable() == ["b", "c"]
        assert not d.wait_settled(0.01, expect=["zzz"])
