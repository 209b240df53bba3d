"""The sans-IO replication engine of one shard.

A :class:`ShardEngine` holds one node's own shard of one state type and its
views of every peer's shard. It is driven by events (:meth:`ShardEngine.handle`)
and by mutations (:meth:`ShardEngine.mutate`, then :meth:`ShardEngine.commit`),
and answers with actions (:mod:`dstate_core.engine._actions`) for its shell to
carry out. It never touches a socket, a thread, a timer or a store, and reads
time only from its :class:`~dstate_core.model.Clock`, so every interleaving
can be replayed in a test.

Storage is the shell's: the first event is :class:`StateLoaded` (the own
shard, loaded or fresh), and a mutation carries a :class:`SaveState` that the
shell carries out before it commits, so nothing unpersisted is ever published.

Each concern has its own piece: :class:`~._kinds.StateKind` (what differs
between simple and delta-aware states), :class:`~._publisher.Publisher` (what
the owner sends, and when), :class:`~._receive.Receiver` (peers' updates under
the receiver rules), :class:`~._pulls.PullTracker` (pulls, probes and waiting
queries), :class:`~._views.ViewTable` (views and their O(1) freshness) and
:mod:`~._peers` (membership, per-peer status, health).

Concurrency: an engine is changed by one thread at a time: its shard's actor,
or a thread taking the shard's turn (``shell/_turns.py``). Other threads may read
:attr:`ShardEngine.published` and :attr:`ShardEngine.own` (both replaced
atomically) and the diagnostics methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from .._logs import NodeLog
from .._ratelimit import RateLimitedLog
from ..model._clock import Clock
from ..model._config import StateConfig
from ..model._diagnostics import (
    HealthStatus,
    MetricCounters,
    PeerSyncStatus,
    StateHealth,
    StateSyncMetrics,
)
from ..model._errors import MutationError
from ..model._generation import Generation, StateObject, StateViewObject
from ..model._state import DistributedState, validate_state_type
from ..wire._codec import WireCodec
from ..wire._messages import DeltaRun, DeltaUpdate, FullSnapshot, RequestSnapshot, SnapshotReply
from ._actions import (
    PERIODIC_SYNC,
    Action,
    DelayedPushTimer,
    NotifyView,
    PeriodicSyncTimer,
    ProbeTimer,
    PullTimer,
    SaveState,
    StartTimer,
    TimerKey,
)
from ._events import (
    ChangeAnnounced,
    Event,
    MessageReceived,
    PeerJoined,
    PeerLeft,
    QueryStarted,
    StateLoaded,
    TimerFired,
)
from ._kinds import PreparedMutation, kind_of
from ._peers import Membership, PeerStatuses, grade_peers, grade_state
from ._publisher import Publisher, SendPlan
from ._pulls import PullTracker
from ._receive import Receiver
from ._views import PublishedViews, ViewTable

__all__ = ["DEFAULT_MAX_CLOCK_SKEW", "Mutation", "ShardEngine"]

#: Seconds a peer's incarnation may be ahead of this node's clock (see ``max_clock_skew``).
DEFAULT_MAX_CLOCK_SKEW = 300.0

S = TypeVar("S", bound=DistributedState)


@dataclass(frozen=True, slots=True)
class Mutation(Generic[S]):
    """A mutation applied to a copy and encoded, but not committed.

    The shell carries out :attr:`save` (if any), then calls
    :meth:`ShardEngine.commit`. If the save fails it drops the mutation:
    nothing in the engine changed. A mutation may be prepared on top of another
    one not committed yet (``after``); a batch is committed in one go
    (:meth:`ShardEngine.commit_batch`) after one save of its last state.

    Attributes:
        generation: the generation the commit will give the own shard.
        save: the state to store first, or ``None`` without persistence.
    """

    generation: Generation
    save: SaveState | None
    prepared: PreparedMutation[S]
    plan: SendPlan
    base: StateObject[S]
    #: The generation peers were last sent once this mutation is committed.
    last_sent: Generation | None


class ShardEngine(Generic[S]):
    """Replication logic for one state type on one node.

    Args:
        state_type: the registered state class.
        config: how it syncs, persists and answers queries.
        node_id: this node's id.
        clock: the only source of time.
        codec: encodes outgoing messages (with the cluster secret, if any).
        max_clock_skew: how far (s) a peer's incarnation may be ahead of this
            node's wall clock before its updates are refused as forged.

    Raises:
        TypeError, ValueError: ``state_type`` cannot be registered.
    """

    own: StateObject[S]

    def __init__(
        self,
        state_type: type[S],
        config: StateConfig,
        node_id: str,
        clock: Clock,
        codec: WireCodec,
        *,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        validate_state_type(state_type)
        self.state_type = state_type
        self.name = state_type.NAME
        self.config = config
        self.node_id = node_id
        self._clock = clock
        self._kind = kind_of(state_type)
        self._persists = config.persistence is not None
        self._metrics = MetricCounters()
        self._views = ViewTable(node_id)
        self._peers = Membership()
        self._statuses = PeerStatuses()
        self._pulls = PullTracker(
            self.name,
            node_id,
            clock,
            codec,
            config,
            self._views,
            self._peers,
            self._statuses,
            self._metrics,
        )
        self._receiver = Receiver(
            self.name,
            node_id,
            clock,
            config.version_mismatch_policy,
            self._kind,
            self._views,
            self._peers,
            self._statuses,
            self._metrics,
            self._pulls,
            max_clock_skew,
        )
        self._publisher = Publisher(
            self._kind, config.sync_strategy, node_id, codec, self._metrics, clock
        )
        self._log = NodeLog("dstate.engine", node_id, self.name)
        self._rate_log = RateLimitedLog(self._log, clock)
        self._loaded = False
        if self._kind.custom_urgency and not config.sync_strategy.has_fallback:
            self._log.warning(
                "the state overrides sync_urgency but its strategy has no fallback (push "
                "mode NONE, no periodic sync, no pull on query): DEFAULT and SUPPRESS "
                "changes will never reach peers"
            )

    @property
    def view_table(self) -> ViewTable:
        """The view table (read its ``latest`` or ``snapshot()`` from any thread)."""
        return self._views

    @property
    def published(self) -> PublishedViews:
        """The current read-only view map with its O(1) freshness summary."""
        return self._views.published

    @property
    def peers(self) -> frozenset[str]:
        """The cluster members this shard currently replicates with."""
        return self._peers.members()

    # -- mutation -----------------------------------------------------------------

    def mutate(
        self, fn: Callable[[S], Any], *, with_delta: bool = False, after: Mutation[S] | None = None
    ) -> Mutation[S]:
        """Apply ``fn`` to a copy of the own state and encode what it sends; commit nothing.

        Args:
            fn: the mutation.
            with_delta: ``fn`` returns a change for the delta hooks.
            after: a mutation prepared and not committed yet: this one starts from
                its result (a batch); commit both with :meth:`commit_batch`.

        Returns:
            The prepared mutation: carry out its ``save``, then :meth:`commit` it.

        Raises:
            TypeError: ``fn`` is not callable, returned neither ``None`` nor the
                state type, or ``with_delta`` on a simple state.
            MutationError: the update cannot be encoded (e.g. it exceeds the
                message size cap); ``__cause__`` is the underlying error.
            Exception: whatever ``fn`` or a state hook raised.
        """
        if not callable(fn):
            raise TypeError(f"mutate() takes a callable fn(state), got {fn!r}")
        if after is None:
            base, old_view, last_sent = self.own, self._own_view_value(), self._publisher.last_sent
        else:
            base, old_view, last_sent = after.prepared.own, after.prepared.view, after.last_sent
        prepared = self._kind.prepare(base, old_view, fn, with_delta=with_delta, clock=self._clock)
        new_own = prepared.own
        try:
            plan = self._publisher.prepare(
                new_own, prepared.view, prepared.delta, prepared.urgency, last_sent
            )
        except Exception as exc:
            raise MutationError(
                f"state {self.name!r}: the mutation to generation {new_own.generation} was not "
                f"committed because it cannot be sent to peers: {type(exc).__name__}: {exc}"
            ) from exc
        save = SaveState(new_own, prepared.delta) if self._persists else None
        return Mutation(new_own.generation, save, prepared, plan, base, plan.sent_after(last_sent))

    def commit(self, mutation: Mutation[S]) -> list[Action]:
        """Commit a prepared mutation (its ``save`` done): publish the own view and sync it.

        Raises:
            RuntimeError: another mutation was committed since this one was prepared.
        """
        return self.commit_batch([mutation])

    def commit_batch(self, mutations: list[Mutation[S]]) -> list[Action]:
        """Commit mutations prepared one ``after`` the other, in order, once the last
        one's state is saved. They send less than one by one: a snapshot broadcast that a
        later one replaces stays home; consecutive deltas leave as one run.

        Raises:
            RuntimeError: the first was not prepared on the current own state, or the
                others not each on the one before.
        """
        actions: list[Action] = []
        for mutation in mutations:
            if mutation.base is not self.own:
                raise RuntimeError(
                    f"state {self.name!r}: a mutation prepared at {mutation.base.generation} "
                    f"cannot be committed at {self.own.generation}"
                )
            self.own = mutation.prepared.own
            self._metrics.total_mutations += 1
            actions += self._put_own_view(mutation.prepared.view)
        actions += self._publisher.commit_all([mutation.plan for mutation in mutations])
        return actions

    def _put_own_view(self, view: Any) -> list[Action]:
        own = self.own
        entry = StateViewObject(
            own.generation,
            self.state_type.WIRE_VERSION,
            view,
            own.created_time,
            own.modified_time,
            self._clock.now(),
            None,
            self.node_id,
        )
        return [NotifyView(self.node_id, self._views.put(entry), entry)]

    def _own_view_value(self) -> Any:
        entry = self._views.get(self.node_id)
        assert entry is not None
        return entry.value

    # -- events -------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Process one event; returns the actions it calls for. Never raises for peer input.

        Raises:
            RuntimeError: an event other than :class:`StateLoaded` came first.
        """
        if not self._loaded:
            if isinstance(event, StateLoaded):
                return self._on_loaded(event.own)
            raise RuntimeError(f"state {self.name!r}: the engine got {event!r} before its state")
        match event:
            case MessageReceived(message=message):
                return self._on_message(message)
            case ChangeAnnounced(notification=note):
                return self._receiver.announced(note.source_node, note.generation)
            case PeerJoined(node_id=node):
                return self._on_joined(node)
            case PeerLeft(node_id=node):
                return self._on_left(node)
            case TimerFired(key=key):
                return self._on_timer(key)
            case QueryStarted(query_id=query_id, max_staleness=max_staleness):
                return self._pulls.start_query(query_id, max_staleness)
            case StateLoaded():
                raise RuntimeError(f"state {self.name!r}: the engine's state is loaded already")
        raise TypeError(f"ShardEngine.handle() got an unknown event {event!r}")

    def cancel_query(self, query_id: int) -> None:
        """Forget a waiting query (its caller gave up)."""
        self._pulls.cancel(query_id)

    @property
    def drops(self) -> dict[str, int]:
        """Messages dropped before the receiver rules, by reason (a copy; any thread)."""
        return self._receiver.drops.counts()

    def _on_loaded(self, own: StateObject[S]) -> list[Action]:
        self.own = own
        self._loaded = True
        self._publisher.mark_broadcast(own.generation)
        actions = self._put_own_view(self._kind.project_view(own.value))
        interval = self.config.sync_strategy.periodic_full_sync
        if interval is not None:
            actions.append(StartTimer(PERIODIC_SYNC, interval, repeat=True))
        return actions

    def _on_message(
        self, message: FullSnapshot | DeltaUpdate | DeltaRun | RequestSnapshot | SnapshotReply
    ) -> list[Action]:
        target = message.snapshot if isinstance(message, SnapshotReply) else message
        if target.state_name != self.name:
            self._receiver.drop(
                "wrong_state", target.source_node, f"a message of {target.state_name!r}"
            )
            return []
        if isinstance(message, SnapshotReply):
            return self._receiver.snapshot(message.snapshot, message.request_id)
        if isinstance(message, FullSnapshot):
            return self._receiver.snapshot(message, None)
        if isinstance(message, DeltaUpdate):
            return self._receiver.delta(message)
        if isinstance(message, DeltaRun):
            return self._receiver.run(message)
        return self._on_request(message)

    def _on_request(self, request: RequestSnapshot) -> list[Action]:
        source = request.source_node
        if source not in self._peers and not self._peers.departed(source):
            self._receiver.drop("unknown_node", source, "a snapshot request from a non-member")
            return []
        reply = self._send_own(
            lambda view: [self._publisher.reply_to(source, request.request_id, self.own, view)]
        )
        return reply + self._pulls.heard_from(source)

    def _send_own(self, build: Callable[[Any], list[Action]]) -> list[Action]:
        """What ``build`` makes of the own view; if it cannot be encoded (e.g. it outgrew
        the size cap), count and log it rather than raise into the mailbox."""
        try:
            return build(self._own_view_value())
        except Exception as exc:
            self._metrics.sync_failures += 1
            self._rate_log.log(
                logging.ERROR,
                ("encode", self.name),
                "cannot send the own state at generation %s: %s",
                self.own.generation,
                exc,
            )
            return []

    # -- membership ---------------------------------------------------------------

    def _on_joined(self, node: str) -> list[Action]:
        if node == self.node_id:
            return []
        self._peers.join(node)
        self._publisher.set_peer_count(len(self._peers))
        actions = self._send_own(lambda view: [self._publisher.snapshot_to(node, self.own, view)])
        if node not in self._views:
            actions.extend(self._pulls.ensure(node, probe=True))
        return actions

    def _on_left(self, node: str) -> list[Action]:
        view, status = self._views.get(node), self._statuses.find(node)
        seen = status.remote_generation if status else None
        if not self._peers.leave(node, view.generation if view else None, seen):
            return []
        self._publisher.set_peer_count(len(self._peers))
        old = self._views.remove(node)
        self._statuses.discard(node)
        self._receiver.forget(node)
        self._log.info("peer %r left; its view is removed", node, peer=node)
        actions = self._pulls.forget(node)
        if old is not None:
            actions.append(NotifyView(node, old, None))
        return actions

    # -- timers -------------------------------------------------------------------

    def _on_timer(self, key: TimerKey) -> list[Action]:
        if isinstance(key, PeriodicSyncTimer):
            return self._send_own(lambda view: self._publisher.periodic(self.own, view))
        if isinstance(key, DelayedPushTimer):
            return self._send_own(lambda view: self._publisher.flush_window(self.own, view))
        if isinstance(key, ProbeTimer):
            return self._pulls.probe_again(key)
        if isinstance(key, PullTimer):
            return self._pulls.timed_out(key)
        return []

    # -- diagnostics --------------------------------------------------------------

    def sync_status(self) -> list[PeerSyncStatus]:
        """One row per peer this shard tracks."""
        rows = []
        for node, status in self._statuses.by_node():
            view = self._views.get(node)
            rows.append(
                status.row(
                    node,
                    self.name,
                    view.generation if view else None,
                    view.synced_at if view else None,
                )
            )
        return rows

    def stale_peers(self, max_staleness: float) -> list[PeerSyncStatus]:
        """The rows whose view is older than ``max_staleness`` or behind the announced one."""
        now = self._clock.now()
        return [row for row in self.sync_status() if row.is_stale(now, max_staleness)]

    def metrics(self, feed_batches_sent: int = 0) -> StateSyncMetrics:
        """A snapshot of the counters (the feed count comes from the node's aggregator)."""
        frozen = self._metrics.freeze(feed_batches_sent)
        return replace(frozen, bytes_sent=frozen.bytes_sent + self._pulls.bytes_sent)

    def health(self) -> StateHealth:
        """Grade this state's peers (``docs/diagnostics.md#health``): against
        ``default_staleness``, with the strategy's promises (a view pending by design,
        which a query would pull, is fresh; an idle peer's age counts only where a
        periodic sync promises contact)."""
        return grade_state(
            self.name,
            self.sync_status(),
            self._clock.now(),
            self.config.default_staleness,
            **self._promises(),
        )

    def peer_health(self) -> dict[str, HealthStatus]:
        """Each peer's grade, as :meth:`health` counts it."""
        return grade_peers(
            self.sync_status(), self._clock.now(), self.config.default_staleness, **self._promises()
        )

    def _promises(self) -> dict[str, Any]:
        strategy = self.config.sync_strategy
        period = strategy.periodic_full_sync
        bound = self.config.default_staleness
        return {
            "contact_within": None if period is None else max(bound, 2 * period),
            "pullable": strategy.pull_on_query,
            "announced": {
                node: status.last_announced_time
                for node, status in self._statuses.by_node()
                if status.last_announced_time is not None
            },
        }
