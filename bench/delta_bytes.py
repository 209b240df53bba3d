"""Bytes on the wire per update: a delta against a full snapshot of a ~10 KB view.

Run: ``python -m bench.delta_bytes``. Not a test.

A 3-node deterministic cluster under active push; node ``a`` changes one
entry of a ~10 KB map per mutation and the network is driven after each.
Bytes are the engine's real traffic: ``cluster.bytes_sent`` over
``cluster.messages_sent`` (frames as encoded by the node's ``WireCodec``,
one per peer). Rows:

* ``DistributedState`` holding the same map (baseline): every mutation
  broadcasts the whole state;
* ``DeltaDistributedState`` whose view is the map, ``sync_urgency`` alternating
  ``SUPPRESS`` and ``IMMEDIATE``: every second mutation sends one full
  snapshot of the view (the cumulative change), as after any suppressed delta;
* the same state with the default urgency: every mutation sends a delta.

The frame sizes are cross-checked against ``WireCodec().encode`` of a
``FullSnapshot`` / ``DeltaUpdate`` built from the same payloads.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from bench._report import (
    Table,
    Tick,
    fmt_bytes,
    fmt_seconds,
    median_time,
    no_tick,
    print_tables,
    ratio,
)
from dstate_core import (
    DeltaDistributedState,
    DistributedState,
    Generation,
    StateConfig,
    SyncStrategy,
    SyncUrgency,
)
from dstate_core.model._copy import copy_model
from dstate_core.testing import local_cluster
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import DeltaUpdate, FullSnapshot

__all__ = ["STEPS", "main", "tables"]

NODES = ["a", "b", "c"]
ENTRIES = 660  # about 15 bytes each in msgpack: a ~10 KB map
MUTATIONS = 300
REPEATS = 3
STEPS = 3


def _initial() -> dict[str, int]:
    return {f"slot-{i:04d}": 100_000 + i for i in range(ENTRIES)}


class MapView(BaseModel):
    """The public part: the whole map."""

    entries: dict[str, int] = {}


class MapDelta(BaseModel):
    """One entry's new value."""

    key: str
    value: int


class MapState(DeltaDistributedState):
    """A ~10 KB public map plus a private token; each mutation changes one entry."""

    NAME = "bench_map_delta"
    View: ClassVar[type[BaseModel]] = MapView
    Delta: ClassVar[type[BaseModel]] = MapDelta
    entries: dict[str, int] = {}
    token: str = "private"

    def project_view(self) -> MapView:
        return MapView(entries=dict(self.entries))

    @classmethod
    def project_delta(cls, change: Any) -> MapDelta:
        key, value = change
        return MapDelta(key=key, value=value)

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> MapView:
        entries = {**view.entries, delta.key: delta.value}
        return view.model_copy(update={"entries": entries})  # type: ignore[no-any-return]


class SnapshotMapState(MapState):
    """:class:`MapState` that suppresses every odd change: the next one goes as a snapshot."""

    NAME = "bench_map_snapshot"

    @classmethod
    def sync_urgency(cls, old_view: Any, new_view: Any, delta: Any) -> SyncUrgency:
        return SyncUrgency.SUPPRESS if delta.value % 2 else SyncUrgency.IMMEDIATE


class SimpleMapState(DistributedState):
    """The same map as a simple state: every mutation is a full snapshot."""

    NAME = "bench_map_simple"
    entries: dict[str, int] = {}


def _change(i: int, delta_aware: bool) -> Any:
    """Set one entry to ``i``; a delta-aware mutation returns the change, a simple one None."""
    key = f"slot-{i % ENTRIES:04d}"

    def mutation(state: Any) -> tuple[str, int] | None:
        state.entries[key] = 100_000 + i
        return (key, 100_000 + i) if delta_aware else None

    return mutation


@dataclass
class Wire:
    """What one row sent."""

    frame_bytes: float
    frames_per_mutation: float
    bytes_per_mutation: float
    seconds_per_mutation: float


