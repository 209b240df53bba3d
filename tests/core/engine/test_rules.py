"""The receiver rules table: judge() row by row and against an oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core.engine._rules import RULES, Kind, Verdict, judge
from dstate_core.model._generation import Generation

G = Generation
SNAP, DELTA = Kind.SNAPSHOT, Kind.DELTA
LOCAL = G(100, 5)


def spec_verdict(kind: Kind, incoming: Generation, local: Generation | None) -> Verdict:
    """The receiver rules written out independently of the engine's table."""
    if local is None:
        return Verdict.REPLACE if kind is SNAP else Verdict.GAP
    same_life = incoming.incarnation == local.incarnation
    if kind is SNAP:
        if incoming == local:
            return Verdict.CONFIRM
        if incoming.incarnation > local.incarnation or (same_life and incoming.age > local.age):
            return Verdict.REPLACE
        if incoming.incarnation < local.incarnation:
            return Verdict.DISCARD_OLDER_LIFETIME
        return Verdict.DISCARD_STALE
    if incoming.incarnation < local.incarnation:
        return Verdict.DISCARD_OLDER_LIFETIME
    if incoming.incarnation > local.incarnation:
        return Verdict.GAP
    if incoming.age <= local.age:
        return Verdict.DISCARD_STALE
    if incoming.age == local.age + 1:
        return Verdict.APPLY
    return Verdict.GAP


class TestTableRows:
    @pytest.mark.parametrize(
        ("kind", "incoming", "expected"),
        [
            # snapshot, generation > local (any incarnation): replace
            (SNAP, G(100, 6), Verdict.REPLACE),
            (SNAP, G(100, 50), Verdict.REPLACE),
            (SNAP, G(101, 0), Verdict.REPLACE),
            # anything from an older incarnation: discard
            (SNAP, G(99, 1000), Verdict.DISCARD_OLDER_LIFETIME),
            (DELTA, G(99, 1000), Verdict.DISCARD_OLDER_LIFETIME),
            (DELTA, G(99, 6), Verdict.DISCARD_OLDER_LIFETIME),
            # same incarnation, age <= local: stale / duplicate
            (SNAP, G(100, 4), Verdict.DISCARD_STALE),
            (SNAP, G(100, 0), Verdict.DISCARD_STALE),
            (DELTA, G(100, 5), Verdict.DISCARD_STALE),
            (DELTA, G(100, 4), Verdict.DISCARD_STALE),
            (DELTA, G(100, 0), Verdict.DISCARD_STALE),
            # delta right after the view: apply
            (DELTA, G(100, 6), Verdict.APPLY),
            # delta skipping ages or from a newer incarnation: gap
            (DELTA, G(100, 7), Verdict.GAP),
            (DELTA, G(100, 500), Verdict.GAP),
            (DELTA, G(101, 0), Verdict.GAP),
            (DELTA, G(101, 6), Verdict.GAP),
            # snapshot of the generation held: confirm
            (SNAP, G(100, 5), Verdict.CONFIRM),
        ],
    )
    def test_row(self, kind: Kind, incoming: Generation, expected: Verdict) -> None:
        assert judge(kind, incoming, LOCAL) is expected

    @pytest.mark.parametrize(("kind", "expected"), [(SNAP, Verdict.REPLACE), (DELTA, Verdict.GAP)])
    @pytest.mark.parametrize("incoming", [G(0, 0), G(100, 0), G(100, 7), G(2**40, 3)])
    def test_no_local_view(self, kind: Kind, incoming: Generation, expected: Verdict) -> None:
        assert judge(kind, incoming, None) is expected

    @pytest.mark.parametrize(
        ("kind", "incoming", "expected"),
        [
            (SNAP, G(99, 9), Verdict.DISCARD_OLDER_LIFETIME),
            (DELTA, G(99, 9), Verdict.DISCARD_OLDER_LIFETIME),
            (SNAP, G(100, 4), Verdict.DISCARD_STALE),
            (DELTA, G(100, 5), Verdict.DISCARD_STALE),
            (SNAP, G(100, 5), Verdict.REPLACE),  # resumed where it left (persisted)
            (SNAP, G(101, 0), Verdict.REPLACE),
            (DELTA, G(100, 6), Verdict.GAP),  # no view to apply it to
        ],
    )
    def test_no_view_but_a_floor(self, kind: Kind, incoming: Generation, expected: Verdict) -> None:
        assert judge(kind, incoming, None, LOCAL) is expected

    def test_every_verdict_is_reachable(self) -> None:
        reached = {
            judge(kind, G(inc, age), LOCAL)
            for kind in Kind
            for inc in (99, 100, 101)
            for age in (0, 4, 5, 6, 7)
        }
        assert reached == set(Verdict)

    def test_table_is_data_and_ends_with_a_catch_all(self) -> None:
        assert all(len(row) == 3 and isinstance(row[0], str) for row in RULES)
        _, last, verdict = RULES[-1]
        assert verdict is Verdict.GAP
        assert last(DELTA, G(0, 0), G(0, 0))


generations = st.builds(
    Generation, st.integers(min_value=0, max_value=4), st.integers(min_value=0, max_value=6)
)


class TestOracle:
    @given(
        st.sampled_from(list(Kind)),
        generations,
        st.one_of(st.none(), generations),
    )
    def test_judge_agrees_with_spec(
        self, kind: Kind, incoming: Generation, local: Generation | None
    ) -> None:
        assert judge(kind, incoming, local) is spec_verdict(kind, incoming, local)

    @given(st.sampled_from(list(Kind)), generations, generations)
    def test_only_newer_updates_change_the_view(
        self, kind: Kind, incoming: Generation, local: Generation
    ) -> None:
        verdict = judge(kind, incoming, local)
        if verdict in (Verdict.REPLACE, Verdict.APPLY):
            assert incoming > local
        if incoming <= local:
            assert verdict in (
                Verdict.CONFIRM,
                Verdict.DISCARD_STALE,
                Verdict.DISCARD_OLDER_LIFETIME,
            )
