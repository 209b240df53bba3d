"""A minimal, deterministic wiring of several ShardEngines for engine tests.

No runtime and no actors: actions are carried out by hand, messages queue in
one FIFO per destination, timers live in a dict keyed by (node, key).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dstate_core._actions import (
    Action,
    AnnounceChange,
    Broadcast,
    CancelTimer,
    FinishQuery,
    NotifyView,
    SendTo,
    StartTimer,
)
from dstate_core._config import ChangeFeedConfig, StateConfig
from dstate_core._engine import ShardEngine
from dstate_core._events import PeerJoined, PeerLeft, TimerFired
from dstate_core._feed import FEED_TIMER, ChangeFeedAggregator
from dstate_core._generation import IncarnationSource
from dstate_core._inbox import InboundRouter
from dstate_core._wire import WireCodec
from dstate_core.testing import TestClock


@dataclass
class Node:
    engine: ShardEngine[Any]
    feed: ChangeFeedAggregator
    router: InboundRouter
    timers: dict[tuple[Any, ...], tuple[float, float, bool]] = field(default_factory=dict)
    notified: list[NotifyView] = field(default_factory=list)
    finished: dict[int, FinishQuery] = field(default_factory=dict)


class EngineNet:
    """Several nodes, each with one engine of the same state type."""

    def __init__(
        self,
        state_type: type,
        node_ids: list[str],
        config: StateConfig | None = None,
        *,
        secret: bytes | None = None,
        batch_interval: float = 1.0,
        clock: TestClock | None = None,
    ) -> None:
        self.clock = clock or TestClock()
        self.state_type = state_type
        self.config = config or StateConfig()
        self.codec = WireCodec(secret)
        self.batch_interval = batch_interval
        self.nodes: dict[str, Node] = {}
        self.queue: deque[tuple[str, bytes]] = deque()
        self.sent: list[tuple[str, bytes]] = []
        self.incarnations: dict[str, IncarnationSource] = {}
        for node_id in node_ids:
            self.add(node_id)

    def add(self, node_id: str, config: StateConfig | None = None) -> Node:
        source = self.incarnations.setdefault(node_id, IncarnationSource())
        engine = ShardEngine(
            self.state_type, config or self.config, node_id, self.clock, self.codec, source
        )
        node = Node(
            engine,
            ChangeFeedAggregator(node_id, ChangeFeedConfig(self.batch_interval), self.codec),
            InboundRouter(node_id, self.codec, self.clock),
        )
        others = list(self.nodes)
        self.nodes[node_id] = node
        self.apply(node_id, engine.start())
        for other in others:
            self.apply(other, self.nodes[other].engine.handle(PeerJoined(node_id)))
            self.apply(node_id, engine.handle(PeerJoined(other)))
        return node

    def leave(self, node_id: str) -> None:
        del self.nodes[node_id]
        for other, node in self.nodes.items():
            self.apply(other, node.engine.handle(PeerLeft(node_id)))

    def engine(self, node_id: str) -> ShardEngine[Any]:
        return self.nodes[node_id].engine

    def apply(self, node_id: str, actions: list[Action]) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            return
        for action in actions:
            match action:
                case SendTo(node_id=dst, data=data):
                    self.queue.append((dst, data))
                    self.sent.append((dst, data))
                case Broadcast(data=data):
                    for dst in self.nodes:
                        if dst != node_id:
                            self.queue.append((dst, data))
                            self.sent.append((dst, data))
                case StartTimer(key=key, delay=delay, repeat=repeat):
                    node.timers[key] = (self.clock.now() + delay, delay, repeat)
                case CancelTimer(key=key):
                    node.timers.pop(key, None)
                case AnnounceChange(notification=note):
                    self.apply(node_id, node.feed.record(note))
                case NotifyView():
                    node.notified.append(action)
                case FinishQuery(query_id=query_id):
                    node.finished[query_id] = action

    def deliver(self, dst: str, data: bytes) -> None:
        node = self.nodes.get(dst)
        if node is None:
            return
        for _state, event in node.router.route(data, {self.state_type.NAME}):
            self.apply(dst, node.engine.handle(event))

    def run(self, max_steps: int = 100_000) -> None:
        """Deliver queued messages until none is left."""
        steps = 0
        while self.queue:
            dst, data = self.queue.popleft()
            self.deliver(dst, data)
            steps += 1
            assert steps < max_steps, "livelock"

    def fire_due(self) -> bool:
        now = self.clock.now()
        fired = False
        for node_id, node in list(self.nodes.items()):
            for key, (due, delay, repeat) in sorted(node.timers.items(), key=lambda kv: kv[1][0]):
                if due <= now and node.timers.get(key) == (due, delay, repeat):
                    if repeat:
                        node.timers[key] = (due + delay, delay, repeat)
                    else:
                        del node.timers[key]
                    fired = True
                    if key == FEED_TIMER:
                        self.apply(node_id, node.feed.flush())
                    else:
                        self.apply(node_id, node.engine.handle(TimerFired(key)))
        return fired

    def advance(self, seconds: float, step: float = 0.05) -> None:
        """Move time in small steps, firing timers and delivering as it goes."""
        end = self.clock.now() + seconds
        self.run()
        while self.clock.now() < end:
            self.clock.advance(min(step, end - self.clock.now()))
            while self.fire_due():
                self.run()
            self.run()

    def mutate(self, node_id: str, fn: Any, *, with_delta: bool = False) -> Any:
        generation, actions = self.engine(node_id).mutate(fn, with_delta=with_delta)
        self.apply(node_id, actions)
        return generation

    def view(self, observer: str, owner: str) -> Any:
        entry = self.engine(observer).published.views.get(owner)
        return None if entry is None else entry.value
