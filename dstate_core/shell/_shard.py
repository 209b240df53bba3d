"""The shard shell: one actor per registered state, and the handle users hold.

:class:`Shard` is what ``node.register`` returns. Its query fast path runs in
the caller's thread on the engine's published snapshot, with no message and no
lock. Everything that changes the engine (mutations, peer messages, timers,
slow-path queries) goes through the shard's actor, one message at a time; the
actor carries the engine's actions out on the runtime.

On a threaded runtime other threads may do the actor's work themselves, in
turn with it (:mod:`._turns`): a blocking ``mutate`` commits in the caller's
thread, and a peer's update is handled in the thread that delivers it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Generic, Literal, TypeVar, overload

from .._logs import NodeLog
from ..engine._actions import (
    Action,
    AnnounceChange,
    Broadcast,
    CancelTimer,
    FinishQuery,
    NotifyView,
    SendTo,
    StartTimer,
    TimerKey,
)
from ..engine._engine import ShardEngine
from ..engine._events import Event, PeerJoined, QueryStarted, StateLoaded, TimerFired
from ..model._diagnostics import HealthStatus, PeerSyncStatus, StateHealth, StateSyncMetrics
from ..model._errors import ActorSendError, NodeShutdownError, QueryTimeoutError, StalePeerError
from ..model._generation import Generation, StateObject, StateViewObject
from ..model._state import DistributedState
from ..runtime._protocol import ActorAskTimeout, ActorRef, PendingReply, TimerHandle
from ._host import ShardHost
from ._pipeline import MutationQueue, QueuedMutation, take_batch
from ._shard_messages import DRAIN, CancelQuery, OneShot, QueryRequest, Start, Tick
from ._subscription import Subscribers, Subscription, ViewCallback
from ._turns import EngineTurns

__all__ = ["Projection", "Shard", "Subscription", "ViewCallback"]

S = TypeVar("S", bound=DistributedState)
R = TypeVar("R")

#: A query's projection: gets the read-only view map, returns the answer.
Projection = Callable[[Mapping[str, StateViewObject[Any]]], R]


def _not_a_projection(projection: object) -> TypeError:
    return TypeError(
        "query() takes a projection: a function of the views, e.g. "
        f"lambda views: sum(v.value.count for v in views.values()); got {projection!r}"
    )


class Shard(Generic[S]):
    """One registered state on one node: its own shard plus views of every peer's.

    Concurrency: every method is thread-safe. ``query`` on fresh views and
    ``snapshot``/``state``/diagnostics never block; ``mutate`` and slow-path
    queries wait for the shard's turn (its actor, or another caller's commit).
    """

    def __init__(
        self, node: ShardHost, engine: ShardEngine[S], own: StateObject[S], ask_timeout: float
    ) -> None:
        self._node = node
        self._engine = engine
        self._table = engine.view_table
        self._now = node.clock.now
        self._runtime = node.runtime
        self._clock = node.clock
        self._ask_timeout = ask_timeout
        self.name = engine.name
        self.state_type: type[S] = engine.state_type
        self._log = NodeLog("dstate.shard", engine.node_id, self.name)
        self._timers: dict[TimerKey, tuple[int, TimerHandle]] = {}
        self._tokens = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._waiting: dict[int, PendingReply] = {}
        self._subscribers = Subscribers(self.name, self._log)
        self._closed = False
        self._pipeline = MutationQueue()
        self._turns = EngineTurns()
        self._caller_commits = getattr(self._runtime, "threaded", False) is True
        self._ref: ActorRef = self._runtime.spawn(f"dstate.shard.{self.name}", self._receive)
        self._notifier: ActorRef = self._runtime.spawn(
            f"dstate.notify.{self.name}", self._subscribers.notify
        )
        # Before any message reaches the actor: its first event is the loaded state.
        self._execute(engine.handle(StateLoaded(own)))

    def __repr__(self) -> str:
        return f"Shard({self.name!r}, node={self._node.node_id!r})"

    # -- user API -----------------------------------------------------------------

    @property
    def state(self) -> StateObject[S]:
        """The own shard as last committed (never a mutation in progress)."""
        return self._engine.own

    def snapshot(self) -> Mapping[str, StateViewObject[Any]]:
        """The read-only view map (own entry included), with no freshness check."""
        return self._engine.published.views

    @overload
    def mutate(self, fn: Callable[[S], S | None], *, block: Literal[True] = True) -> Generation: ...

    @overload
    def mutate(
        self, fn: Callable[[S], S | None], *, block: Literal[False]
    ) -> Future[Generation]: ...

    def mutate(
        self, fn: Callable[[S], S | None], *, block: bool = True
    ) -> Generation | Future[Generation]:
        """Apply ``fn`` to the own state; it changes it in place or returns a new one.

        Args:
            fn: the mutation.
            block: False returns a :class:`concurrent.futures.Future` at once
                (pipelined: many can be in flight; ``asyncio.wrap_future`` works).
                Mutations of one shard commit in the order of the calls, blocking
                or not; a future resolves once its mutation is committed
                (persisted first where configured) or fails with what the
                blocking call would raise.

        Returns:
            The committed generation (or its future).

        Raises:
            TypeError: ``fn`` is not callable, or returned something that is neither
                ``None`` nor the state.
            MutationError: the result is not valid for the state's model (the
                message is pydantic's, naming the field), the store failed, or the
                update cannot be sent (e.g. it exceeds the message size cap); nothing
                changed.
            NodeShutdownError: the node is shut down (at once, or through the future
                if it shuts down before the mutation's turn).
            Exception: whatever ``fn`` raised; nothing changed.
        """
        return self._mutate(fn, with_delta=False, block=block)

    @overload
    def mutate_with_delta(
        self, fn: Callable[[S], Any], *, block: Literal[True] = True
    ) -> Generation: ...

    @overload
    def mutate_with_delta(
        self, fn: Callable[[S], Any], *, block: Literal[False]
    ) -> Future[Generation]: ...

    def mutate_with_delta(
        self, fn: Callable[[S], Any], *, block: bool = True
    ) -> Generation | Future[Generation]:
        """Delta-aware mutation: ``fn`` changes the state in place and returns the change.

        The change goes through ``project_delta``/``apply_delta``/``sync_urgency``;
        ``block`` is :meth:`mutate`'s.
        """
        return self._mutate(fn, with_delta=True, block=block)

    def _mutate(
        self, fn: Callable[[S], Any], *, with_delta: bool, block: bool
    ) -> Generation | Future[Generation]:
        if not callable(fn):
            raise TypeError(f"mutate() takes a callable fn(state), got {fn!r}")
        if not isinstance(block, bool):
            raise TypeError(f"block must be True or False, got {block!r}")
        self._check_open()
        future: Future[Generation] = Future()
        item = QueuedMutation(fn, with_delta, future)
        if block and self._caller_commits:
            self._commit_in_caller(item)
            return future.result(timeout=0)
        wake = self._pipeline.put(item, wake=not block)
        try:
            if block:
                # The actor commits everything queued up to and including this one.
                self._ref.ask(DRAIN, self._ask_timeout)
                return future.result(timeout=0)
            if wake:
                self._ref.send(DRAIN)
        except ActorSendError as exc:
            self._pipeline.fail_all(self._shut_down_error)
            if block:
                raise self._shut_down_error() from exc
        return future

    def _commit_in_caller(self, item: QueuedMutation) -> None:
        """Commit ``item`` and everything queued before it in this thread, in turn with
        the actor (a threaded runtime's blocking ``mutate``)."""
        if self._turns.mine():
            raise RuntimeError(
                f"state {self.name!r}: mutate() was called while this shard was changing "
                "(from inside a mutation function, or a hook it runs); use mutate(fn, "
                "block=False) there, or mutate after the function returns"
            )
        if not self._turns.take(self._ask_timeout):
            raise ActorAskTimeout(
                f"state {self.name!r}: the shard was busy for longer than ask_timeout="
                f"{self._ask_timeout:g}s; nothing was changed"
            )
        try:
            self._check_open()
            if getattr(self._ref, "alive", True) is False:  # its actors were stopped
                raise self._shut_down_error()
            self._pipeline.put(item, wake=False)
            self._commit_batch()
        finally:
            self._turns.give_back()

    def _shut_down_error(self) -> NodeShutdownError:
        return NodeShutdownError(f"state {self.name!r}: the node is shut down")

    def query(
        self,
        projection: Projection[R],
        max_staleness: float | None = None,
        *,
        on_stale: Literal["raise", "return"] = "raise",
    ) -> R:
        """Run ``projection`` on views no older than ``max_staleness`` seconds.

        Args:
            projection: gets the read-only view map (own entry included).
            max_staleness: the bound; ``None`` uses ``default_staleness``,
                ``float("inf")`` never pulls.
            on_stale: ``"raise"`` (default) raises :class:`StalePeerError` for a
                peer that cannot be refreshed; ``"return"`` answers anyway.

        Raises:
            ValueError: a negative or NaN ``max_staleness``, or a bad ``on_stale``.
            StalePeerError: a peer could not be refreshed in time.
            QueryTimeoutError: the shard's actor did not answer within
                ``pull_timeout`` + 1 s (a busy mailbox); never with ``"return"``.
            Exception: whatever ``projection`` raised.
        """
        # The fast path: one attribute load gives a consistent snapshot; no lock, no message.
        if type(max_staleness) is float and max_staleness >= 0.0:
            bound = max_staleness
        else:
            bound = self._bound(max_staleness)
        if on_stale != "raise" and on_stale != "return":
            raise ValueError(f"on_stale must be 'raise' or 'return', got {on_stale!r}")
        table = self._table
        published = table.latest or table.snapshot()
        if (
            published.pending == 0 and self._now() - published.oldest_synced_at <= bound
        ) or bound == math.inf:
            try:
                return projection(published.views)
            except TypeError:
                if not callable(projection):  # checked only here: the fast path stays fast
                    raise _not_a_projection(projection) from None
                raise
        if not callable(projection):
            raise _not_a_projection(projection)
        self._check_open()
        try:
            failures = self._refresh(bound)
        except QueryTimeoutError:
            if on_stale == "raise":
                raise
            failures = ()  # the mailbox is busy: answer with what is there, as asked
        if failures and on_stale == "raise":
            raise self._stale_error(failures)
        return projection(self._engine.published.views)

    def _bound(self, max_staleness: float | None) -> float:
        if max_staleness is None:
            return self._engine.config.default_staleness
        if (
            isinstance(max_staleness, bool)
            or not isinstance(max_staleness, int | float)
            or math.isnan(max_staleness)
            or max_staleness < 0
        ):
            raise ValueError(
                f"max_staleness must be a number of seconds >= 0 (or None for the default "
                f"{self._engine.config.default_staleness}s), got {max_staleness!r}"
            )
        return float(max_staleness)

    def _refresh(self, bound: float) -> tuple[tuple[str, str], ...]:
        """The slow path: pull stale views through the actor; returns (peer, reason) failures."""
        query_id = next(self._query_ids)
        timeout = self._engine.config.pull_timeout + 1.0
        try:
            failures = self._ref.ask(QueryRequest(query_id, bound), timeout)
        except ActorAskTimeout as exc:
            self._send_quietly(CancelQuery(query_id))
            raise QueryTimeoutError(
                f"state {self.name!r}: refreshing stale views took longer than {timeout}s"
            ) from exc
        except ActorSendError as exc:
            raise NodeShutdownError(f"state {self.name!r}: the node is shut down") from exc
        assert isinstance(failures, tuple)
        return failures

    def _stale_error(self, failures: tuple[tuple[str, str], ...]) -> StalePeerError:
        node, reason = failures[0]
        view = self._engine.published.views.get(node)
        return StalePeerError(
            node,
            view.synced_at if view else None,
            state_name=self.name,
            reason=reason,
            stale_nodes=tuple(peer for peer, _ in failures),
        )

    def subscribe(self, callback: ViewCallback) -> Subscription:
        """Call ``callback(node_id, old, new)`` after every view change (own or peer).

        ``old``/``new`` are ``None`` when the entry was absent/removed. Callbacks
        run off the shard's mailbox, in order; one that raises is logged.
        """
        if not callable(callback):
            raise TypeError(f"subscribe() takes a callable(node_id, old, new), got {callback!r}")
        self._check_open()
        return self._subscribers.add(callback)

    def sync_status(self) -> list[PeerSyncStatus]:
        """One row per peer (``docs/diagnostics.md``)."""
        return self._engine.sync_status()

    def stale_peers(self, max_staleness: float) -> list[PeerSyncStatus]:
        """The peers whose view is older than ``max_staleness`` seconds or pending."""
        return self._engine.stale_peers(self._bound(max_staleness))

    def metrics(self) -> StateSyncMetrics:
        """This shard's counters (``docs/diagnostics.md``)."""
        return self._engine.metrics(self._node._feed_batches_for(self.name))

    def drops(self) -> dict[str, int]:
        """Messages for this state refused before the receiver rules, by reason."""
        return dict(self._engine.drops)

    def health(self) -> StateHealth:
        """This state's health grade."""
        return self._engine.health()

    def peer_health(self) -> dict[str, HealthStatus]:
        """Each peer's grade as :meth:`health` counts it: ``HEALTHY`` (fresh),
        ``DEGRADED`` (stale) or ``UNHEALTHY`` (failing); ``docs/diagnostics.md``."""
        return self._engine.peer_health()

    # -- lifecycle (called by the node) -------------------------------------------

    def _start(self, members: tuple[str, ...]) -> None:
        """Begin replicating with ``members`` (run on the actor, before any later
        delivery: it counts as one)."""
        self._turns.delivery_queued()
        self._ref.send(Start(members))

    def _deliver(self, event: Event) -> None:
        """Hand an engine event to the shard: handled at once in the delivering thread
        when the actor is idle with no delivery queued (so deliveries keep their order),
        else queued for the actor (dropped once stopped)."""
        if self._caller_commits and not self._closed and self._turns.take_if_idle():
            try:
                self._execute(self._engine.handle(event))
            except Exception:  # as the actor's runtime would: log, and the caller goes on
                self._log.exception("handling %r failed", event)
            finally:
                self._turns.give_back()
            return
        self._turns.delivery_queued()
        self._send_quietly(event)

    def _close(self) -> None:
        """Stop the actors and timers; later calls raise :class:`NodeShutdownError`.

        Waits (at most about 1 s) for a turn in progress, so a commit or a delivery
        another thread is carrying out finishes before the timers are cleared."""
        self._closed = True
        took = not self._turns.mine() and self._turns.take(1.0)
        try:
            for _, handle in list(self._timers.values()):
                handle.cancel()
            self._timers.clear()
            for pending in list(self._waiting.values()):
                pending.fail(NodeShutdownError(f"state {self.name!r}: the node is shut down"))
            self._ref.stop()
            self._notifier.stop()
            self._pipeline.fail_all(self._shut_down_error)
        finally:
            if took:
                self._turns.give_back()

    def _check_open(self) -> None:
        if self._closed:
            raise NodeShutdownError(
                f"state {self.name!r}: the node {self._node.node_id!r} is shut down"
            )

    def _send_quietly(self, msg: Any, to: ActorRef | None = None) -> None:
        """Send ``msg`` to the shard's actor (or ``to``); dropped if it is stopped."""
        try:
            (to or self._ref).send(msg)
        except ActorSendError:
            self._log.debug("dropped %r, the actor is stopped", msg)

    # -- the actor ----------------------------------------------------------------

    def _receive(self, msg: Any) -> Any:
        self._turns.take()
        try:
            return self._handle(msg)
        finally:
            self._turns.give_back()

    def _handle(self, msg: Any) -> Any:
        engine = self._engine
        if msg is DRAIN:
            self._commit_batch()
            return None
        if isinstance(msg, Tick):
            held = self._timers.get(msg.key)
            if held is None or held[0] != msg.token:
                return None  # cancelled or replaced: a stale wakeup
            if isinstance(held[1], OneShot):
                del self._timers[msg.key]
            self._execute(engine.handle(TimerFired(msg.key)))
            return None
        if isinstance(msg, QueryRequest):
            pending = PendingReply()
            self._waiting[msg.query_id] = pending
            self._execute(engine.handle(QueryStarted(msg.query_id, msg.max_staleness)))
            return pending
        if isinstance(msg, CancelQuery):
            self._waiting.pop(msg.query_id, None)
            engine.cancel_query(msg.query_id)
            return None
        if isinstance(msg, Start):
            self._turns.delivery_taken()
            actions: list[Action] = []
            for member in msg.members:
                actions.extend(engine.handle(PeerJoined(member)))
            self._execute(actions)
            return None
        self._turns.delivery_taken()  # a delivered event: the other messages are above
        self._execute(engine.handle(msg))
        return None

    def _commit_batch(self) -> None:
        """Commit every queued mutation as one batch; send what it sends; settle futures."""
        batch = take_batch(self._engine, self._pipeline.take())
        if batch is not None:
            try:
                self._execute(batch.actions)
            finally:
                batch.settle()  # committed: the callers learn it even if a send failed

    def _execute(self, actions: list[Action]) -> None:
        node = self._node
        for action in actions:
            if isinstance(action, Broadcast):
                node._broadcast(action.data)
            elif isinstance(action, SendTo):
                node._send_to(action.node_id, action.data)
            elif isinstance(action, NotifyView):
                if self._subscribers.any:
                    self._send_quietly(action, self._notifier)
            elif isinstance(action, StartTimer):
                self._start_timer(action)
            elif isinstance(action, CancelTimer):
                held = self._timers.pop(action.key, None)
                if held is not None:
                    held[1].cancel()
            elif isinstance(action, AnnounceChange):
                node._announce(action.notification)
            elif isinstance(action, FinishQuery):
                pending = self._waiting.pop(action.query_id, None)
                if pending is not None:
                    pending.resolve(action.failures)

    def _start_timer(self, action: StartTimer) -> None:
        held = self._timers.pop(action.key, None)
        if held is not None:
            held[1].cancel()
        token = next(self._tokens)
        tick = Tick(action.key, token)
        if action.repeat:
            handle = self._runtime.send_interval(self._ref, action.delay, tick)
        else:
            handle = OneShot(self._runtime.send_after(self._ref, action.delay, tick))
        self._timers[action.key] = (token, handle)
