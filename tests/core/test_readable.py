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


def test_clusters_and_collectors_have_readable_reprs() -> None:
    from dstate_core.metrics import PrometheusCollector

    with local_cluster(["a", "b"]) as cluster:
        assert repr(cluster) == "DeterministicCluster(running ['a', 'b'])"
        collector = PrometheusCollector(cluster.node("a"))
        assert repr(collector) == "PrometheusCollector(DStateNode('a', states=[]))"
    assert repr(cluster) == "DeterministicCluster(closed)"


def test_metrics_without_the_extra_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    monkeypatch.delitem(sys.modules, "dstate_core.metrics", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'dstate\[prometheus\]'"):
        importlib.import_module("dstate_core.metrics")


def test_a_wrong_return_says_an_int() -> None:
    with local_cluster(["a"]) as cluster:
        shard = cluster.node("a").register(TestState)
        with pytest.raises(TypeError, match=r"returned an int; return None .* or a TestState"):
            shard.mutate(lambda state: 7)  # type: ignore[arg-type, return-value]
