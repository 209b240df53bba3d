"""What users print and read: enums by name, readable reprs, errors that say what to do."""

from __future__ import annotations

import pytest

from dstate_core import DecodeReason, HealthStatus, PushMode, VersionMismatchPolicy
from dstate_core.testing import TestState, local_cluster


@pytest.mark.parametrize(
    "member",
    [
        HealthStatus.DEGRADED,
        PushMode.ACTIVE_FEED_LAZY_PULL,
        VersionMismatchPolicy.DROP_AND_WAIT,
        DecodeReason.OVERSIZED,
    ],
)
def test_enums_print_their_names(member: object) -> None:
    assert str(member) == f"{member}" == member.name  # type: ignore[attr-defined]


def test_public_objects_have_readable_reprs() -> None:
    with local_cluster(["a"]) as cluster:
        node = cluster.node("a")
        shard = node.register(TestState)

        def on_change(*_: object) -> None: ...

        subscription = shard.subscribe(on_change)

        assert repr(node) == "DStateNode('a', states=['test_state'])"
        assert repr(shard) == "Shard('test_state', node='a')"
        assert repr(subscription).startswith("Subscription('test_state', <function")
        assert repr(subscription).endswith("active)")
        subscription.cancel()
        assert repr(subscription).endswith("cancelled)")


@pytest.mark.parametrize("max_staleness", [None, 0.0, float("inf")])
def test_a_query_without_a_function_says_what_to_pass(max_staleness: float | None) -> None:
    with local_cluster(["a", "b"]) as cluster:
        shard = cluster.node("a").register(TestState)
        cluster.node("b").register(TestState)
        cluster.run_until_idle()
        with pytest.raises(TypeError, match="query\\(\\) takes a projection: a function"):
            shard.query(5, max_staleness=max_staleness)  # type: ignore[arg-type]

        def broken(views: object) -> int:
            raise TypeError("the user's own bug")

        with pytest.raises(TypeError, match="the user's own bug"):
            shard.query(broken)
