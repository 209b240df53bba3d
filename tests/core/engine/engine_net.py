"""A minimal, deterministic wiring of several ShardEngines for engine tests.

No runtime and no actors: actions are carried out by hand, messages queue in
one FIFO for the whole net, timers live in a dict per node keyed by
``(owner, key)`` where ``owner`` is a state name or ``"feed"``.

Every node runs one engine per state type given to the net (all sharing the
node's one :class:`ChangeFeedAggregator` and :class:`InboundRouter`), so a feed
batch can carry several state types at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dstate_core._logs import NodeLog
from dstate_core.engine import FEED_FLUSH, ShardEngine, StateLoaded, TimerKey
from dstate_core.engine._actions import (
    Action,
    AnnounceChange,
    Broadcast,
    CancelTimer,
    FinishQuery,
    NotifyView,
    SendTo,
    StartTimer,
)
from dstate_core.engine._events import PeerJoined, PeerLeft, QueryStarted, TimerFired
from dstate_core.engine._feed import ChangeFeedAggregator
from dstate_core.model._clock import Clock
from dstate_core.model._config import ChangeFeedConfig, StateConfig
from dstate_core.model._generation import Generation, IncarnationSource
from dstate_core.persistence import load_or_fresh, save_or_raise
from dstate_core.shell._inbox import InboundRouter
from dstate_core.testing import TestClock
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import Message

FEED = "feed"


def start_engine(
    state_type: Any,
    config: StateConfig,
    node_id: str,
    clock: Clock,
    codec: WireCodec,
    source: IncarnationSource | None = None,
) -> tuple[ShardEngine[Any], list[Action]]:
    """An engine with its own state loaded as the shell does it; the load's actions."""
    engine: ShardEngine[Any] = ShardEngine(state_type, config, node_id, clock, codec)
    log = NodeLog("dstate.persistence", node_id, state_type.NAME)
    own = load_or_fresh(state_type, config.persistence, clock, source or IncarnationSource(), log)
    return engine, engine.handle(StateLoaded(own))


def make_engine(
    state_type: Any,
    config: StateConfig | None = None,
    node_id: str = "a",
    clock: Clock | None = None,
    codec: WireCodec | None = None,
    source: IncarnationSource | None = None,
) -> ShardEngine[Any]:
    """:func:`start_engine` with defaults, for tests that need only the engine."""
    engine, _ = start_engine(
        state_type,
        config or StateConfig(),
        node_id,
        clock or TestClock(),
        codec or WireCodec(),
        source,
    )
    return engine


def commit_mutation(
    engine: ShardEngine[Any], fn: Any, *, with_delta: bool = False
) -> tuple[Generation, list[Action]]:
    """Mutate as the shell does: prepare, save (MutationError if it fails), commit."""
    mutation = engine.mutate(fn, with_delta=with_delta)
    if mutation.save is not None:
        save_or_raise(engine.config.persistence, mutation.save.state, mutation.save.delta)
    return mutation.generation, engine.commit(mutation)


@dataclass
class Node:
    engines: dict[str, ShardEngine[Any]]
    feed: ChangeFeedAggregator
    router: InboundRouter
    primary: str
    timers: dict[tuple[str, TimerKey], tuple[float, float, bool]] = field(default_factory=dict)
    notified: list[NotifyView] = field(default_factory=list)
    finished: dict[int, FinishQuery] = field(default_factory=dict)

    @property
    def engine(self) -> ShardEngine[Any]:
        """The engine of the net's first (primary) state type."""
        return self.engines[self.primary]


