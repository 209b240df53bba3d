"""The node shell: a registry of shards over one actor runtime.

A :class:`DStateNode` owns three kinds of actors on its runtime: one *inbox*
(the node's network door; member of the cluster-wide group ``dstate.inbox``),
one *feed* (the change-feed aggregator) and one actor per registered state.
Cluster events reach every shard in order; bytes from peers are decoded once
by the inbox and routed to the shard of their state.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .._logs import NodeLog
from ..engine._actions import Action, Broadcast, StartTimer
from ..engine._engine import DEFAULT_MAX_CLOCK_SKEW, ShardEngine
from ..engine._events import PeerJoined, PeerLeft
from ..engine._feed import ChangeFeedAggregator
from ..model._clock import Clock, SystemClock
from ..model._config import ChangeFeedConfig, StateConfig
from ..model._diagnostics import SystemHealth
from ..model._errors import (
    ActorSendError,
    DuplicateNameError,
    NodeShutdownError,
    StateNotRegisteredError,
    TypeMismatchError,
)
from ..model._generation import IncarnationSource
from ..model._state import DistributedState, validate_state_type
from ..net._report import StateReport
from ..persistence._incarnations import IncarnationFile
from ..persistence._own_shard import load_or_fresh
from ..runtime._protocol import (
    ActorRef,
    ActorRuntime,
    ClusterEvent,
    NodeJoined,
    NodeLeft,
    TimerHandle,
)
from ..wire._codec import DEFAULT_MAX_MESSAGE_BYTES, MAX_NAME_LENGTH, WireCodec
from ..wire._messages import ChangeNotification
from ._inbox import InboundRouter
from ._shard import Shard
from ._status import state_reports

__all__ = ["INBOX_GROUP", "DStateNode"]

S = TypeVar("S", bound=DistributedState)

#: The cluster-wide group every node's inbox joins.
INBOX_GROUP = "dstate.inbox"


class _FeedTick:
    """The feed actor's batch timer message."""


