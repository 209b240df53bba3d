"""The engine's mutable counters and the frozen metrics users read stay one list."""

from __future__ import annotations

from dataclasses import fields

from dstate_core.model._diagnostics import MetricCounters, StateSyncMetrics

#: Counted by the node's change feed, not by a shard's engine.
NODE_LEVEL = {"feed_batches_sent"}


def test_every_public_metric_has_an_engine_counter_and_no_counter_is_hidden() -> None:
    public = {f.name for f in fields(StateSyncMetrics)}
    counted = {f.name for f in fields(MetricCounters)}
    assert counted == public - NODE_LEVEL


def test_freeze_carries_every_counter_and_the_feed_batches() -> None:
    counters = MetricCounters(**{f.name: i + 1 for i, f in enumerate(fields(MetricCounters))})
    frozen = counters.freeze(feed_batches_sent=99)
    for i, f in enumerate(fields(MetricCounters)):
        assert getattr(frozen, f.name) == i + 1
    assert frozen.feed_batches_sent == 99
