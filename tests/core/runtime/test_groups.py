"""LocalGroups: the table of a runtime's own group members."""

from __future__ import annotations

from dataclasses import dataclass

from dstate_core.runtime._groups import LocalGroups


@dataclass(frozen=True)
class Member:
    name: str


def test_join_leave_and_members_sorted_by_name() -> None:
    groups: LocalGroups[Member] = LocalGroups()
    b, a = Member("b"), Member("a")
    assert groups.join("g", b) is True
    assert groups.join("g", a) is True
    assert groups.join("g", a) is False  # already a member
    assert groups.members("g") == [a, b]
    assert groups.members("nobody") == []
    assert groups.table() == {"g": ["b", "a"]}
    assert groups.leave("g", b) is True
    assert groups.leave("g", b) is False
    assert groups.leave("other", a) is False
    assert groups.leave("g", a) is True
    assert groups.table() == {}  # an empty group disappears


def test_forget_removes_a_member_from_every_group() -> None:
    groups: LocalGroups[Member] = LocalGroups()
    a, b = Member("a"), Member("b")
    groups.join("g1", a)
    groups.join("g2", a)
    groups.join("g2", b)
    assert groups.forget(a) is True
    assert groups.forget(a) is False
    assert groups.table() == {"g2": ["b"]}
    groups.clear()
    assert groups.table() == {}