def measure(state_type: type[DistributedState]) -> Wire:
    """Mutate ``MUTATIONS`` times on ``a``, driving the network after each."""
    delta_aware = issubclass(state_type, DeltaDistributedState)
    config = StateConfig(sync_strategy=SyncStrategy.active_push())
    timings = []
    with local_cluster(NODES) as cluster:
        shards = {n: cluster.node(n).register(state_type, config) for n in NODES}
        cluster.run_until_idle()
        writer = shards["a"]
        writer.mutate(lambda s: s.model_copy(update={"entries": _initial()}))
        cluster.run_until_idle()
        sent, sent_bytes = cluster.messages_sent, cluster.bytes_sent
        mutate = writer.mutate_with_delta if delta_aware else writer.mutate
        i = 0
        for _ in range(REPEATS):
            start = time.perf_counter()
            for _ in range(MUTATIONS):
                i += 1
                mutate(_change(i, delta_aware))
                cluster.run_until_idle()
            timings.append((time.perf_counter() - start) / MUTATIONS)
        view = shards["c"].snapshot()["a"].value
        if view.entries[f"slot-{i % ENTRIES:04d}"] != 100_000 + i:
            raise RuntimeError(f"{state_type.NAME}: the last change did not reach c")
        frames = cluster.messages_sent - sent
        total = cluster.bytes_sent - sent_bytes
    mutations = REPEATS * MUTATIONS
    return Wire(
        total / frames,
        frames / mutations / (len(NODES) - 1),
        total / mutations / (len(NODES) - 1),
        statistics.median(timings),
    )


def codec_sizes() -> tuple[int, int]:
    """``WireCodec().encode`` sizes of a view snapshot and of a one-entry delta."""
    codec = WireCodec()
    entries = _initial()
    common: dict[str, Any] = {
        "state_name": MapState.NAME,
        "source_node": "a",
        "generation": Generation(1_700_000_000_000, 1_000),
        "wire_version": 1,
        "created_time": 1_700_000_000_000,
        "modified_time": 1_700_000_100_000,
    }
    snapshot = codec.encode(
        FullSnapshot(payload=MapState.serialize_view(MapView(entries=entries)), **common)
    )
    delta = codec.encode(
        DeltaUpdate(payload=MapState.serialize_delta(MapDelta(key="slot-0001", value=7)), **common)
    )
    return len(snapshot), len(delta)


def tables(tick: Tick = no_tick) -> list[Table]:
    """Measure the three rows and return the table."""
    simple = measure(SimpleMapState)
    tick("full snapshots (simple state)")
    snap = measure(SnapshotMapState)
    tick("snapshots after SUPPRESS")
    delta = measure(MapState)
    tick("deltas")
    codec_snapshot, codec_delta = codec_sizes()
    table = Table(
        "Bytes per update: delta vs full snapshot of a ~10 KB view",
        f"3 nodes, active push; node `a` changes one entry of a {ENTRIES}-entry map "
        f"({fmt_bytes(codec_snapshot)} as a snapshot frame) per mutation and the network is "
        f"driven after each; {REPEATS} x {MUTATIONS} mutations. Bytes and frames are the "
        "deterministic network's counters (per peer). Wall time per mutation includes delivery "
        "to both peers (median of the repeats). Baseline: the simple state, one full snapshot "
        "per mutation.",
        [
            "state / urgency",
            "bytes per frame",
            "frames per mutation (per peer)",
            "bytes per mutation (per peer)",
            "vs snapshot",
            "wall per mutation",
        ],
    )
    rows = [
        ("`DistributedState`, same map (baseline)", simple),
        ("`DeltaDistributedState`, `SUPPRESS`/`IMMEDIATE` alternating", snap),
        ("`DeltaDistributedState`, default urgency (deltas)", delta),
    ]
    for name, wire in rows:
        table.add(
            name,
            fmt_bytes(wire.frame_bytes),
            f"{wire.frames_per_mutation:.2f}",
            fmt_bytes(wire.bytes_per_mutation),
            ratio(wire.bytes_per_mutation, simple.bytes_per_mutation),
            fmt_seconds(wire.seconds_per_mutation),
        )
    state = MapState(entries=_initial())
    copy_s = median_time(lambda: copy_model(state), number=200)
    table.notes.append(
        f"Of the delta row's wall time, {fmt_seconds(copy_s)} is `copy_model` of the owner's "
        f"{ENTRIES}-entry map (rebuilt entry by entry on every mutation; see `mutation_cost`)."
    )
    table.notes.append(
        f"`WireCodec().encode` cross-check: view snapshot frame {codec_snapshot:,} B, "
        f"one-entry delta frame {codec_delta:,} B (delta/snapshot "
        f"{ratio(codec_delta, codec_snapshot)}). A `cluster_secret` adds a 32-byte HMAC tag "
        "to every frame."
    )
    return [table]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
