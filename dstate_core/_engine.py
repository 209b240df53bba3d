"""The sans-IO replication engine of one shard (SPEC §2.4, §3 to §7, §10).

A :class:`ShardEngine` holds one node's own shard of one state type and its
views of every peer's shard. It is driven by calls (:meth:`ShardEngine.mutate`)
and events (:meth:`ShardEngine.handle`) and answers with actions
(:mod:`dstate_core._actions`) for its shell to carry out. It never touches a
socket, a thread or a timer, and reads time only from its :class:`Clock`, so
every interleaving can be replayed in a test.

Concurrency: an engine belongs to one mailbox. Other threads may read
:attr:`ShardEngine.published` and :attr:`ShardEngine.own` (both replaced
atomically) and the diagnostics methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ._actions import Action, CancelTimer, FinishQuery, NotifyView, SendTo, StartTimer
from ._clock import Clock
from ._config import StateConfig, VersionMismatchPolicy
from ._copying import copy_model
from ._diagnostics import MetricCounters, PeerSyncStatus, StateHealth, StateSyncMetrics, grade_state
from ._errors import DeserializeError, MutationError, PersistError
from ._events import (
    ChangeAnnounced,
    Event,
    MessageReceived,
    PeerJoined,
    PeerLeft,
    QueryStarted,
    TimerFired,
)
from ._generation import Generation, IncarnationSource, StateObject, StateViewObject
from ._messages import DeltaUpdate, FullSnapshot, RequestSnapshot, SnapshotReply
from ._publisher import DELAYED_TIMER, PERIODIC_TIMER, Publisher
from ._ratelimit import RateLimitedLog
from ._rules import Kind, Verdict, judge
from ._state import DeltaDistributedState, DistributedState, validate_state_type
from ._urgency import SyncUrgency
from ._views import PublishedViews, ViewTable
from ._wire import WireCodec

__all__ = ["ShardEngine"]

S = TypeVar("S", bound=DistributedState)

log = logging.getLogger("dstate.engine")


@dataclass(slots=True)
class _PeerState:
    """Mutable per-peer diagnostics behind :class:`PeerSyncStatus`."""

    remote_generation: Generation | None = None
    gap_count: int = 0
    consecutive_failures: int = 0
    last_sync_time: float | None = None
    last_attempt_time: float | None = None
    last_error: str | None = None
    last_sync_latency_ms: float | None = None


@dataclass(slots=True)
class _Pull:
    request_id: int
    started_at: float
    #: A join-time probe: the peer may not have this state; a timeout is no failure.
    probe: bool


@dataclass(slots=True)
class _Waiter:
    remaining: set[str]
    failures: dict[str, str] = field(default_factory=dict)


class _Unreadable(Exception):
    """A payload could not be used; carries the actions already decided."""

    def __init__(self, actions: list[Action]) -> None:
        super().__init__()
        self.actions = actions


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
        self._codec = codec
        self._incarnations = incarnations or IncarnationSource()
        self._delta_type: type[DeltaDistributedState] | None = (
            state_type if issubclass(state_type, DeltaDistributedState) else None
        )
        self._custom_urgency = (
            self._delta_type is not None and self._delta_type.has_custom_urgency()
        )
        self._metrics = MetricCounters()
        self._views = ViewTable(node_id)
        self._peers: set[str] = set()
        self._departed: dict[str, Generation] = {}
        self._status: dict[str, _PeerState] = {}
        self._pulls: dict[str, _Pull] = {}
        self._queries: dict[int, _Waiter] = {}
        self._next_request = 0
        self.drops: dict[str, int] = {}
        self._rate_log = RateLimitedLog(log, clock)
        self._publisher = Publisher(
            state_type, config.sync_strategy, node_id, codec, self._metrics, clock
        )
        self.own: StateObject[S] = self._load_or_fresh()
        self._publisher.mark_broadcast(self.own.generation)
        self._put_own_view(self._project(self.own.value))
        if self._custom_urgency and not config.sync_strategy.has_fallback:
            log.warning(
                "state %r overrides sync_urgency but its strategy has no fallback (push mode "
                "NONE, no periodic sync, no pull on query): DEFAULT and SUPPRESS changes "
                "will never reach peers",
                self.name,
            )

    # -- reading ------------------------------------------------------------------

    @property
    def published(self) -> PublishedViews:
        """The current read-only view map with its O(1) freshness summary."""
        return self._views.published

    def start(self) -> list[Action]:
        """Actions to run once the shell is ready (the periodic sync timer)."""
        interval = self.config.sync_strategy.periodic_full_sync
        if interval is None:
            return []
        return [StartTimer(PERIODIC_TIMER, interval, repeat=True)]

    # -- startup ------------------------------------------------------------------

    def _load_or_fresh(self) -> StateObject[S]:
        store = self.config.persistence
        wall = self._clock.wall_ms()
        if store is not None:
            try:
                loaded = store.load()
                if loaded is not None:
                    value = self.state_type.from_storage(loaded.value, loaded.storage_version)
                    self._incarnations.observe(loaded.generation.incarnation)
                    log.info("state %r: resumed at generation %s", self.name, loaded.generation)
                    return StateObject(
                        loaded.generation,
                        self.state_type.STORAGE_VERSION,
                        value,
                        loaded.created_time,
                        loaded.modified_time,
                    )
            except Exception as exc:
                log.warning(
                    "state %r: could not load the persisted state (%s: %s); starting fresh "
                    "with a new incarnation",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
        try:
            value = self.state_type()
        except Exception as exc:
            raise TypeError(
                f"{self.state_type.__qualname__} must be constructible without arguments "
                f"(give every field a default): {exc}"
            ) from exc
        generation = Generation(self._incarnations.fresh(wall), 0)
        log.info("state %r: fresh start at generation %s", self.name, generation)
        return StateObject(generation, self.state_type.STORAGE_VERSION, value, wall, wall)

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
            MutationError: the store failed (``__cause__`` is the store's error).
            Exception: whatever ``fn`` or a state hook raised.
        """
        if not callable(fn):
            raise TypeError(f"mutate() takes a callable fn(state), got {fn!r}")
        if with_delta and self._delta_type is None:
            raise TypeError(
                f"mutate_with_delta() needs a DeltaDistributedState; {self.name!r} is a "
                "simple DistributedState: use mutate()"
            )
        current = self.own
        work = copy_model(current.value)
        result = fn(work)
        new_state: S = work
        if not with_delta and result is not None:
            if not isinstance(result, self.state_type):
                raise TypeError(
                    f"the mutation of {self.name!r} returned a {type(result).__qualname__}; "
                    f"return None (after changing the state in place) or a "
                    f"{self.state_type.__qualname__}"
                )
            new_state = result
        generation = current.generation.next()
        new_own = StateObject(
            generation,
            self.state_type.STORAGE_VERSION,
            new_state,
            current.created_time,
            max(self._clock.wall_ms(), current.modified_time),
        )
        delta: BaseModel | None = None
        urgency = SyncUrgency.DEFAULT
        if self._delta_type is not None and with_delta:
            delta, view, urgency = self._advance_own_view(result)
        else:
            view = self._project(new_state)
        plan = self._publisher.prepare(new_own, view, delta, urgency)
        self._save(new_own, delta)
        self.own = new_own
        self._metrics.total_mutations += 1
        actions = self._put_own_view(view)
        actions.extend(self._publisher.commit(plan))
        return generation, actions

    def _advance_own_view(self, change: Any) -> tuple[BaseModel, BaseModel, SyncUrgency]:
        kind = self._delta_type
        assert kind is not None
        own_entry = self._views.get(self.node_id)
        assert own_entry is not None
        old_view = own_entry.value
        delta = kind.project_delta(change)
        if not isinstance(delta, kind.Delta):
            raise TypeError(
                f"{kind.__qualname__}.project_delta() must return a {kind.Delta.__qualname__}, "
                f"got {type(delta).__qualname__}"
            )
        view = kind.apply_delta(old_view, delta)
        if not isinstance(view, kind.View) or view is old_view:
            got = "its argument" if view is old_view else type(view).__qualname__
            raise TypeError(
                f"{kind.__qualname__}.apply_delta() must return a new {kind.View.__qualname__} "
                f"(e.g. view.model_copy(update=...)) without changing its argument; got {got}"
            )
        urgency = SyncUrgency.DEFAULT
        if self._custom_urgency:
            urgency = kind.sync_urgency(old_view, view, delta)
            if not isinstance(urgency, SyncUrgency):
                raise TypeError(
                    f"{kind.__qualname__}.sync_urgency() must return a SyncUrgency, got {urgency!r}"
                )
        return delta, view, urgency

    def _project(self, state: S) -> Any:
        if self._delta_type is None:
            return state
        view = state.project_view()  # type: ignore[attr-defined]
        if not isinstance(view, self._delta_type.View):
            raise TypeError(
                f"{self._delta_type.__qualname__}.project_view() must return a "
                f"{self._delta_type.View.__qualname__}, got {type(view).__qualname__}"
            )
        return view

    def _save(self, new_own: StateObject[S], delta: BaseModel | None) -> None:
        store = self.config.persistence
        if store is None:
            return
        try:
            store.save(new_own, delta)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, PersistError) else f"{type(exc).__name__}: {exc}"
            raise MutationError(
                f"state {self.name!r}: the mutation to generation {new_own.generation} was "
                f"not committed because saving it failed: {reason}"
            ) from exc

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
        old = self._views.put(entry)
        return [NotifyView(self.node_id, old, entry)]

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

    def _drop(self, reason: str, source: str, detail: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self._rate_log.warning(
            (reason, source),
            "state %r: dropped a message from %r (%s): %s",
            self.name,
            source,
            reason,
            detail,
        )

    def _admit(self, source: str, generation: Generation | None) -> bool:
        """Is a message from ``source`` (at ``generation``) one to act on?"""
        if source in self._peers:
            return True
        if source == self.node_id:
            self._drop("own_node", source, "a message claiming to come from this node")
            return False
        departed = self._departed.get(source)
        if departed is None:
            self._drop("unknown_node", source, "the sender is not a known cluster member")
            return False
        if generation is not None and generation > departed:
            log.info(
                "state %r: peer %r is back at generation %s (it left at %s)",
                self.name,
                source,
                generation,
                departed,
            )
            del self._departed[source]
            self._add_peer(source)
            return True
        self._metrics.stale_deltas_discarded += 1
        return False

    def _add_peer(self, node: str) -> None:
        self._peers.add(node)
        self._publisher.set_peer_count(len(self._peers))

    def _peer(self, node: str) -> _PeerState:
        status = self._status.get(node)
        if status is None:
            status = self._status[node] = _PeerState()
        return status

    def _on_message(
        self, message: FullSnapshot | DeltaUpdate | RequestSnapshot | SnapshotReply
    ) -> list[Action]:
        if isinstance(message, SnapshotReply):
            snap = message.snapshot
            if snap.state_name != self.name:
                self._drop("wrong_state", snap.source_node, f"a reply for {snap.state_name!r}")
                return []
            return self._on_snapshot(snap, message.request_id)
        if message.state_name != self.name:
            self._drop("wrong_state", message.source_node, f"a message for {message.state_name!r}")
            return []
        if isinstance(message, FullSnapshot):
            return self._on_snapshot(message, None)
        if isinstance(message, DeltaUpdate):
            return self._on_delta(message)
        return self._on_request(message)

    def _on_snapshot(self, snap: FullSnapshot, reply_id: int | None) -> list[Action]:
        source = snap.source_node
        self._metrics.snapshots_received += 1
        self._metrics.bytes_received += len(snap.payload)
        if not self._admit(source, snap.generation):
            return []
        status = self._peer(source)
        _raise_remote(status, snap.generation)
        now = self._clock.now()
        current = self._views.get(source)
        verdict = judge(Kind.SNAPSHOT, snap.generation, current.generation if current else None)
        actions: list[Action] = []
        if verdict is Verdict.REPLACE:
            try:
                value = self._decode(source, snap.wire_version, snap.payload, actions, delta=False)
            except _Unreadable as bad:
                actions = bad.actions
            else:
                pending = current.pending_remote_generation if current else None
                view = StateViewObject(
                    snap.generation,
                    snap.wire_version,
                    value,
                    snap.created_time,
                    snap.modified_time,
                    now,
                    pending if pending is not None and pending > snap.generation else None,
                    source,
                )
                actions.append(NotifyView(source, self._views.put(view), view))
                self._synced(status, now, snap.modified_time, reply_id is None)
        elif verdict is Verdict.CONFIRM or (
            verdict is Verdict.DISCARD_STALE and reply_id is not None and current is not None
        ):
            # A reply older than the view still proves the view is at least that fresh.
            if verdict is Verdict.DISCARD_STALE:
                self._metrics.stale_deltas_discarded += 1
            assert current is not None
            self._views.put(replace(current, synced_at=now))
            self._synced(status, now, snap.modified_time, reply_id is None)
        else:
            self._metrics.stale_deltas_discarded += 1
        if reply_id is not None:
            failure, recorded = self._pull_outcome(source, now)
            actions.extend(self._settle_pull(source, reply_id, failure, recorded=recorded))
        return actions

    def _on_delta(self, update: DeltaUpdate) -> list[Action]:
        source = update.source_node
        self._metrics.deltas_received += 1
        self._metrics.bytes_received += len(update.payload)
        if self._delta_type is None:
            self._malformed(source, "a delta for a simple state")
            return []
        if not self._admit(source, update.generation):
            return []
        status = self._peer(source)
        _raise_remote(status, update.generation)
        current = self._views.get(source)
        verdict = judge(Kind.DELTA, update.generation, current.generation if current else None)
        if verdict is Verdict.GAP:
            self._metrics.age_gaps_detected += 1
            status.gap_count += 1
            return self._ensure_pull(source, probe=False)
        if verdict is not Verdict.APPLY:
            self._metrics.stale_deltas_discarded += 1
            return []
        assert current is not None
        actions: list[Action] = []
        try:
            delta = self._decode(source, update.wire_version, update.payload, actions, delta=True)
            value = self._delta_type.apply_delta(current.value, delta)
            if not isinstance(value, self._delta_type.View):
                raise TypeError(f"apply_delta() returned a {type(value).__qualname__}")
        except _Unreadable as bad:
            return bad.actions
        except Exception as exc:
            self._malformed(source, f"apply_delta() failed: {type(exc).__name__}: {exc}")
            return actions
        now = self._clock.now()
        pending = current.pending_remote_generation
        view = StateViewObject(
            update.generation,
            update.wire_version,
            value,
            update.created_time,
            update.modified_time,
            now,
            pending if pending is not None and pending > update.generation else None,
            source,
        )
        actions.append(NotifyView(source, self._views.put(view), view))
        self._synced(status, now, update.modified_time, True)
        return actions

    def _decode(
        self, source: str, wire_version: int, payload: bytes, actions: list[Action], *, delta: bool
    ) -> Any:
        kind = self._delta_type
        try:
            if delta:
                assert kind is not None
                value: Any = kind.deserialize_delta(payload, wire_version)
                expected: type = kind.Delta
            elif kind is not None:
                value, expected = kind.deserialize_view(payload, wire_version), kind.View
            else:
                value = self.state_type.deserialize_state(payload, wire_version)
                expected = self.state_type
        except DeserializeError as exc:
            if exc.unknown_version is None:
                self._malformed(source, str(exc))
                raise _Unreadable(actions) from exc
            raise _Unreadable(self._version_mismatch(source, exc, actions)) from exc
        except Exception as exc:
            self._malformed(source, f"the deserializer raised {type(exc).__name__}: {exc}")
            raise _Unreadable(actions) from exc
        if not isinstance(value, expected):
            self._malformed(
                source, f"the deserializer returned a {type(value).__qualname__}, not {expected}"
            )
            raise _Unreadable(actions)
        return value

    def _fail(self, source: str, error: str) -> None:
        status = self._peer(source)
        status.consecutive_failures += 1
        status.last_error = error
        status.last_attempt_time = self._clock.now()
        self._metrics.sync_failures += 1

    def _malformed(self, source: str, detail: str) -> None:
        self._fail(source, f"malformed update: {detail}")
        self._rate_log.warning(
            ("malformed", source),
            "state %r: kept the view of peer %r: its update could not be read: %s",
            self.name,
            source,
            detail,
        )

    def _version_mismatch(
        self, source: str, exc: DeserializeError, actions: list[Action]
    ) -> list[Action]:
        policy = self.config.version_mismatch_policy
        self._fail(source, f"unreadable wire version {exc.unknown_version}: {exc}")
        dropping = policy is VersionMismatchPolicy.DROP_AND_WAIT
        self._rate_log.warning(
            ("version", source),
            "state %r: peer %r sent wire version %s, which this node cannot read (%s); %s",
            self.name,
            source,
            exc.unknown_version,
            exc,
            "dropping its view until a readable update arrives"
            if dropping
            else "keeping its last good view",
        )
        if dropping:
            old = self._views.remove(source)
            if old is not None:
                actions.append(NotifyView(source, old, None))
        return actions

    def _synced(self, status: _PeerState, now: float, modified_ms: int, pushed: bool) -> None:
        status.consecutive_failures = 0
        status.last_error = None
        status.last_sync_time = now
        if pushed:
            status.last_sync_latency_ms = float(max(0, self._clock.wall_ms() - modified_ms))

    def _on_request(self, request: RequestSnapshot) -> list[Action]:
        source = request.source_node
        if source not in self._peers and source not in self._departed:
            self._drop("unknown_node", source, "a snapshot request from a non-member")
            return []
        return [
            self._publisher.reply_to(source, request.request_id, self.own, self._own_view_value())
        ]

    def _on_announced(self, source: str, generation: Generation) -> list[Action]:
        if not self._admit(source, generation):
            return []
        _raise_remote(self._peer(source), generation)
        current = self._views.get(source)
        if current is None:
            return self._ensure_pull(source, probe=False)
        pending = current.pending_remote_generation
        if generation <= current.generation or (pending is not None and generation <= pending):
            return []
        self._views.put(replace(current, pending_remote_generation=generation))
        return []

    # -- membership ---------------------------------------------------------------

    def _on_joined(self, node: str) -> list[Action]:
        if node == self.node_id:
            return []
        self._departed.pop(node, None)
        self._add_peer(node)
        actions: list[Action] = [
            self._publisher.snapshot_to(node, self.own, self._own_view_value())
        ]
        if node not in self._views:
            actions.extend(self._ensure_pull(node, probe=True))
        return actions

    def _on_left(self, node: str) -> list[Action]:
        if node not in self._peers:
            return []
        self._peers.discard(node)
        self._publisher.set_peer_count(len(self._peers))
        old = self._views.remove(node)
        status = self._status.pop(node, None)
        last = [g for g in (old and old.generation, status and status.remote_generation) if g]
        self._departed[node] = max(last, default=Generation(0, 0))
        log.info("state %r: peer %r left; its view is removed", self.name, node)
        actions: list[Action] = []
        pull = self._pulls.pop(node, None)
        if pull is not None:
            actions.append(CancelTimer(("pull", node, pull.request_id)))
        actions.extend(self._resolve_waiters(node, None))
        if old is not None:
            actions.append(NotifyView(node, old, None))
        return actions

    # -- pulls and queries --------------------------------------------------------

    def _ensure_pull(self, node: str, *, probe: bool) -> list[Action]:
        pull = self._pulls.get(node)
        if pull is not None:
            pull.probe = pull.probe and probe
            return []
        self._next_request += 1
        request_id = self._next_request
        now = self._clock.now()
        self._pulls[node] = _Pull(request_id, now, probe)
        if not probe:
            self._peer(node).last_attempt_time = now
        data = self._codec.encode(RequestSnapshot(self.name, self.node_id, request_id))
        self._metrics.bytes_sent += len(data)
        return [
            SendTo(node, data),
            StartTimer(("pull", node, request_id), self.config.pull_timeout),
        ]

    def _pull_outcome(self, node: str, now: float) -> tuple[str | None, bool]:
        """Why a reply did not refresh the view (None if it did), and if that was recorded."""
        view = self._views.get(node)
        if view is None or view.synced_at != now:
            status = self._status.get(node)
            return (status and status.last_error) or "the reply could not be used", True
        if view.pending_remote_generation is not None:
            reason = (
                f"the reply (generation {view.generation}) is older than the announced "
                f"generation {view.pending_remote_generation}"
            )
            return reason, False
        return None, False

    def _settle_pull(
        self, node: str, request_id: int, failure: str | None, *, recorded: bool = False
    ) -> list[Action]:
        pull = self._pulls.get(node)
        if pull is None or pull.request_id != request_id:
            return []
        del self._pulls[node]
        now = self._clock.now()
        actions: list[Action] = [CancelTimer(("pull", node, request_id))]
        if failure is None:
            self._peer(node).last_sync_latency_ms = (now - pull.started_at) * 1000.0
        elif not recorded and (not pull.probe or node in self._views):
            self._fail(node, failure)
        actions.extend(self._resolve_waiters(node, failure))
        return actions

    def _resolve_waiters(self, node: str, failure: str | None) -> list[Action]:
        finished: list[int] = []
        for query_id, waiter in self._queries.items():
            if node in waiter.remaining:
                waiter.remaining.discard(node)
                if failure is not None:
                    waiter.failures[node] = failure
                if not waiter.remaining:
                    finished.append(query_id)
        actions: list[Action] = []
        for query_id in finished:
            waiter = self._queries.pop(query_id)
            actions.append(FinishQuery(query_id, tuple(sorted(waiter.failures.items()))))
        return actions

    def _on_query(self, query_id: int, max_staleness: float) -> list[Action]:
        stale = self._views.stale(self._clock.now(), max_staleness)
        if not stale:
            return [FinishQuery(query_id, ())]
        if not self.config.sync_strategy.pull_on_query:
            reason = "the view is stale and pull_on_query is off"
            return [FinishQuery(query_id, tuple((node, reason) for node in stale))]
        self._queries[query_id] = _Waiter(set(stale))
        actions: list[Action] = []
        for node in stale:
            actions.extend(self._ensure_pull(node, probe=False))
        return actions

    def cancel_query(self, query_id: int) -> None:
        """Forget a waiting query (its caller gave up)."""
        self._queries.pop(query_id, None)

    # -- timers -------------------------------------------------------------------

    def _on_timer(self, key: tuple[str | int, ...]) -> list[Action]:
        try:
            if key == PERIODIC_TIMER:
                return self._publisher.periodic(self.own, self._own_view_value())
            if key == DELAYED_TIMER:
                return self._publisher.flush_window(self.own, self._own_view_value())
        except Exception as exc:
            self._metrics.sync_failures += 1
            log.error("state %r: could not encode the own snapshot: %s", self.name, exc)
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
                PeerSyncStatus(
                    node_id=node,
                    state_name=self.name,
                    local_generation=view.generation if view else None,
                    remote_generation=status.remote_generation,
                    gap_count=status.gap_count,
                    consecutive_failures=status.consecutive_failures,
                    last_sync_time=view.synced_at if view else status.last_sync_time,
                    last_attempt_time=status.last_attempt_time,
                    last_error=status.last_error,
                    last_sync_latency_ms=status.last_sync_latency_ms,
                )
            )
        return rows

    def stale_peers(self, max_staleness: float) -> list[PeerSyncStatus]:
        """The rows whose view is older than ``max_staleness`` or behind the announced one."""
        now = self._clock.now()
        return [row for row in self.sync_status() if row.is_stale(now, max_staleness)]

    def metrics(self, feed_batches_sent: int = 0) -> StateSyncMetrics:
        """A snapshot of the counters (the feed count comes from the node's aggregator)."""
        return self._metrics.freeze(feed_batches_sent=feed_batches_sent)

    def health(self) -> StateHealth:
        """Grade this state from its peer rows against ``default_staleness``."""
        return grade_state(
            self.name, self.sync_status(), self._clock.now(), self.config.default_staleness
        )

    @property
    def peers(self) -> frozenset[str]:
        """The cluster members this shard currently replicates with."""
        return frozenset(self._peers)


def _raise_remote(status: _PeerState, generation: Generation) -> None:
    if status.remote_generation is None or generation > status.remote_generation:
        status.remote_generation = generation