class EngineNet:
    """Several nodes, each with one engine per state type of the net.

    Args:
        state_type: one state type, or several (the first is the primary one
            that :meth:`engine`, :meth:`mutate` and :meth:`view` use by default).
        node_ids: the nodes to start with (joined one after the other).
        config: the default config of every engine.
    """

    def __init__(
        self,
        state_type: type | Sequence[type],
        node_ids: list[str],
        config: StateConfig | None = None,
        *,
        secret: bytes | None = None,
        batch_interval: float = 1.0,
        clock: TestClock | None = None,
    ) -> None:
        self.clock = clock or TestClock()
        types = list(state_type) if isinstance(state_type, Sequence) else [state_type]
        self.state_types: list[type] = types
        self.state_type = types[0]
        self.config = config or StateConfig()
        self.codec = WireCodec(secret)
        self.batch_interval = batch_interval
        self.nodes: dict[str, Node] = {}
        self.queue: deque[tuple[str, bytes]] = deque()
        #: Every (destination, bytes) ever queued, oldest first.
        self.sent: list[tuple[str, bytes]] = []
        #: Every (source, destination, bytes) ever queued, oldest first.
        self.log: list[tuple[str, str, bytes]] = []
        self.incarnations: dict[str, IncarnationSource] = {}
        #: Called with (source, destination, bytes) before queueing; False drops it.
        self.link_filter: Callable[[str, str, bytes], bool] | None = None
        for node_id in node_ids:
            self.add(node_id)

    # -- membership -----------------------------------------------------------------

    def add(
        self,
        node_id: str,
        config: StateConfig | None = None,
        *,
        state_type: type | None = None,
        configs: dict[str, StateConfig] | None = None,
    ) -> Node:
        """Start ``node_id`` (again) and run the join exchange with every node.

        ``state_type`` replaces the primary state type on this node (same NAME,
        e.g. a newer class version); ``configs`` gives per-state-name configs.
        """
        source = self.incarnations.setdefault(node_id, IncarnationSource())
        types = list(self.state_types)
        if state_type is not None:
            types[0] = state_type
        engines: dict[str, ShardEngine[Any]] = {}
        loaded: dict[str, list[Action]] = {}
        for kind in types:
            chosen = (configs or {}).get(kind.NAME) or config or self.config
            engine, loaded[kind.NAME] = start_engine(
                kind, chosen, node_id, self.clock, self.codec, source
            )
            engines[kind.NAME] = engine
        node = Node(
            engines,
            ChangeFeedAggregator(node_id, ChangeFeedConfig(self.batch_interval), self.codec),
            InboundRouter(node_id, self.codec, self.clock),
            types[0].NAME,
        )
        others = list(self.nodes)
        self.nodes[node_id] = node
        for name, actions in loaded.items():
            self.apply(node_id, actions, name)
        for other in others:
            for name, engine in self.nodes[other].engines.items():
                self.apply(other, engine.handle(PeerJoined(node_id)), name)
            for name, engine in engines.items():
                self.apply(node_id, engine.handle(PeerJoined(other)), name)
        return node

    def leave(self, node_id: str) -> None:
        """``node_id`` leaves cleanly: every other node gets ``PeerLeft``."""
        del self.nodes[node_id]
        self.announce_left(node_id)

    def crash(self, node_id: str) -> None:
        """``node_id`` disappears without a goodbye (peers are not told)."""
        del self.nodes[node_id]

    def announce_left(self, node_id: str) -> None:
        """Tell every node that ``node_id`` left (e.g. a late failure detection)."""
        for other, node in self.nodes.items():
            if other == node_id:
                continue
            for name, engine in node.engines.items():
                self.apply(other, engine.handle(PeerLeft(node_id)), name)

    # -- plumbing -------------------------------------------------------------------

    def engine(self, node_id: str, name: str | None = None) -> ShardEngine[Any]:
        node = self.nodes[node_id]
        return node.engines[name or node.primary]

    def _queue(self, src: str, dst: str, data: bytes) -> None:
        if self.link_filter is not None and not self.link_filter(src, dst, data):
            return
        self.queue.append((dst, data))
        self.sent.append((dst, data))
        self.log.append((src, dst, data))

    def apply(self, node_id: str, actions: list[Action], name: str | None = None) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            return
        owner = name or node.primary
        for action in actions:
            match action:
                case SendTo(node_id=dst, data=data):
                    self._queue(node_id, dst, data)
                case Broadcast(data=data):
                    for dst in self.nodes:
                        if dst != node_id:
                            self._queue(node_id, dst, data)
                case StartTimer(key=key, delay=delay, repeat=repeat):
                    timer_owner = FEED if key == FEED_FLUSH else owner
                    node.timers[(timer_owner, key)] = (self.clock.now() + delay, delay, repeat)
                case CancelTimer(key=key):
                    node.timers.pop((owner, key), None)
                case AnnounceChange(notification=note):
                    self.apply(node_id, node.feed.record(note), owner)
                case NotifyView():
                    node.notified.append(action)
                case FinishQuery(query_id=query_id):
                    node.finished[query_id] = action

    def deliver(self, dst: str, data: bytes) -> None:
        node = self.nodes.get(dst)
        if node is None:
            return
        for name, event in node.router.route(data, node.engines.keys()):
            self.apply(dst, node.engines[name].handle(event), name)

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
            for tkey, (due, delay, repeat) in sorted(node.timers.items(), key=lambda kv: kv[1][0]):
                if due <= now and node.timers.get(tkey) == (due, delay, repeat):
                    if repeat:
                        node.timers[tkey] = (due + delay, delay, repeat)
                    else:
                        del node.timers[tkey]
                    fired = True
                    owner, key = tkey
                    if owner == FEED:
                        self.apply(node_id, node.feed.flush(), node.primary)
                    else:
                        self.apply(node_id, node.engines[owner].handle(TimerFired(key)), owner)
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

    # -- conveniences ---------------------------------------------------------------

    def mutate(
        self, node_id: str, fn: Any, *, with_delta: bool = False, name: str | None = None
    ) -> Any:
        engine = self.engine(node_id, name)
        generation, actions = commit_mutation(engine, fn, with_delta=with_delta)
        self.apply(node_id, actions, engine.name)
        return generation

    def query(
        self, node_id: str, query_id: int, max_staleness: float, name: str | None = None
    ) -> FinishQuery | None:
        """Start a slow-path query; returns its FinishQuery if it finished at once."""
        engine = self.engine(node_id, name)
        self.apply(node_id, engine.handle(QueryStarted(query_id, max_staleness)), engine.name)
        return self.nodes[node_id].finished.get(query_id)

    def view(self, observer: str, owner: str, name: str | None = None) -> Any:
        entry = self.engine(observer, name).published.views.get(owner)
        return None if entry is None else entry.value

    def decoded(self, src: str | None = None, dst: str | None = None) -> list[Message]:
        """Every message queued so far (optionally from ``src`` / to ``dst``), decoded."""
        return [
            self.codec.decode(data)
            for s, d, data in self.log
            if (src is None or s == src) and (dst is None or d == dst)
        ]

    def timer_due(self, node_id: str, owner: str, key: TimerKey) -> float | None:
        """When timer ``key`` of ``owner`` on ``node_id`` fires next, or None."""
        entry = self.nodes[node_id].timers.get((owner, key))
        return None if entry is None else entry[0]
