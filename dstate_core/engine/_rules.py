"""The receiver rules, as data (``docs/protocol.md#receiver-rules``).

Every replica judges an incoming snapshot or delta against the generation it
holds for that peer. When it holds a view, the decision is :data:`RULES`, read
top to bottom: the first row whose condition holds gives the verdict. When it
holds none (a new peer, or one whose view went), :func:`judge` takes any
snapshot and calls any delta a gap, except for what is older than the *floor*:
the newest generation held of that peer before its view went.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ..model._generation import Generation

__all__ = ["RULES", "Kind", "Verdict", "judge"]


class Kind(enum.Enum):
    """What kind of update arrived."""

    SNAPSHOT = "snapshot"
    DELTA = "delta"


class Verdict(enum.Enum):
    """What the replica does with the update."""

    #: Replace the view with the snapshot.
    REPLACE = "replace"
    #: Apply the delta to the view.
    APPLY = "apply"
    #: Same generation as held: the view is confirmed fresh (refresh ``synced_at``).
    CONFIRM = "confirm"
    #: From an older lifetime of the peer: discard (counted as stale).
    DISCARD_OLDER_LIFETIME = "discard_older_lifetime"
    #: Same lifetime, not newer: stale or duplicate, discard (counted).
    DISCARD_STALE = "discard_stale"
    #: A delta that does not follow the view: keep the view, ask for a snapshot.
    GAP = "gap"


_Condition = Callable[[Kind, Generation, Generation], bool]

#: (condition on (kind, incoming, local), verdict), first match wins; local is never None here.
RULES: tuple[tuple[str, _Condition, Verdict], ...] = (
    (
        "snapshot newer than the view (any incarnation)",
        lambda k, inc, loc: k is Kind.SNAPSHOT and inc > loc,
        Verdict.REPLACE,
    ),
    (
        "anything from an older incarnation",
        lambda k, inc, loc: inc.incarnation < loc.incarnation,
        Verdict.DISCARD_OLDER_LIFETIME,
    ),
    (
        "snapshot of the generation held",
        lambda k, inc, loc: k is Kind.SNAPSHOT and inc == loc,
        Verdict.CONFIRM,
    ),
    (
        "same incarnation, not newer",
        lambda k, inc, loc: inc.incarnation == loc.incarnation and inc.age <= loc.age,
        Verdict.DISCARD_STALE,
    ),
    (
        "the delta right after the view",
        lambda k, inc, loc: inc.incarnation == loc.incarnation and inc.age == loc.age + 1,
        Verdict.APPLY,
    ),
    (
        "a delta that skips ages or starts a newer incarnation",
        lambda k, inc, loc: True,
        Verdict.GAP,
    ),
)


def judge(
    kind: Kind, incoming: Generation, local: Generation | None, floor: Generation | None = None
) -> Verdict:
    """Decide what to do with an update of ``incoming`` generation.

    Args:
        kind: snapshot or delta.
        incoming: the update's generation.
        local: the generation of the view held, or ``None`` when there is none
            (a snapshot is then taken, a delta is a gap).
        floor: with no view held, the newest generation this replica held of the
            peer before its view was removed (it left, or its view was dropped
            for an unreadable version). An update older than that is a late
            message of a past lifetime or age, discarded, and so is a delta at
            ``floor``; a snapshot at ``floor`` or newer is taken (a persisted
            node resumes at the generation it left with).
    """
    if local is None:
        if floor is not None and (incoming < floor or (kind is Kind.DELTA and incoming == floor)):
            if incoming.incarnation < floor.incarnation:
                return Verdict.DISCARD_OLDER_LIFETIME
            return Verdict.DISCARD_STALE
        return Verdict.REPLACE if kind is Kind.SNAPSHOT else Verdict.GAP
    for _, condition, verdict in RULES:
        if condition(kind, incoming, local):
            return verdict
    raise AssertionError("the last rule always matches")  # pragma: no cover
