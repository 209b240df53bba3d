"""The sans-IO replication engine of one shard (SPEC §2.4, §3 to §7, §10).

A :class:`ShardEngine` holds one node's own shard of one state type and its
views of every peer's shard. It is driven by calls (:meth:`ShardEngine.mutate`)
and events (:meth:`ShardEngine.handle`) and answers with actions
(:mod:`dstate_core.engine._actions`) for its shell to carry out. It never touches a
socket, a thread or a timer, and reads time only from its :class:`Clock`, so
every interleaving can be replayed in a test.

Pieces it delegates to: :class:`~dstate_core.engine._publisher.Publisher` (what the
owner sends), :class:`~dstate_core.engine._views.ViewTable` (views and their O(1)
freshness), :class:`~dstate_core.engine._pulls.PullTracker` (pulls and waiting
queries), :class:`~dstate_core.engine._payloads.PayloadDecoder` (peer payloads) and
:func:`~dstate_core.engine._rules.judge` (the receiver rules).

Concurrency: an engine belongs to one mailbox. Other threads may read
:attr:`ShardEngine.published` and :attr:`ShardEngine.own` (both replaced
atomically) and the diagnostics methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar

from .._ratelimit import DropLog, RateLimitedLog
from ..model._clock import Clock
from ..model._config import StateConfig, VersionMismatchPolicy
from ..model._diagnostics import (
    MetricCounters,
    PeerState,
    PeerSyncStatus,
    StateHealth,
    StateSyncMetrics,
    grade_state,
)
from ..model._errors import MutationError
from ..model._generation import Generation, IncarnationSource, StateObject, StateViewObject
from ..model._state import DeltaDistributedState, DistributedState, validate_state_type
from ..persistence._loading import load_or_fresh, save_or_raise
from ..wire._codec import WireCodec
from ..wire._messages import DeltaUpdate, FullSnapshot, RequestSnapshot, SnapshotReply
from ._actions import Action, CancelTimer, FinishQuery, NotifyView, StartTimer, TimerKey
from ._events import (
    ChangeAnnounced,
    Event,
    MessageReceived,
    PeerJoined,
    PeerLeft,
    QueryStarted,
    TimerFired,
)
from ._membership import Membership
from ._mutation import prepare_mutation, project_view
from ._payloads import PayloadDecoder, Unreadable
from ._publisher import DELAYED_TIMER, PERIODIC_TIMER, Publisher
from ._pulls import PullTracker, pull_timer
from ._rules import Kind, Verdict, judge
from ._views import PublishedViews, ViewTable

__all__ = ["ShardEngine"]

S = TypeVar("S", bound=DistributedState)

log = logging.getLogger("dstate.engine")

#: Longest wait (s) between retries of a lost join exchange with a member.
PROBE_BACKOFF_CAP = 30.0


class ShardEngine(Generic[S]):
    """Replication logic for one state type on one node.

    Args:
        state_type: the registered state class.
        config: how it syncs, persists and answers queries.
        node_id: this node's id.
        clock: the only source of time.
        codec: encodes outgoing messages (with the cluster secret, if any).
        incarnations: the node's incarnation source (shared by its shards).

    Raises:
        TypeError, ValueError: ``state_type`` cannot be registered.
    """

    def __init__(
        self,
        state_type: type[S],
        config: StateConfig,
        node_id: str,
        clock: Clock,
        codec: WireCodec,
        incarnations: IncarnationSource | None = None,
    ) -> None:
        validate_state_type(state_type)
        self.state_type = state_type
        self.name = state_type.NAME
        self.config = config
        self.node_id = node_id
        self._clock = clock
        self._delta_type: type[DeltaDistributedState] | None = (
            state_type if issubclass(state_type, DeltaDistributedState) else None
        )
        self._custom_urgency = (
            self._delta_type is not None and self._delta_type.has_custom_urgency()
        )
        self._metrics = MetricCounters()
        self._views = ViewTable(node_id)
        self._decoder = PayloadDecoder(state_type)
        self._pulls = PullTracker(self.name, node_id, clock, codec, config.pull_timeout)
        self._publisher = Publisher(
            state_type, config.sync_strategy, node_id, codec, self._metrics, clock
        )
        self._peers = Membership()
        self._status: dict[str, PeerState] = {}
        #: Failed join probes per peer without a view, for the retry backoff.
        self._probe_failures: dict[str, int] = {}
        self._rate_log = RateLimitedLog(log, clock)
        self._drops = DropLog(log, clock)
        self.own: StateObject[S] = load_or_fresh(
            state_type, config.persistence, clock, incarnations or IncarnationSource()
        )
        self._publisher.mark_broadcast(self.own.generation)
        self._put_own_view(project_view(state_type, self.own.value))
        if self._custom_urgency and not config.sync_strategy.has_fallback:
            log.warning(
                "state %r overrides sync_urgency but its strategy has no fallback (push mode "
                "NONE, no periodic sync, no pull on query): DEFAULT and SUPPRESS changes "
                "will never reach peers",
                self.name,
            )

    @property
    def view_table(self) -> ViewTable:
        """The view table (read its ``published`` attribute from any thread)."""
        return self._views

    @property
    def published(self) -> PublishedViews:
        """The current read-only view map with its O(1) freshness summary."""
        return self._views.published

    @property
    def peers(self) -> frozenset[str]:
        """The cluster members this shard currently replicates with."""
        return self._peers.members()

    def start(self) -> list[Action]:
        """Actions to run once the shell is ready (the periodic sync timer)."""
        interval = self.config.sync_strategy.periodic_full_sync
        if interval is None:
            return []
        return [StartTimer(PERIODIC_TIMER, interval, repeat=True)]

    # -- mutation -----------------------------------------------------------------

    def mutate(
        self, fn: Callable[[S], Any], *, with_delta: bool = False
    ) -> tuple[Generation, list[Action]]:
        """Apply ``fn`` to a copy of the own state and commit it (SPEC §4).

        Order: apply, new generation, persist, publish own view, sync. If ``fn``
        or a hook raises, or the save fails, nothing changes.

        Returns:
            The new generation and the actions that sync it.

        Raises:
            TypeError: ``fn`` returned neither ``None`` nor the state type, or
                ``with_delta`` on a simple state.
            MutationError: the store failed, or the update cannot be encoded (e.g. it
                exceeds the message size cap); ``__cause__`` is the underlying error.
            Exception: whatever ``fn`` or a state hook raised.
        """
        if not callable(fn):
            raise TypeError(f"mutate() takes a callable fn(state), got {fn!r}")
        prepared = prepare_mutation(
            self.own, self._own_view_value(), fn, with_delta=with_delta, clock=self._clock
        )
        new_own = prepared.own
        try:
            plan = self._publisher.prepare(new_own, prepared.view, prepared.delta, prepared.urgency)
        except Exception as exc:
            raise MutationError(
                f"state {self.name!r}: the mutation to generation {new_own.generation} was not "
                f"committed because it cannot be sent to peers: {type(exc).__name__}: {exc}"
            ) from exc
        save_or_raise(self.config.persistence, new_own, prepared.delta)
        self.own = new_own
        self._metrics.total_mutations += 1
        actions = self._put_own_view(prepared.view)
        actions.extend(self._publisher.commit(plan))
        return new_own.generation, actions

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
        """Process one event; returns the actions it calls for. Never raises for peer input."""
        match event:
            case MessageReceived(message=message):
                return self._on_message(message)
            case ChangeAnnounced(notification=note):
                return self._on_announced(note.source_node, note.generation)
            case PeerJoined(node_id=node):
                return self._on_joined(node)
            case PeerLeft(node_id=node):
                return self._on_left(node)
            case TimerFired(key=key):
                return self._on_timer(key)
            case QueryStarted(query_id=query_id, max_staleness=max_staleness):
                return self._on_query(query_id, max_staleness)
        raise TypeError(f"ShardEngine.handle() got an unknown event {event!r}")

    def cancel_query(self, query_id: int) -> None:
        """Forget a waiting query (its caller gave up)."""
        self._pulls.cancel(query_id)

    @property
    def drops(self) -> dict[str, int]:
        """Messages dropped before the receiver rules, by reason (a copy; any thread)."""
        return self._drops.counts()

    def _drop(self, reason: str, source: str, detail: str) -> None:
        self._drops.drop(
            reason,
            source,
            "state %r: dropped a message from %r (%s): %s",
            self.name,
            source,
            reason,
            detail,
        )

    def _admit(self, source: str) -> bool:
        """Is a message from ``source`` one to act on? Only members' are (SPEC §7).

        A departed node's late messages are ignored until it joins again; the
        node shell re-announces a node that is back (``PeerJoined``).
        """
        if source in self._peers:
            return True
        if source == self.node_id:
            self._drop("own_node", source, "a message claiming to come from this node")
        elif self._peers.departed(source):
            self._metrics.stale_deltas_discarded += 1
        else:
            self._drop("unknown_node", source, "the sender is not a known cluster member")
        return False

    def _peer(self, node: str) -> PeerState:
        status = self._status.get(node)
        if status is None:
            status = self._status[node] = PeerState()
        return status

    def _on_message(
        self, message: FullSnapshot | DeltaUpdate | RequestSnapshot | SnapshotReply
    ) -> list[Action]:
        target = message.snapshot if isinstance(message, SnapshotReply) else message
        if target.state_name != self.name:
            self._drop("wrong_state", target.source_node, f"a message of {target.state_name!r}")
            return []
        if isinstance(message, SnapshotReply):
            return self._on_snapshot(message.snapshot, message.request_id)
        if isinstance(message, FullSnapshot):
            return self._on_snapshot(message, None)
        if isinstance(message, DeltaUpdate):
            return self._on_delta(message)
        return self._on_request(message)

    def _on_snapshot(self, snap: FullSnapshot, reply_id: int | None) -> list[Action]:
        source = snap.source_node
        self._metrics.snapshots_received += 1
        self._metrics.bytes_received += len(snap.payload)
        if not self._admit(source):
            return []
        status = self._peer(source)
        status.saw(snap.generation)
        now = self._clock.now()
        current = self._views.get(source)
        local = current.generation if current else None
        verdict = judge(Kind.SNAPSHOT, snap.generation, local, self._peers.floor(source))
        actions: list[Action] = []
        failure: str | None = None
        recorded = False
        if verdict is Verdict.REPLACE:
            try:
                value = self._decoder.snapshot(snap.payload, snap.wire_version)
            except Unreadable as bad:
                failure, recorded = self._unreadable(source, bad, actions), True
            else:
                view = _view_from(snap, value, now, current)
                actions.append(NotifyView(source, self._views.put(view), view))
                status.synced(now, self._push_latency(snap.modified_time, reply_id))
        elif current is not None and (
            verdict is Verdict.CONFIRM or (verdict is Verdict.DISCARD_STALE and reply_id)
        ):
            # A reply older than the view held still proves the view is that fresh.
            if verdict is Verdict.DISCARD_STALE:
                self._metrics.stale_deltas_discarded += 1
            self._views.put(replace(current, synced_at=now))
            status.synced(now, self._push_latency(snap.modified_time, reply_id))
        else:
            self._metrics.stale_deltas_discarded += 1
            failure = f"the reply is from an older lifetime ({snap.generation})"
        if reply_id is not None:
            held = self._views.get(source)
            if failure is None and held is not None and held.pending_remote_generation:
                failure = (
                    f"the reply (generation {held.generation}) is older than the announced "
                    f"generation {held.pending_remote_generation}"
                )
            actions.extend(self._settle_pull(source, reply_id, failure, recorded=recorded))
        return actions

    def _on_delta(self, update: DeltaUpdate) -> list[Action]:
        source = update.source_node
        self._metrics.deltas_received += 1
        self._metrics.bytes_received += len(update.payload)
        if not self._admit(source):
            return []
        status = self._peer(source)
        status.saw(update.generation)
        current = self._views.get(source)
        local = current.generation if current else None
        verdict = judge(Kind.DELTA, update.generation, local, self._peers.floor(source))
        if verdict is Verdict.GAP and self._delta_type is not None:
            self._metrics.age_gaps_detected += 1
            status.gap_count += 1
            return self._pulls.ensure(source, probe=False)
        if verdict is not Verdict.APPLY and self._delta_type is not None:
            self._metrics.stale_deltas_discarded += 1
            return []
        actions: list[Action] = []
        try:
            delta = self._decoder.delta(update.payload, update.wire_version)
            assert current is not None
            value = self._decoder.apply(current.value, delta)
        except Unreadable as bad:
            self._unreadable(source, bad, actions)
            return actions
        now = self._clock.now()
        view = _view_from(update, value, now, current)
        actions.append(NotifyView(source, self._views.put(view), view))
        status.synced(now, self._push_latency(update.modified_time, None))
        return actions

    def _push_latency(self, modified_ms: int, reply_id: int | None) -> float | None:
        if reply_id is not None:
            return None  # the pull measures its own round trip
        return float(max(0, self._clock.wall_ms() - modified_ms))

    def _unreadable(self, source: str, bad: Unreadable, actions: list[Action]) -> str:
        """Count and log an unusable payload, apply the version policy; returns the reason."""
        self._metrics.sync_failures += 1
        now = self._clock.now()
        if bad.unknown_version is None:
            reason = f"malformed update: {bad.detail}"
            self._peer(source).failed(now, reason)
            self._rate_log.warning(
                ("malformed", source),
                "state %r: kept the view of peer %r: its update could not be read: %s",
                self.name,
                source,
                bad.detail,
            )
            return reason
        reason = f"unreadable wire version {bad.unknown_version}: {bad.detail}"
        self._peer(source).failed(now, reason)
        dropping = self.config.version_mismatch_policy is VersionMismatchPolicy.DROP_AND_WAIT
        self._rate_log.warning(
            ("version", source),
            "state %r: peer %r sent wire version %s, which this node cannot read (%s); %s",
            self.name,
            source,
            bad.unknown_version,
            bad.detail,
            "its view is dropped until a readable update arrives"
            if dropping
            else "its last good view is kept",
        )
        if dropping:
            old = self._views.remove(source)
            if old is not None:
                self._peers.view_dropped(source, old.generation)
                actions.append(NotifyView(source, old, None))
        return reason

    def _on_request(self, request: RequestSnapshot) -> list[Action]:
        source = request.source_node
        if source not in self._peers and not self._peers.departed(source):
            self._drop("unknown_node", source, "a snapshot request from a non-member")
            return []
        return self._send_own(
            lambda view: self._publisher.reply_to(source, request.request_id, self.own, view)
        )

    def _send_own(self, build: Callable[[Any], Action]) -> list[Action]:
        """The own snapshot for one peer; if it cannot be encoded (e.g. it outgrew the
        size cap), count and log it rather than raise into the mailbox."""
        try:
            return [build(self._own_view_value())]
        except Exception as exc:
            self._metrics.sync_failures += 1
            self._rate_log.log(
                logging.ERROR,
                ("encode", self.name),
                "state %r: cannot send the own snapshot at generation %s: %s",
                self.name,
                self.own.generation,
                exc,
            )
            return []

    def _on_announced(self, source: str, generation: Generation) -> list[Action]:
        if not self._admit(source):
            return []
        self._peer(source).saw(generation)
        current = self._views.get(source)
        if current is None:
            floor = self._peers.floor(source)
            if floor is not None and generation < floor:
                self._metrics.stale_deltas_discarded += 1
                return []
            return self._pulls.ensure(source, probe=False)
        pending = current.pending_remote_generation
        if generation <= current.generation or (pending is not None and generation <= pending):
            return []
        self._views.put(replace(current, pending_remote_generation=generation))
        return []

    # -- membership ---------------------------------------------------------------

    def _on_joined(self, node: str) -> list[Action]:
        if node == self.node_id:
            return []
        self._peers.join(node)
        self._publisher.set_peer_count(len(self._peers))
        actions = self._send_own(lambda view: self._publisher.snapshot_to(node, self.own, view))
        if node not in self._views:
            actions.extend(self._pulls.ensure(node, probe=True))
        return actions

    def _on_left(self, node: str) -> list[Action]:
        view, status = self._views.get(node), self._status.get(node)
        seen = status.remote_generation if status else None
        if not self._peers.leave(node, view.generation if view else None, seen):
            return []
        self._publisher.set_peer_count(len(self._peers))
        old = self._views.remove(node)
        self._status.pop(node, None)
        log.info("state %r: peer %r left; its view is removed", self.name, node)
        actions = self._pulls.forget(node)
        if self._probe_failures.pop(node, None) is not None:
            actions.append(CancelTimer(("probe", node)))
        if old is not None:
            actions.append(NotifyView(node, old, None))
        return actions

    # -- pulls, queries and timers ------------------------------------------------

    def _settle_pull(
        self, node: str, request_id: int, failure: str | None, *, recorded: bool = False
    ) -> list[Action]:
        pull = self._pulls.take(node, request_id)
        if pull is None:
            return []
        now = self._clock.now()
        actions: list[Action] = [CancelTimer(pull_timer(node, request_id))]
        held = self._views.get(node)
        if (
            failure is not None
            and held is not None
            and held.synced_at >= pull.started_at
            and held.pending_remote_generation is None
        ):
            failure = None  # another update refreshed the view since the request left
        if failure is None:
            self._probe_failures.pop(node, None)
            self._peer(node).last_sync_latency_ms = (now - pull.started_at) * 1000.0
        elif not recorded and (not pull.probe or node in self._views):
            self._metrics.sync_failures += 1
            self._peer(node).failed(now, failure)
        if failure is not None and node in self._peers and node not in self._views:
            actions.append(self._retry_probe(node))
        held = self._views.get(node)
        synced_at = None if held is None else held.synced_at
        actions.extend(self._pulls.settle_waiters(node, failure, synced_at))
        return actions

    def _retry_probe(self, node: str) -> StartTimer:
        """Ask again later for the snapshot of a member we have no view of (the join
        exchange may have been lost); the delay doubles up to ``PROBE_BACKOFF_CAP``."""
        failures = self._probe_failures.get(node, 0) + 1
        self._probe_failures[node] = failures
        delay = min(PROBE_BACKOFF_CAP, self.config.pull_timeout * 2 ** (failures - 1))
        return StartTimer(("probe", node), delay)

    def _on_query(self, query_id: int, max_staleness: float) -> list[Action]:
        stale = self._views.stale(self._clock.now(), max_staleness)
        if stale and self.config.sync_strategy.pull_on_query:
            for node in stale:
                self._peer(node).last_attempt_time = self._clock.now()
            return self._pulls.wait(query_id, stale, max_staleness)
        reason = "the view is stale and pull_on_query is off"

        return [FinishQuery(query_id, tuple((node, reason) for node in stale))]

    def _on_timer(self, key: TimerKey) -> list[Action]:
        if key in (PERIODIC_TIMER, DELAYED_TIMER):
            try:
                if key == PERIODIC_TIMER:
                    return self._publisher.periodic(self.own, self._own_view_value())
                return self._publisher.flush_window(self.own, self._own_view_value())
            except Exception as exc:
                self._metrics.sync_failures += 1
                self._rate_log.log(
                    logging.ERROR,
                    ("encode", self.name),
                    "state %r: cannot send the own update at generation %s: %s",
                    self.name,
                    self.own.generation,
                    exc,
                )
                return []
        if len(key) == 2 and key[0] == "probe":
            node = key[1]
            if isinstance(node, str) and node in self._peers and node not in self._views:
                return self._pulls.ensure(node, probe=True)
            return []
        if len(key) == 3 and key[0] == "pull":
            node, request_id = key[1], key[2]
            if isinstance(node, str) and isinstance(request_id, int):
                failure = f"no reply within pull_timeout={self.config.pull_timeout}s"
                return self._settle_pull(node, request_id, failure)
        return []

    # -- diagnostics --------------------------------------------------------------

    def sync_status(self) -> list[PeerSyncStatus]:
        """One row per peer this shard tracks (SPEC §10)."""
        rows = []
        for node, status in sorted(self._status.items()):
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
        """Grade this state from its peer rows against ``default_staleness``."""
        return grade_state(
            self.name, self.sync_status(), self._clock.now(), self.config.default_staleness
        )


def _view_from(
    update: FullSnapshot | DeltaUpdate,
    value: Any,
    now: float,
    current: StateViewObject[Any] | None,
) -> StateViewObject[Any]:
    """The view an accepted update makes; a pending mark survives only if still ahead."""
    pending = current.pending_remote_generation if current else None
    return StateViewObject(
        update.generation,
        update.wire_version,
        value,
        update.created_time,
        update.modified_time,
        now,
        pending if pending is not None and pending > update.generation else None,
        update.source_node,
    )
