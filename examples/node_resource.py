"""A node's published load, replicated so every node can route work locally.

``NodeResource`` is a delta-aware state: peers see only its view (CPU and
memory), never the private ``api_token``; mutations send small deltas, big
memory jumps go out at once and tiny CPU wiggles are not sent on their own
(the next update sent carries them, as a snapshot).

Run it: ``python -m examples.node_resource``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from dstate_core import DeltaDistributedState, StateViewObject, SyncUrgency


class NodeResourceView(BaseModel):
    """What peers see of a node's load."""

    cpu_pct: float = 0.0
    mem_used_mb: int = 0


class NodeResourceDelta(BaseModel):
    """One load change (absolute values, so applying it twice is harmless)."""

    cpu_pct: float
    mem_used_mb: int


@dataclass(frozen=True)
class LoadChange:
    """What a mutation of :class:`NodeResource` returns."""

    cpu_pct: float
    mem_used_mb: int


class NodeResource(DeltaDistributedState):
    """This node's load; ``api_token`` never leaves the node."""

    NAME: ClassVar[str] = "node_resource"
    View: ClassVar[type[BaseModel]] = NodeResourceView
    Delta: ClassVar[type[BaseModel]] = NodeResourceDelta
    #: Memory moves bigger than this (MB) are pushed at once.
    BIG_MEM_JUMP_MB: ClassVar[int] = 512
    #: CPU moves smaller than this (points) are not sent on their own.
    TINY_CPU_CHANGE: ClassVar[float] = 2.0

    cpu_pct: float = 0.0
    mem_used_mb: int = 0
    api_token: str = "local-only-secret"

    def project_view(self) -> NodeResourceView:
        return NodeResourceView(cpu_pct=self.cpu_pct, mem_used_mb=self.mem_used_mb)

    @classmethod
    def project_delta(cls, change: Any) -> NodeResourceDelta:
        return NodeResourceDelta(cpu_pct=change.cpu_pct, mem_used_mb=change.mem_used_mb)

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> NodeResourceView:
        return NodeResourceView(cpu_pct=delta.cpu_pct, mem_used_mb=delta.mem_used_mb)

    @classmethod
    def sync_urgency(cls, old_view: Any, new_view: Any, delta: Any) -> SyncUrgency:
        if abs(new_view.mem_used_mb - old_view.mem_used_mb) > cls.BIG_MEM_JUMP_MB:
            return SyncUrgency.IMMEDIATE
        if abs(new_view.cpu_pct - old_view.cpu_pct) < cls.TINY_CPU_CHANGE:
            return SyncUrgency.SUPPRESS
        return SyncUrgency.DEFAULT

    @staticmethod
    def set_load(cpu_pct: float, mem_used_mb: int) -> Any:
        """A ``mutate_with_delta`` closure that publishes a new load."""

        def apply(state: NodeResource) -> LoadChange:
            state.cpu_pct, state.mem_used_mb = cpu_pct, mem_used_mb
            return LoadChange(cpu_pct, mem_used_mb)

        return apply


def least_loaded(views: Mapping[str, StateViewObject[Any]]) -> str:
    """The node with the lowest CPU (then memory): where to route the next job."""
    return min(views, key=lambda node: (views[node].value.cpu_pct, views[node].value.mem_used_mb))


def _seen(view: StateViewObject[Any]) -> str:
    load = view.value
    return f"age {view.generation.age} (cpu {load.cpu_pct}%, mem {load.mem_used_mb} MB)"


def main() -> None:
    """Three nodes publish loads and route locally; then ``a`` shows both urgencies."""
    from dstate_core import StateConfig, SyncStrategy
    from dstate_core.testing import local_cluster

    config = StateConfig(sync_strategy=SyncStrategy.feed_with_periodic_sync(2.0))
    with local_cluster(["a", "b", "c"]) as cluster:
        shards = {node: cluster.node(node).register(NodeResource, config) for node in "abc"}
        for node, (cpu, mem) in zip("abc", [(70.0, 3000), (20.0, 1000), (45.0, 9000)], strict=True):
            shards[node].mutate_with_delta(NodeResource.set_load(cpu, mem))
        cluster.advance(2.5)
        for node, shard in shards.items():
            print(node, "routes to", shard.query(least_loaded, max_staleness=5.0))

        # Well before the next periodic sync: only what the urgency pushes reaches b.
        a, b = shards["a"], shards["b"]
        for cpu, mem in [(70.5, 3000), (70.5, 4000)]:  # a CPU wobble, then a memory jump
            before, snapshots = a.state.value.project_view(), b.metrics().snapshots_received
            a.mutate_with_delta(NodeResource.set_load(cpu, mem))
            urgency = NodeResource.sync_urgency(before, a.state.value.project_view(), None)
            cluster.advance(0.0)  # deliver whatever was sent
            seen = b.snapshot()["a"]
            if seen.generation != a.state.generation:
                what = "not sent"
            elif b.metrics().snapshots_received > snapshots:
                what = "pushed at once as a snapshot"
            else:
                what = "pushed at once as a delta"
            print(
                f"a: cpu {before.cpu_pct} -> {cpu}%, mem {before.mem_used_mb} -> {mem} MB: "
                f"{urgency!r}, {what}; b sees a at {_seen(seen)}"
            )


if __name__ == "__main__":
    main()
