"""RemoteTraffic: a group-table change is told again, so one lost copy costs nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dstate_core.runtime import (
    ALL_PEERS,
    GROUP_REPEATS,
    LocalActor,
    Parcel,
    ParcelKind,
    RemoteTraffic,
)


class Actors:
    """The local side: one group, whose members the test changes."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {"g": ["first"]}

    def local_actor(self, name: str) -> LocalActor | None:
        return None

    def local_members(self, group: str) -> Sequence[LocalActor]:
        return []

    def group_table(self) -> dict[str, list[str]]:
        return {group: list(names) for group, names in self.table.items()}


Timers = list[tuple[float, Callable[[], None]]]


def pair() -> tuple[RemoteTraffic, RemoteTraffic, list[Parcel], Timers, Actors]:
    """``a`` and ``b`` wired together; what ``a`` posts is collected, not delivered."""
    posted: list[Parcel] = []
    timers: Timers = []
    actors = Actors()
    a = RemoteTraffic("a", "inc-a", posted.append, actors, later=lambda d, f: timers.append((d, f)))
    b = RemoteTraffic("b", "inc-b", lambda parcel: None, Actors())
    a.on_view([("b", "inc-b")])
    b.on_view([("a", "inc-a")])
    return a, b, posted, timers, actors


def deliver(parcel: Parcel, to: RemoteTraffic) -> None:
    to.on_parcel(
        Parcel(
            parcel.src,
            parcel.src_inc,
            to.node_id,
            parcel.kind,
            parcel.name,
            parcel.body,
            parcel.ref,
        )
    )


def test_a_lost_group_update_is_repaired_by_its_repeat() -> None:
    a, b, posted, timers, actors = pair()
    for parcel in posted:  # the join exchange arrives
        deliver(parcel, b)
    assert b.directory.remote_members("g") == [("a", "first")]
    posted.clear()

    actors.table["g"].append("second")
    a.publish_groups()  # this copy is lost
    assert [p.kind for p in posted] == [ParcelKind.GROUPS] and posted[0].dst == ALL_PEERS
    assert [delay for delay, _ in timers] == list(GROUP_REPEATS)
    assert b.directory.remote_members("g") == [("a", "first")]

    posted.clear()
    timers[0][1]()  # the first repeat
    (again,) = posted
    deliver(again, b)
    assert b.directory.remote_members("g") == [("a", "first"), ("a", "second")]


def test_answers_and_closed_traffic_are_not_repeated() -> None:
    a, _b, posted, timers, _actors = pair()
    timers.clear()
    a.publish_groups("b", want_reply=True)
    a.publish_groups("b")
    assert timers == []  # only a change told to every peer is repeated
    a.close()
    posted.clear()
    a.publish_groups()
    for _, fire in timers:
        fire()
    assert posted == []
