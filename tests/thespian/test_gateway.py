"""GatewayCore without Thespian: membership from convention updates and rosters, routing."""

from __future__ import annotations

from typing import Any

import pytest

from dstate_core.runtime import Parcel, ParcelKind
from dstate_thespian._gateway import (
    CAP_GATEWAY,
    CAP_INCARNATION,
    CAP_NODE,
    Attach,
    Attached,
    Batch,
    Effect,
    GatewayCore,
    Notify,
    Roster,
    Send,
    View,
    Wake,
)


def caps(node: str, inc: str = "1", gateway: Any = "gw") -> dict[str, Any]:
    return {CAP_NODE: node, CAP_INCARNATION: inc, CAP_GATEWAY: f"{gateway}-{node}"}


def sent(effects: list[Effect], to: Any = None) -> list[Any]:
    return [e.msg for e in effects if isinstance(e, Send) and (to is None or e.to == to)]


def views(effects: list[Effect]) -> list[View]:
    return [m for m in sent(effects, "caller") if isinstance(m, View)]


def parcel(src: str, dst: str, inc: str = "1") -> Parcel:
    return Parcel(src, inc, dst, ParcelKind.SEND, "inbox", b"data")


def attached(relay: bool, member: bool = False, node: str = "me") -> GatewayCore:
    core = GatewayCore("gw-" + node, settle=5.0)
    effects = core.attach(Attach(node, "1", relay, member), "caller", 10, 9)
    assert Notify() in effects
    first = sent(effects, "caller")[0]
    assert first == Attached("gw-" + node, 10, 9, "caller")
    return core


class TestAttach:
    def test_messages_wait_for_the_node_process(self) -> None:
        core = GatewayCore("gw-me")
        assert core.parcel(parcel("x", "me")) == []
        effects = core.attach(Attach("me", "1", relay=False), "caller", 1, 0)
        assert parcel("x", "me") in sent(effects, "caller")
        assert sent(effects, "caller")[-1] == View(())
        again = core.attach(Attach("me", "1", relay=False), "caller2", 1, 0)
        assert Notify() not in again  # subscribe to the convention once

    def test_the_pending_buffer_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("dstate_thespian._gateway.MAX_PENDING", 2)
        core = GatewayCore("gw-me")
        for n in range(3):
            core.parcel(Parcel("x", "1", "me", ParcelKind.SEND, f"a{n}", b""))
        effects = core.attach(Attach("me", "1", relay=False), "caller", 1, 0)
        assert [m.name for m in sent(effects) if isinstance(m, Parcel)] == ["a1", "a2"]
        assert core.dropped == 1


class TestConvention:
    def test_the_leader_sees_members_and_relays_a_roster(self) -> None:
        core = attached(relay=True)
        effects = core.convention("admin-b", caps("b"), True, 0.0)
        assert views(effects) == [View((("b", "1"),))]
        rosters = sent(effects, "gw-b")
        assert len(rosters) == 1
        assert isinstance(rosters[0], Roster)
        assert set(rosters[0].entries) == {("b", "1", "gw-b"), ("me", "1", "gw-me")}
        effects = core.convention("admin-c", caps("c"), True, 0.0)
        assert {type(m).__name__ for m in sent(effects, "gw-b")} == {"Roster"}
        assert sent(effects, "gw-c")
        effects = core.convention("admin-b", caps("b"), False, 0.0)
        assert views(effects) == [View((("c", "1"),))]
        assert sorted(core.view) == ["c"]

    def test_strangers_self_and_stale_removals_are_ignored(self) -> None:
        core = attached(relay=True)
        assert core.convention("admin-x", {"other": 1}, True, 0.0) == []
        assert core.convention("admin-x", None, True, 0.0) == []
        assert core.convention("admin-me", caps("me"), True, 0.0) == []
        core.convention("admin-b", caps("b", inc="2"), True, 0.0)
        assert core.convention("admin-b", caps("b", inc="1"), False, 0.0) == []
        assert sorted(core.view) == ["b"]

    def test_a_system_without_a_gateway_yet_is_not_a_peer(self) -> None:
        core = attached(relay=True)
        no_gateway = {CAP_NODE: "b", CAP_INCARNATION: "1"}
        assert views(core.convention("admin-b", no_gateway, True, 0.0)) == []
        assert core.view == {}


