"""Pulls and the queries waiting on them (SPEC §4 slow path).

At most one pull is in flight per peer; every query that needs that peer
waits on the same pull (coalescing). A pull ends with the peer's reply or its
``pull_timeout`` timer; each waiting query finishes when all of its peers are
settled, with the reasons of those that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model._clock import Clock
from ..wire._codec import WireCodec
from ..wire._messages import RequestSnapshot
from ._actions import Action, CancelTimer, FinishQuery, SendTo, StartTimer

__all__ = ["Pull", "PullTracker"]


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


def pull_timer(node: str, request_id: int) -> tuple[str, str, int]:
    """The timer key of a pull's timeout."""
    return ("pull", node, request_id)


class PullTracker:
    """In-flight pulls by peer, and the queries waiting for them.

    Concurrency: used only from the shard's mailbox.
    """

    def __init__(
        self, state_name: str, node_id: str, clock: Clock, codec: WireCodec, timeout: float
    ) -> None:
        self._state_name = state_name
        self._node_id = node_id
        self._clock = clock
        self._codec = codec
        self._timeout = timeout
        self._pulls: dict[str, Pull] = {}
        self._queries: dict[int, _Waiter] = {}
        self._next_request = 0
        self.bytes_sent = 0

    def in_flight(self, node: str) -> bool:
        """True while a pull to ``node`` is waiting for its reply."""
        return node in self._pulls

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
            actions.append(CancelTimer(pull_timer(node, pull.request_id)))
        self._next_request += 1
        request_id = self._next_request
        self._pulls[node] = Pull(request_id, self._clock.now(), probe)
        data = self._codec.encode(RequestSnapshot(self._state_name, self._node_id, request_id))
        self.bytes_sent += len(data)
        actions += [SendTo(node, data), StartTimer(pull_timer(node, request_id), self._timeout)]
        return actions

    def take(self, node: str, request_id: int) -> Pull | None:
        """End the pull ``request_id`` to ``node``; ``None`` if that is not the one in flight."""
        pull = self._pulls.get(node)
        if pull is None or pull.request_id != request_id:
            return None
        del self._pulls[node]
        return pull

    def forget(self, node: str) -> list[Action]:
        """``node`` left: drop its pull and stop waiting for it (not a failure)."""
        actions: list[Action] = []
        pull = self._pulls.pop(node, None)
        if pull is not None:
            actions.append(CancelTimer(pull_timer(node, pull.request_id)))
        actions.extend(self.settle_waiters(node, None))
        return actions

    def wait(self, query_id: int, nodes: list[str], max_staleness: float) -> list[Action]:
        """Make query ``query_id`` wait for views of ``nodes`` within ``max_staleness`` of now."""
        self._queries[query_id] = _Waiter(set(nodes), self._clock.now() - max_staleness)
        actions: list[Action] = []
        for node in nodes:
            actions.extend(self.ensure(node, probe=False))
        return actions

    def cancel(self, query_id: int) -> None:
        """Forget a waiting query (its caller gave up)."""
        self._queries.pop(query_id, None)

    def settle_waiters(
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
