"""Readiness: a node is ready once it holds every member's views (and the expected members)."""

from __future__ import annotations

import time

import pytest

from dstate_core.testing import TestState, local_cluster
from dstate_pykka import local_cluster as pykka_cluster


def test_ready_once_every_members_views_arrived() -> None:
    with local_cluster(["a", "b", "c"]) as cluster:
        for node in cluster.node_ids:
            cluster.node(node).register(TestState)
        assert not cluster.node("a").wait_ready(0)  # the join exchange has not run yet
        cluster.run_until_idle()
        assert cluster.node("a").wait_ready(0)
        assert cluster.node("a").wait_ready(0, expected_members=["b", "c"])
        assert not cluster.node("a").wait_ready(0, expected_members=["b", "d"])


def test_a_node_with_no_state_and_no_member_is_ready_at_once() -> None:
    with local_cluster(["a"]) as cluster:
        assert cluster.node("a").wait_ready(0)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
def test_the_timeout_is_checked(bad: object) -> None:
    with local_cluster(["a"]) as cluster, pytest.raises(ValueError, match="timeout"):
        cluster.node("a").wait_ready(bad)  # type: ignore[arg-type]


def test_expected_members_is_a_list() -> None:
    with local_cluster(["a"]) as cluster, pytest.raises(TypeError, match="list of node ids"):
        cluster.node("a").wait_ready(0, expected_members="b")


def test_a_threaded_node_waits_until_ready() -> None:
    with pykka_cluster(["a", "b", "c"]) as cluster:
        for node in ("a", "b", "c"):
            cluster.node(node).register(TestState)
        started = time.monotonic()
        assert cluster.node("c").wait_ready(10, expected_members=["a", "b"])
        assert time.monotonic() - started < 10
        assert set(cluster.node("c").states["test_state"].snapshot()) == {"a", "b", "c"}
