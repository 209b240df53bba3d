"""Prometheus metrics for a node: every counter, per-peer lag, and health.

Needs the ``prometheus`` extra (``pip install "dstate[prometheus]"``, which
brings ``prometheus-client``)::

    from prometheus_client import REGISTRY, start_http_server
    from dstate_core.metrics import PrometheusCollector

    REGISTRY.register(PrometheusCollector(node))
    start_http_server(9100)          # /metrics

The collector reads the node when Prometheus scrapes it (nothing runs in
between). Every metric has the labels ``node`` and ``state``; per-peer ones
add ``peer``. The node command lines serve it with ``--metrics-port PORT``.
See ``docs/diagnostics.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as missing:  # the extra is not installed
    raise ImportError(
        "dstate_core.metrics needs prometheus-client: pip install 'dstate[prometheus]'"
    ) from missing

from .model._diagnostics import StateSyncMetrics
from .shell._node import DStateNode

__all__ = ["PrometheusCollector", "serve_metrics"]

#: What each :class:`~dstate_core.StateSyncMetrics` counter counts (its help text).
_COUNTERS: dict[str, str] = {
    "total_mutations": "mutations committed on this node",
    "deltas_sent": "deltas sent (once per peer)",
    "deltas_received": "deltas received",
    "snapshots_sent": "full snapshots sent (once per peer)",
    "snapshots_received": "full snapshots received",
    "deltas_suppressed": "deltas not sent because the state's urgency said SUPPRESS",
    "deltas_immediate": "deltas sent at once because the state's urgency said IMMEDIATE",
    "sync_failures": "failed pulls of a peer's view",
    "age_gaps_detected": "updates that skipped a generation (a pull followed)",
    "stale_deltas_discarded": "updates older than the view they were meant for",
    "bytes_sent": "bytes of state updates sent",
    "bytes_received": "bytes of state updates received",
    "feed_batches_sent": "change-feed batches sent",
}


def _metric_name(field: str) -> str:
    return "dstate_" + field.removeprefix("total_")


class PrometheusCollector(Collector):
    """A Prometheus collector for one :class:`~dstate_core.DStateNode`.

    Args:
        node: the node to report.

    Raises:
        TypeError: ``node`` is not a ``DStateNode``.
    """

    def __init__(self, node: DStateNode) -> None:
        if not isinstance(node, DStateNode):
            raise TypeError(f"PrometheusCollector needs a DStateNode, got {type(node).__name__}")
        missing = {f.name for f in dataclasses.fields(StateSyncMetrics)} - set(_COUNTERS)
        assert not missing, f"counters without help text: {missing}"
        self._node = node

    def __repr__(self) -> str:
        return f"PrometheusCollector({self._node!r})"

    def describe(self) -> list[Metric]:
        """Nothing up front: the metrics depend on the registered states."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The node's metrics now (called by the registry on each scrape)."""
        node = self._node
        if node.closed:
            return
        labels = ["node", "state"]
        peer_labels = [*labels, "peer"]
        counters = {
            field: CounterMetricFamily(_metric_name(field), help_text, labels=labels)
            for field, help_text in _COUNTERS.items()
        }
        lag = GaugeMetricFamily(
            "dstate_peer_lag_seconds",
            "seconds since this node last synced the peer's view (NaN: never)",
            labels=peer_labels,
        )
        failures = GaugeMetricFamily(
            "dstate_peer_consecutive_failures",
            "failed syncs of the peer's view in a row",
            labels=peer_labels,
        )
        health = GaugeMetricFamily(
            "dstate_state_health", "0 healthy, 1 degraded, 2 unhealthy", labels=labels
        )
        peer_health = GaugeMetricFamily(
            "dstate_peer_health",
            "this node's grade of the peer's view: 0 fresh, 1 stale, 2 failing",
            labels=peer_labels,
        )
        now = node.clock.now()
        for name, shard in sorted(node.states.items()):
            values = dataclasses.asdict(shard.metrics())
            for field, family in counters.items():
                family.add_metric([node.node_id, name], float(values[field]))
            for peer in shard.sync_status():
                synced = peer.last_sync_time
                seconds = math.nan if synced is None else max(0.0, now - synced)
                lag.add_metric([node.node_id, name, peer.node_id], seconds)
                failures.add_metric(
                    [node.node_id, name, peer.node_id], float(peer.consecutive_failures)
                )
            for peer_id, grade in sorted(shard.peer_health().items()):
                peer_health.add_metric([node.node_id, name, peer_id], float(grade))
            health.add_metric([node.node_id, name], float(shard.health().status))
        yield from counters.values()
        yield lag
        yield failures
        yield peer_health
        yield health
        overall = GaugeMetricFamily(
            "dstate_node_health", "the worst state health on the node", labels=["node"]
        )
        overall.add_metric([node.node_id], float(node.health_check().status))
        yield overall


def serve_metrics(node: DStateNode, port: int, host: str = "0.0.0.0") -> Any:
    """Serve ``node``'s metrics at ``http://host:port/metrics`` on a thread of their own.

    Returns the HTTP server (``.shutdown()`` stops it).

    Raises:
        OSError: the port cannot be bound.
    """
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(PrometheusCollector(node))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server
