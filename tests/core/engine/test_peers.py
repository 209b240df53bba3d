"""Membership: members, departed nodes and the floors that guard a rejoin."""

from __future__ import annotations

from dstate_core.engine._peers import Membership
from dstate_core.model._generation import Generation

G = Generation


def test_join_and_leave() -> None:
    peers = Membership()
    peers.join("b")
    assert "b" in peers and len(peers) == 1 and peers.members() == frozenset({"b"})
    assert peers.leave("b", G(100, 3), G(100, 5))
    assert "b" not in peers and peers.departed("b")
    assert not peers.leave("b", G(100, 9))  # not a member any more: nothing changes


def test_a_rejoin_keeps_the_newest_generation_held_or_seen_as_its_floor() -> None:
    peers = Membership()
    peers.join("b")
    assert peers.floor("b") is None
    peers.leave("b", G(100, 3), G(100, 5), None)
    peers.join("b")
    assert not peers.departed("b")
    assert peers.floor("b") == G(100, 5)


def test_leaving_again_without_a_view_keeps_the_old_floor() -> None:
    peers = Membership()
    peers.join("b")
    peers.leave("b", G(100, 7))
    peers.join("b")
    peers.leave("b", None, None)
    peers.join("b")
    assert peers.floor("b") == G(100, 7)


def test_a_dropped_view_sets_the_floor() -> None:
    peers = Membership()
    peers.join("b")
    peers.view_dropped("b", G(7, 2))
    assert peers.floor("b") == G(7, 2)


def test_a_node_that_never_was_a_member_left_nothing() -> None:
    peers = Membership()
    assert not peers.departed("z") and peers.floor("z") is None
    peers.leave("z")
    assert not peers.departed("z")