class TestMember:
    def test_the_view_is_incomplete_until_the_roster_comes(self) -> None:
        core = attached(relay=False, member=True)
        effects = core.convention("admin-a", caps("a"), True, 0.0)
        assert views(effects) == [View((("a", "1"),), complete=False)]
        roster = Roster("a", "1", (("a", "1", "gw-a"), ("b", "1", "gw-b"), ("me", "1", "gw-me")))
        effects = core.roster(roster, 0.0)
        assert views(effects) == [View((("a", "1"), ("b", "1")), complete=True)]
        assert core.roster(roster, 0.0) == []  # nothing changed

    def test_members_route_to_every_peer_of_the_roster(self) -> None:
        core = attached(relay=False, member=True)
        core.roster(Roster("a", "1", (("a", "1", "gw-a"), ("b", "1", "gw-b"))), 0.0)
        outbound = Parcel("me", "1", "*", ParcelKind.CAST, "g", b"x")
        assert sorted(e.to for e in core.parcel(outbound) if isinstance(e, Send)) == [
            "gw-a",
            "gw-b",
        ]
        assert [e.to for e in core.parcel(parcel("me", "b")) if isinstance(e, Send)] == ["gw-b"]
        assert core.parcel(parcel("me", "zzz")) == []
        assert core.dropped == 1
        assert sent(core.parcel(parcel("b", "me")), "caller") == [parcel("b", "me")]

    def test_losing_the_leader_keeps_the_other_members(self) -> None:
        core = attached(relay=False, member=True)
        core.convention("admin-a", caps("a"), True, 0.0)
        core.roster(Roster("a", "1", (("a", "1", "gw-a"), ("b", "1", "gw-b"))), 0.0)
        effects = core.convention("admin-a", caps("a"), False, 1.0)
        assert views(effects) == [View((("b", "1"),))]

    def test_a_restarted_leader_does_not_drop_peers_before_settling(self) -> None:
        core = attached(relay=False, member=True)
        core.roster(Roster("a", "1", (("a", "1", "gw-a"), ("b", "1", "gw-b"))), 0.0)
        core.convention("admin-a", caps("a"), False, 1.0)
        # The new leader incarnation's first roster lacks b (b has not re-registered yet).
        effects = core.roster(Roster("a", "2", (("a", "2", "gw-a2"),)), 2.0)
        assert Wake(5.0) in effects
        assert core.view.keys() == {"a", "b"}
        assert core.view["a"].inc == "2"
        assert core.wakeup(3.0) == []  # too early
        effects = core.wakeup(7.5)
        assert views(effects) == [View((("a", "2"),))]
        # The same leader incarnation drops peers at once.
        core.roster(Roster("a", "2", (("a", "2", "gw-a2"), ("c", "1", "gw-c"))), 8.0)
        assert core.view.keys() == {"a", "c"}
        core.roster(Roster("a", "2", (("a", "2", "gw-a2"),)), 8.5)
        assert core.view.keys() == {"a"}

    def test_a_leader_ignores_rosters(self) -> None:
        core = attached(relay=True)
        assert core.roster(Roster("x", "1", (("b", "1", "gw-b"),)), 0.0) == []
        assert core.view == {}


class TestBatch:
    def test_a_batch_is_routed_and_regrouped_per_destination(self) -> None:
        core = attached(relay=True)
        core.convention("admin-b", caps("b"), True, 0.0)
        core.convention("admin-c", caps("c"), True, 0.0)
        one, two = parcel("me", "b"), Parcel("me", "1", "b", ParcelKind.SEND, "x", b"2")
        cast = Parcel("me", "1", "*", ParcelKind.CAST, "g", b"3")
        effects = core.batch(Batch((one, cast, two, "junk")))  # type: ignore[arg-type]
        by_target = {e.to: e.msg for e in effects if isinstance(e, Send)}
        assert by_target == {"gw-b": Batch((one, cast, two)), "gw-c": cast}
        inbound = core.batch(Batch((parcel("b", "me"), parcel("c", "me"))))
        assert sent(inbound, "caller") == [Batch((parcel("b", "me"), parcel("c", "me")))]