class DStateNode:
    """One cluster member's replicated states (``docs/architecture.md#layers``).

    Args:
        runtime: the actor runtime this node runs on (already in its cluster).
        change_feed: the change-feed aggregator's settings.
        clock: the time source (default :class:`SystemClock`).
        cluster_secret: a key shared by all members; every message is then
            authenticated with HMAC-SHA256 and unauthenticated ones are dropped.
        max_message_bytes: inbound and outbound messages larger than this are refused.
        incarnations: the incarnation source (pass one that outlives restarts to
            guarantee fresh incarnations in tests with a frozen clock).
        data_dir: a directory where the node records its last incarnation, so a
            fresh start after a restart never reuses one even if the clock stepped
            back (``docs/protocol.md#generations``); states without persistence benefit too.
        ask_timeout: how long ``mutate`` waits for the shard's actor.
        max_clock_skew: how far (s) a peer's incarnation may run ahead of this
            node's wall clock; updates claiming a later one are refused, counted
            (``future_generation``) and logged. Raise it if your hosts' clocks
            disagree by more (``docs/protocol.md#forged-generations``).

    Concurrency: every method is thread-safe.
    """

    def __init__(
        self,
        runtime: ActorRuntime,
        change_feed: ChangeFeedConfig | None = None,
        clock: Clock | None = None,
        cluster_secret: bytes | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        incarnations: IncarnationSource | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        ask_timeout: float = 30.0,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        node_id = getattr(runtime, "node_id", None)
        if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_NAME_LENGTH:
            raise ValueError(
                f"DStateNode needs an ActorRuntime whose node_id is a non-empty str of at "
                f"most {MAX_NAME_LENGTH} characters, got {runtime!r}"
            )
        if change_feed is not None and not isinstance(change_feed, ChangeFeedConfig):
            raise TypeError(f"change_feed must be a ChangeFeedConfig, got {change_feed!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must implement Clock (now, wall_ms), got {clock!r}")
        if ask_timeout <= 0:
            raise ValueError(f"ask_timeout must be > 0 seconds, got {ask_timeout!r}")
        if (
            isinstance(max_clock_skew, bool)
            or not isinstance(max_clock_skew, int | float)
            or not 0 <= max_clock_skew < float("inf")
        ):
            raise ValueError(
                f"max_clock_skew must be a finite number of seconds >= 0, got {max_clock_skew!r}"
            )
        self._max_clock_skew = float(max_clock_skew)
        self._log = NodeLog("dstate.node", node_id)
        self.runtime = runtime
        self.node_id: str = node_id
        self.clock: Clock = clock or SystemClock()
        self._codec = WireCodec(cluster_secret, max_message_bytes)
        if data_dir is not None:
            if incarnations is not None:
                raise ValueError("pass either data_dir or incarnations, not both")
            record = IncarnationFile(data_dir)
            record.check_writable()
            incarnations = record.source()
        self._incarnations = incarnations or IncarnationSource()
        self._ask_timeout = ask_timeout
        self._router = InboundRouter(node_id, self._codec, self.clock)
        self._feed = ChangeFeedAggregator(node_id, change_feed or ChangeFeedConfig(), self._codec)
        self._feed_timer: TimerHandle | None = None
        self._shards: dict[str, Shard[Any]] = {}
        self._members: set[str] = set()
        self._inboxes: dict[str, ActorRef] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._inbox = runtime.spawn("dstate.inbox", self._on_inbound)
        self._feed_ref = runtime.spawn("dstate.feed", self._on_feed)
        runtime.join_group(INBOX_GROUP, self._inbox)
        self._subscription = runtime.cluster_events.subscribe(self._on_cluster_event)
        # A network transport (TcpNetwork) answers observers' status requests with this.
        self._answer_status = getattr(getattr(runtime, "network", None), "answer_status", None)
        if callable(self._answer_status):
            self._answer_status(self._status)

    def __repr__(self) -> str:
        return f"DStateNode({self.node_id!r}, states={sorted(self._shards)})"

    # -- registry -----------------------------------------------------------------

    def register(self, state_type: type[S], config: StateConfig | None = None) -> Shard[S]:
        """Start replicating ``state_type`` on this node (``docs/architecture.md#layers``).

        Loads the own shard from ``config.persistence`` if it holds one, then
        exchanges snapshots with every peer that has the state registered.

        Raises:
            TypeError, ValueError: not a valid state class or config.
            DuplicateNameError: a state with the same ``NAME`` is registered.
            PersistError: the persistence backend cannot be used.
        """
        self._check_open()
        validate_state_type(state_type)
        if len(state_type.NAME) > MAX_NAME_LENGTH:
            raise ValueError(
                f"{state_type.__qualname__}.NAME is longer than {MAX_NAME_LENGTH} characters"
            )
        if config is None:
            config = StateConfig()
        elif not isinstance(config, StateConfig):
            raise TypeError(f"register() takes a StateConfig, got {config!r}")
        store = config.persistence
        for step in ("bind", "check_writable"):  # optional backend hooks: fail early, by name
            hook = getattr(store, step, None)
            if callable(hook):
                hook(*((state_type,) if step == "bind" else ()))
        with self._lock:
            if state_type.NAME in self._shards:
                raise DuplicateNameError(state_type.NAME)
            engine = ShardEngine(
                state_type,
                config,
                self.node_id,
                self.clock,
                self._codec,
                max_clock_skew=self._max_clock_skew,
            )
            own = load_or_fresh(
                state_type,
                store,
                self.clock,
                self._incarnations,
                self._log.for_state(state_type.NAME, "dstate.persistence"),
            )
            shard = Shard(self, engine, own, self._ask_timeout)
            self._shards[state_type.NAME] = shard
            shard._start(tuple(sorted(self._members)))
        self._log.info(
            "registered state %r at generation %s",
            state_type.NAME,
            engine.own.generation,
        )
        return shard

    def lookup(self, name: str) -> Shard[Any]:
        """The shard registered under ``name``.

        Raises:
            StateNotRegisteredError: no such state here.
        """
        shard = self._shards.get(name)
        if shard is None:
            raise StateNotRegisteredError(name, list(self._shards))
        return shard

    def lookup_typed(self, name: str, state_type: type[S]) -> Shard[S]:
        """The shard registered under ``name``, checked to be of ``state_type``.

        Raises:
            StateNotRegisteredError: no such state here.
            TypeMismatchError: it is registered with another type.
        """
        shard = self.lookup(name)
        if shard.state_type is not state_type:
            raise TypeMismatchError(name, state_type, shard.state_type)
        return shard

    @property
    def states(self) -> Mapping[str, Shard[Any]]:
        """Every registered shard by name (a copy)."""
        return dict(self._shards)

    def is_ready(self, expected_members: Iterable[str] = ()) -> bool:
        """True when every registered state holds a view of every current member, and
        every node of ``expected_members`` is a member (see :meth:`wait_ready`)."""
        with self._lock:
            members = set(self._members)
            shards = list(self._shards.values())
        if not set(expected_members) <= members | {self.node_id}:
            return False
        return all(members <= set(shard.snapshot()) for shard in shards)

    def wait_ready(
        self,
        timeout: float,
        expected_members: Iterable[str] | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Wait until the node can answer from local memory: every registered state has
        loaded its own shard (it has, once ``register`` returned) and holds a view of
        every current member (the join exchange is done), and every node named in
        ``expected_members`` has joined.

        Returns False if ``timeout`` seconds passed first (or ``cancel`` was set). On
        the deterministic runtime nothing moves while this waits: drive the cluster,
        then call it with ``timeout=0`` to check.

        Raises:
            ValueError: ``timeout`` is negative or not a number.
            TypeError: ``expected_members`` is a str (give a list of node ids).
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not (0 <= timeout < math.inf)
        ):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        if isinstance(expected_members, str):
            raise TypeError("expected_members is a list of node ids, not one str")
        expected = list(expected_members or ())
        deadline = time.monotonic() + timeout
        pause = threading.Event() if cancel is None else cancel
        while not self.is_ready(expected):
            left = deadline - time.monotonic()
            if left <= 0 or pause.wait(min(left, 0.01)):
                return self.is_ready(expected)
        return True

    def health_check(self) -> SystemHealth:
        """Every state's health; ``status`` is the worst (``docs/diagnostics.md``)."""
        return SystemHealth.of([shard.health() for shard in list(self._shards.values())])

    @property
    def dropped_messages(self) -> Mapping[str, int]:
        """Inbound messages dropped unread or refused by a shard, by reason."""
        counts = dict(self._router.drops)
        for shard in list(self._shards.values()):
            for reason, count in shard.drops().items():
                counts[reason] = counts.get(reason, 0) + count
        return counts

    def shutdown(self) -> None:
        """Stop this node's actors and timers (the runtime keeps running); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            shards = list(self._shards.values())
        self.runtime.cluster_events.unsubscribe(self._subscription)
        if self._feed_timer is not None:
            self._feed_timer.cancel()
        for shard in shards:
            shard._close()
        try:
            self.runtime.leave_group(INBOX_GROUP, self._inbox)
        except Exception:  # the runtime may already be down
            self._log.debug("leaving the inbox group failed", exc_info=True)
        self._inbox.stop()
        self._feed_ref.stop()
        if callable(self._answer_status):
            self._answer_status(None)
        self._log.info("shut down")

    @property
    def closed(self) -> bool:
        """True after :meth:`shutdown`."""
        return self._closed

    def _status(self) -> tuple[bool, list[StateReport]]:
        """Readiness and every state's report, for an observer (any thread)."""
        with self._lock:
            shards = list(self._shards.values())
        return self.is_ready(), state_reports(shards, self.clock.now())

    def _check_open(self) -> None:
        if self._closed:
            raise NodeShutdownError(f"node {self.node_id!r} is shut down")

    # -- plumbing used by shards --------------------------------------------------

    def _broadcast(self, data: bytes) -> None:
        """Send bytes to every peer's inbox."""
        try:
            self.runtime.broadcast_group(INBOX_GROUP, data)
        except Exception as exc:
            self._log.warning("a broadcast failed: %s", exc)

    def _send_to(self, node_id: str, data: bytes) -> None:
        """Send bytes to one peer's inbox (dropped if it is not reachable)."""
        ref = self._inboxes.get(node_id)
        if ref is None:
            ref = self._find_inbox(node_id)
            if ref is None:
                self._log.debug("no inbox of %r to send to", node_id, peer=node_id)
                return
        try:
            ref.send(data)
        except ActorSendError:
            self._inboxes.pop(node_id, None)

    def _find_inbox(self, node_id: str) -> ActorRef | None:
        for ref in self.runtime.group_members(INBOX_GROUP):
            if ref.node_id == node_id:
                self._inboxes[node_id] = ref
                return ref
        return None

    def _announce(self, note: ChangeNotification) -> None:
        """Hand a change notification to the node's feed actor."""
        try:
            self._feed_ref.send(note)
        except ActorSendError:
            self._log.debug("the feed is stopped")

    def _feed_batches_for(self, state_name: str) -> int:
        """How many feed batches carried ``state_name``."""
        return self._feed.batches_for(state_name)

    # -- actors -------------------------------------------------------------------

    def _on_inbound(self, data: Any) -> None:
        for state_name, event in self._router.route(data, self._shards):
            shard = self._shards.get(state_name)
            if shard is None:
                continue
            source = event.source_node
            if source not in self._members and source != self.node_id:
                self._readmit_if_live(source)
            shard._deliver(event)

    def _readmit_if_live(self, node_id: str) -> None:
        """A message from a non-member: if the runtime shows it live (its inbox is in the
        group), it came back after a NodeLeft that was processed late; re-add it."""
        with self._lock:
            if node_id in self._members or self._find_inbox(node_id) is None:
                return
            self._log.info("%r is live again; re-adding it", node_id, peer=node_id)
            self._members.add(node_id)
            for shard in self._shards.values():
                shard._deliver(PeerJoined(node_id))

    def _on_feed(self, msg: Any) -> None:
        if isinstance(msg, ChangeNotification):
            self._execute_feed(self._feed.record(msg))
        elif isinstance(msg, _FeedTick):
            self._feed_timer = None
            self._execute_feed(self._feed.flush())

    def _execute_feed(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self._broadcast(action.data)
            elif isinstance(action, StartTimer) and not self._closed:
                self._feed_timer = self.runtime.send_after(
                    self._feed_ref, action.delay, _FeedTick()
                )

    def _on_cluster_event(self, event: ClusterEvent) -> None:
        with self._lock:
            if self._closed or event.node_id == self.node_id:
                return
            if isinstance(event, NodeJoined):
                # It may be a restart: its inbox is a new actor, so forget the cached ref.
                self._inboxes.pop(event.node_id, None)
                self._members.add(event.node_id)
                shard_event: PeerJoined | PeerLeft = PeerJoined(event.node_id)
            elif isinstance(event, NodeLeft):
                self._inboxes.pop(event.node_id, None)
                if self._find_inbox(event.node_id) is not None:
                    # A late NodeLeft: the node crashed and is already back (its new
                    # inbox is in the group). Removing its views now would leave a hole.
                    self._log.info(
                        "ignored a late NodeLeft of %r, which has re-joined",
                        event.node_id,
                        peer=event.node_id,
                    )
                    return
                self._members.discard(event.node_id)
                shard_event = PeerLeft(event.node_id)
            else:
                return
            for shard in self._shards.values():
                shard._deliver(shard_event)
