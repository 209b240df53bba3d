"""Every record a node writes names its node (and its state and peer where they apply)."""

from __future__ import annotations

import logging

import pytest

from dstate_core import StateConfig, SyncStrategy
from dstate_core.runtime import NodeLog
from dstate_core.testing import InMemoryPersistence, TestState, local_cluster

#: Loggers of the test kit itself (its simulated network), not of a node.
TEST_KIT = ("dstate.testing", "dstate.cluster")


def test_a_node_log_prefixes_the_text_and_sets_the_attributes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "dstate")
    log = NodeLog("dstate.engine", "a%s", "counter")

    log.warning("peer %r sent %d bytes", "b", 5, peer="b")
    NodeLog("dstate.node", "a").info("plain")

    first, second = caplog.records
    assert first.getMessage() == "node 'a%s' state 'counter': peer 'b' sent 5 bytes"
    assert (first.node, first.state, first.peer) == ("a%s", "counter", "b")  # type: ignore[attr-defined]
    assert second.getMessage() == "node 'a': plain"
    assert (second.node, second.state, second.peer) == ("a", None, None)  # type: ignore[attr-defined]
    assert log.for_state("other").state == "other"


def test_every_record_of_a_cluster_names_its_node(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "dstate")
    config = StateConfig(persistence=InMemoryPersistence(), pull_timeout=1.0)
    with local_cluster(["a", "b", "c"]) as cluster:
        shards = {n: cluster.node(n).register(TestState, config) for n in cluster.node_ids}
        feed = StateConfig(sync_strategy=SyncStrategy.feed_lazy_pull())
        for n in cluster.node_ids:
            cluster.node(n).register(type("Fed", (TestState,), {"NAME": "fed"}), feed)
        cluster.run_until_idle()
        shards["a"].mutate(TestState.increment())
        cluster.inject("a", "b", b"\x00garbage")  # a malformed frame
        cluster.run_until_idle()
        cluster.crash("c")
        cluster.run_until_idle()
        cluster.advance(5.0)

    mine = [r for r in caplog.records if not r.name.startswith(TEST_KIT)]
    assert len(mine) > 10
    for record in mine:
        node = getattr(record, "node", None)
        assert node in ("a", "b", "c"), (record.name, record.getMessage())
        assert record.getMessage().startswith(f"node {node!r}"), record.getMessage()
    garbage = [r for r in mine if "dropped an inbound message" in r.getMessage()]
    # The frame did not decode: who sent it is unknown, and the record says so.
    assert [(r.node, r.peer) for r in garbage] == [("b", None)]  # type: ignore[attr-defined]
    left = [r for r in mine if "left; its view is removed" in r.getMessage()]
    assert {(r.node, r.state, r.peer) for r in left} >= {("a", "test_state", "c")}  # type: ignore[attr-defined]
