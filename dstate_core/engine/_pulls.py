"""Pulls, join probes and the slow-path queries waiting on them.

At most one pull is in flight per peer; every query that needs that peer
waits on the same pull (coalescing). A pull ends with the peer's reply or its
``pull_timeout`` timer; each waiting query finishes when all of its peers are
settled, with the reasons of those that failed.

A *probe* is the pull a shard sends to a new member it holds no view of (the
join exchange): the member may not host the state at all, so a probe that
times out is no failure. While a member stays without a view, the probe is
retried, first after half a second and then with a doubling delay, so a lost
join exchange repairs itself within a second or two
(``docs/protocol.md#join-and-leave``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model._clock import Clock
from ..model._config import StateConfig
from ..model._diagnostics import MetricCounters
from ..wire._codec import WireCodec
from ..wire._messages import RequestSnapshot
from ._actions import (
    Action,
    CancelTimer,
    FinishQuery,
    ProbeTimer,
    PullTimer,
    SendTo,
    StartTimer,
)
from ._peers import Membership, PeerStatuses
from ._views import ViewTable

__all__ = ["PROBE_BACKOFF_CAP", "Pull", "PullTracker"]

#: Longest wait (s) between retries of a lost join exchange with a member.
PROBE_BACKOFF_CAP = 30.0
#: A probe's own timeout (s), at most: a lost join exchange is noticed and retried fast.
PROBE_TIMEOUT = 1.0
#: The first retry's delay (s); it doubles up to :data:`PROBE_BACKOFF_CAP`.
PROBE_FIRST_RETRY = 0.5


@dataclass(slots=True)
class Pull:
    """One in-flight snapshot request."""

    request_id: int
    started_at: float
    #: A join-time probe: the peer may not have this state, so a timeout is no failure.
    probe: bool


@dataclass(slots=True)
class _Waiter:
    remaining: set[str]
    #: A view synced before this (the query's start minus its bound) is too old.
    not_before: float
    failures: dict[str, str] = field(default_factory=dict)


class PullTracker:
    """In-flight pulls by peer, probe retries, and the queries waiting for them.

    Args:
        state_name, node_id: the shard's state and node.
        clock, codec, config: as the engine's.
        views, peers, statuses, metrics: the engine's, read and updated here.

    Concurrency: used by one thread at a time (the shard's turn).
    """

    def __init__(
        self,
        state_name: str,
        node_id: str,
        clock: Clock,
        codec: WireCodec,
        config: StateConfig,
        views: ViewTable,
        peers: Membership,
        statuses: PeerStatuses,
        metrics: MetricCounters,
    ) -> None:
        self._state_name = state_name
        self._node_id = node_id
        self._clock = clock
        self._codec = codec
        self._timeout = config.pull_timeout
        self._pull_on_query = config.sync_strategy.pull_on_query
        self._views = views
        self._peers = peers
        self._statuses = statuses
        self._metrics = metrics
        self._pulls: dict[str, Pull] = {}
        self._queries: dict[int, _Waiter] = {}
        #: Failed join probes per peer without a view, for the retry backoff.
        self._probe_failures: dict[str, int] = {}
        self._next_request = 0
        self.bytes_sent = 0

    def in_flight(self, node: str) -> bool:
        """True while a pull to ``node`` is waiting for its reply."""
        return node in self._pulls

    def is_in_flight(self, node: str, request_id: int) -> bool:
        """True if ``request_id`` is the pull to ``node`` waiting for its reply."""
        pull = self._pulls.get(node)
        return pull is not None and pull.request_id == request_id

    @property
    def last_request_id(self) -> int:
        """The id of the latest pull sent (ids grow: a later pull has a larger one)."""
        return self._next_request

    def ensure(self, node: str, *, probe: bool) -> list[Action]:
        """Start a pull to ``node`` unless one is in flight.

        A real pull does not wait on an in-flight join probe: the peer may have
        dropped the probe (it had not registered the state yet), so a fresh
        request replaces it.
        """
        actions: list[Action] = []
        pull = self._pulls.get(node)
        if pull is not None:
            if probe or not pull.probe:
                return []
            del self._pulls[node]
            actions.append(CancelTimer(PullTimer(node, pull.request_id)))
        self._next_request += 1
        request_id = self._next_request
        self._pulls[node] = Pull(request_id, self._clock.now(), probe)
        data = self._codec.encode(RequestSnapshot(self._state_name, self._node_id, request_id))
        self.bytes_sent += len(data)
        timeout = min(self._timeout, PROBE_TIMEOUT) if probe else self._timeout
        actions += [SendTo(node, data), StartTimer(PullTimer(node, request_id), timeout)]
        return actions

    def settle(
        self, node: str, request_id: int, failure: str | None, *, recorded: bool = False
    ) -> list[Action]:
        """The pull ``request_id`` to ``node`` ended (a reply came, or it timed out).

        Args:
            failure: why it did not refresh the view, or ``None``.
            recorded: the failure is already counted (an unreadable reply).
        """
        pull = self._pulls.get(node)
        if pull is None or pull.request_id != request_id:
            return []
        del self._pulls[node]
        now = self._clock.now()
        actions: list[Action] = [CancelTimer(PullTimer(node, request_id))]
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
            self._statuses.of(node).last_sync_latency_ms = (now - pull.started_at) * 1000.0
        elif not recorded and (not pull.probe or node in self._views):
            self._metrics.sync_failures += 1
            self._statuses.of(node).failed(now, failure)
        if failure is not None and node in self._peers and node not in self._views:
            actions.append(self._retry_probe(node))
        held = self._views.get(node)
        synced_at = None if held is None else held.synced_at
        actions.extend(self._settle_waiters(node, failure, synced_at))
        return actions

    def timed_out(self, key: PullTimer) -> list[Action]:
        """A pull's ``pull_timeout`` passed with no reply."""
        failure = f"no reply within pull_timeout={self._timeout}s"
        return self.settle(key.node, key.request_id, failure)

    def probe_again(self, key: ProbeTimer) -> list[Action]:
        """The retry of a join probe is due: probe if the member still has no view."""
        node = key.node
        if node in self._peers and node not in self._views:
            return self.ensure(node, probe=True)
        return []

    def heard_from(self, node: str) -> list[Action]:
        """``node`` just reached this shard (it asked for our snapshot): if we still hold
        no view of it, probe it now rather than at the next backed-off retry. Its
        earlier probes may have been lost while the path between us was not up yet,
        and the backoff could otherwise leave the join exchange waiting for seconds."""
        if node not in self._peers or node in self._views or node in self._pulls:
            return []
        actions: list[Action] = []
        if self._probe_failures.pop(node, None) is not None:
            actions.append(CancelTimer(ProbeTimer(node)))
        return actions + self.ensure(node, probe=True)

    def _retry_probe(self, node: str) -> StartTimer:
        """Ask again soon for the snapshot of a member we have no view of (the join
        exchange may have been lost); the delay doubles up to :data:`PROBE_BACKOFF_CAP`."""
        failures = self._probe_failures.get(node, 0) + 1
        self._probe_failures[node] = failures
        delay = min(PROBE_BACKOFF_CAP, PROBE_FIRST_RETRY * 2 ** (failures - 1))
        return StartTimer(ProbeTimer(node), delay)

    def forget(self, node: str) -> list[Action]:
        """``node`` left: drop its pull and probe retries, stop waiting for it (no failure)."""
        actions: list[Action] = []
        pull = self._pulls.pop(node, None)
        if pull is not None:
            actions.append(CancelTimer(PullTimer(node, pull.request_id)))
        if self._probe_failures.pop(node, None) is not None:
            actions.append(CancelTimer(ProbeTimer(node)))
        actions.extend(self._settle_waiters(node, None))
        return actions

    def start_query(self, query_id: int, max_staleness: float) -> list[Action]:
        """A query found stale or pending views: pull them (or fail at once without
        ``pull_on_query``)."""
        now = self._clock.now()
        stale = self._views.stale(now, max_staleness)
        if not (stale and self._pull_on_query):
            reason = "the view is stale and pull_on_query is off"
            return [FinishQuery(query_id, tuple((node, reason) for node in stale))]
        for node in stale:
            self._statuses.of(node).last_attempt_time = now
        self._queries[query_id] = _Waiter(set(stale), now - max_staleness)
        actions: list[Action] = []
        for node in stale:
            actions.extend(self.ensure(node, probe=False))
        return actions

    def cancel(self, query_id: int) -> None:
        """Forget a waiting query (its caller gave up)."""
        self._queries.pop(query_id, None)

    def _settle_waiters(
        self, node: str, failure: str | None, synced_at: float | None = None
    ) -> list[Action]:
        """``node`` is settled; finish the queries that no longer wait for anything.

        Args:
            failure: why the view was not refreshed, or ``None``.
            synced_at: when the view held now was last confirmed (``None``: no
                view); a query needing a fresher one records a failure.
        """
        finished: list[int] = []
        for query_id, waiter in self._queries.items():
            if node in waiter.remaining:
                waiter.remaining.discard(node)
                if failure is not None:
                    waiter.failures[node] = failure
                elif synced_at is not None and synced_at < waiter.not_before:
                    waiter.failures[node] = "no view fresh enough for the query's bound arrived"
                if not waiter.remaining:
                    finished.append(query_id)
        actions: list[Action] = []
        for query_id in finished:
            waiter = self._queries.pop(query_id)
            actions.append(FinishQuery(query_id, tuple(sorted(waiter.failures.items()))))
        return actions
