"""Prometheus export: every counter, per-peer lag and health, served on a port."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dstate_core import HealthStatus, StateSyncMetrics
from dstate_core.metrics import PrometheusCollector, serve_metrics
from dstate_core.process import free_port
from dstate_core.testing import DeterministicCluster, TestState, local_cluster


@pytest.fixture
def cluster() -> Iterator[DeterministicCluster]:
    with local_cluster(["a", "b", "c"]) as made:
        yield made


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_every_counter_and_the_peers_lag_and_health(cluster: DeterministicCluster) -> None:
    shards = {n: cluster.node(n).register(TestState) for n in cluster.node_ids}
    cluster.run_until_idle()
    for _ in range(3):
        shards["a"].mutate(TestState.increment())
    cluster.run_until_idle()
    cluster.advance(2.0)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(cluster.node("a")))

    got = samples(registry)

    state = (("node", "a"), ("state", "test_state"))
    assert got[("dstate_mutations_total", state)] == 3
    assert got[("dstate_snapshots_sent_total", state)] == shards["a"].metrics().snapshots_sent
    names = {name for name, _ in got}
    for field in StateSyncMetrics.__dataclass_fields__:
        assert f"dstate_{field.removeprefix('total_')}_total" in names
    lag = got[("dstate_peer_lag_seconds", (("node", "a"), ("peer", "b"), ("state", "test_state")))]
    assert not math.isnan(lag) and lag >= 2.0
    assert got[("dstate_state_health", state)] == 0
    assert got[("dstate_node_health", (("node", "a"),))] == 0
    peer_c = (("node", "a"), ("peer", "c"), ("state", "test_state"))
    assert got[("dstate_peer_health", peer_c)] == 0

    cluster.partition(["a"], ["b", "c"])  # a's pulls of b and c fail: both failing
    shards["a"].query(lambda views: None, max_staleness=0.0, on_stale="return")
    got = samples(registry)
    assert got[("dstate_peer_health", peer_c)] == 2
    assert got[("dstate_state_health", state)] == 2
    assert shards["a"].peer_health() == {"b": HealthStatus.UNHEALTHY, "c": HealthStatus.UNHEALTHY}


def test_a_shut_down_node_reports_nothing(cluster: DeterministicCluster) -> None:
    cluster.node("a").register(TestState)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(cluster.node("a")))
    cluster.node("a").shutdown()
    assert samples(registry) == {}


def test_the_collector_needs_a_node() -> None:
    with pytest.raises(TypeError, match="needs a DStateNode"):
        PrometheusCollector("a")  # type: ignore[arg-type]


def test_served_over_http(cluster: DeterministicCluster) -> None:
    cluster.node("a").register(TestState)
    port = free_port()
    server = serve_metrics(cluster.node("a"), port, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'dstate_mutations_total{node="a",state="test_state"} 0.0' in text


def test_the_text_format_is_valid(cluster: DeterministicCluster) -> None:
    cluster.node("a").register(TestState)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(cluster.node("a")))
    assert b"# TYPE dstate_state_health gauge" in generate_latest(registry)


def test_a_node_process_serves_its_metrics() -> None:
    from dstate_pykka import PykkaNodeHandle

    port = free_port()
    with PykkaNodeHandle.start(
        "a", states=["dstate_core.testing:TestState"], options=["--metrics-port", str(port)]
    ) as node:
        node.ready()
        node.request("mutate", state="test_state", fn="increment", args=[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    assert 'dstate_mutations_total{node="a",state="test_state"} 1.0' in text


def test_a_bad_metrics_port_is_a_usage_error() -> None:
    from dstate_pykka import PykkaNodeHandle

    node = PykkaNodeHandle.start(
        "a", states=["dstate_core.testing:TestState"], options=["--metrics-port", "70000"]
    )
    try:
        assert node.proc.wait(30) == 2
        node.stderr_closed.wait(5)
        assert any("--metrics-port must be 1..65535" in line for line in node.stderr)
    finally:
        node.close()
