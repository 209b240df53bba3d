"""The replica side of a shard engine: what an update from a peer does to its view.

Every snapshot and delta is first *admitted* (only a member's messages count;
a departed node's late ones are ignored; a generation from an incarnation
beyond this node's clock plus ``max_clock_skew`` is refused), then judged
against the view held by the receiver rules
(:func:`~dstate_core.engine._rules.judge`), and only then decoded, so a stale
or duplicate message costs no deserialization. A payload that cannot be used
is counted and logged and keeps the view as it was, except that
``DROP_AND_WAIT`` removes the view of a peer whose wire version this node
cannot read (``docs/protocol.md#receiver-rules``).

The owner is the authority on its own shard. A message that contradicts the
view held (older than it, or a delta of the same generation with other
content) makes the replica *doubt* the view and ask the owner; the owner's
answer to a pull sent after the view was taken replaces the view, whatever
the generations say, since an honest owner cannot answer with less than it
already sent. So one forged frame cannot freeze a view: the owner's next
update or sync undoes it (``docs/protocol.md#forged-generations``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._logs import NodeLog
from .._ratelimit import DropLog, RateLimitedLog
from ..model._clock import Clock
from ..model._config import VersionMismatchPolicy
from ..model._diagnostics import MetricCounters
from ..model._generation import Generation, StateViewObject
from ..wire._messages import DeltaRun, DeltaUpdate, FullSnapshot
from ._actions import Action, NotifyView
from ._kinds import StateKind, Unreadable
from ._peers import Membership, PeerStatuses
from ._pulls import PullTracker
from ._rules import Kind, Verdict, judge
from ._views import ViewTable

__all__ = ["Receiver"]


class Receiver:
    """Applies peers' snapshots, deltas and change announcements to one shard's views.

    Args:
        name, node_id: the shard's state and node.
        clock: the engine's clock.
        policy: what to do with a wire version this node cannot read.
        kind: decodes payloads of the state's kind.
        views, peers, statuses, metrics, pulls: the engine's, updated here.

    Concurrency: used by one thread at a time (the shard's turn); :attr:`drops` may be read
    from any thread.
    """

    def __init__(
        self,
        name: str,
        node_id: str,
        clock: Clock,
        policy: VersionMismatchPolicy,
        kind: StateKind,
        views: ViewTable,
        peers: Membership,
        statuses: PeerStatuses,
        metrics: MetricCounters,
        pulls: PullTracker,
        max_clock_skew: float,
    ) -> None:
        self._name = name
        self._node_id = node_id
        self._clock = clock
        self._drop_views = policy is VersionMismatchPolicy.DROP_AND_WAIT
        self._kind = kind
        self._views = views
        self._peers = peers
        self._statuses = statuses
        self._metrics = metrics
        self._pulls = pulls
        self._skew_ms = int(max_clock_skew * 1000)
        #: The last pull id sent before each peer's view took its current generation, and
        #: before it was last marked pending: only a later pull tells what its owner made.
        self._taken_at: dict[str, int] = {}
        self._marked_at: dict[str, int] = {}
        #: The payload that last set each peer's view (its generation, and whether it was a
        #: delta), to tell an update of the same generation with other content.
        self._last_payload: dict[str, tuple[Generation, bool, bytes]] = {}
        #: Peers whose view this replica asked its owner to confirm.
        self._doubted: set[str] = set()
        log = NodeLog("dstate.engine", node_id, name)
        self._rate_log = RateLimitedLog(log, clock)
        self.drops = DropLog(log, clock)

    # -- admission ----------------------------------------------------------------

    def drop(self, reason: str, source: str, detail: str) -> None:
        """Count and log (rate-limited) a message refused before the rules."""
        self.drops.drop(
            reason,
            source,
            "dropped a message from %r (%s): %s",
            source,
            reason,
            detail,
            peer=source,
        )

    def admit(self, source: str, generation: Generation) -> bool:
        """Is a message from ``source`` about ``generation`` one to act on?

        Only members' are: a departed node's late messages are ignored until it
        joins again (the node shell re-announces a node that is back). And no
        honest owner can have made an incarnation beyond this node's wall clock
        plus ``max_clock_skew``: such a generation is refused.
        """
        if source in self._peers:
            ahead_ms = generation.incarnation - self._clock.wall_ms()
            if ahead_ms <= self._skew_ms:
                return True
            self.drop(
                "future_generation",
                source,
                f"generation {generation} is {ahead_ms / 1000:.0f} s ahead of this node's "
                f"clock, more than max_clock_skew={self._skew_ms / 1000:g}s: no honest node "
                "made it (or the clocks disagree by that much)",
            )
            return False
        if source == self._node_id:
            self.drop("own_node", source, "a message claiming to come from this node")
        elif self._peers.departed(source):
            self._metrics.stale_deltas_discarded += 1
        else:
            self.drop("unknown_node", source, "the sender is not a known cluster member")
        return False

    # -- updates ------------------------------------------------------------------

    def snapshot(self, snap: FullSnapshot, reply_id: int | None) -> list[Action]:
        """A peer's full snapshot: pushed, periodic, a join exchange, or a pull's reply."""
        source = snap.source_node
        self._metrics.snapshots_received += 1
        self._metrics.bytes_received += len(snap.payload)
        if not self.admit(source, snap.generation):
            return []
        status = self._statuses.of(source)
        status.saw(snap.generation)
        now = self._clock.now()
        current = self._views.get(source)
        local = current.generation if current else None
        verdict = judge(Kind.SNAPSHOT, snap.generation, local, self._peers.floor(source))
        actions: list[Action] = []
        failure: str | None = None
        recorded = False
        overruled = reply_id is not None and self._owner_answers(source, reply_id, snap, current)
        if overruled:
            verdict = Verdict.REPLACE  # the owner's own word on its shard
        if verdict is Verdict.REPLACE:
            try:
                value = self._kind.read_snapshot(snap.payload, snap.wire_version)
            except Unreadable as bad:
                failure, recorded = self._unreadable(source, bad, actions), True
            else:
                view = _view_from(snap, value, now, None if overruled else current)
                actions.append(NotifyView(source, self._views.put(view), view))
                self._taken_at[source] = self._pulls.last_request_id
                self._last_payload[source] = (snap.generation, False, snap.payload)
                status.synced(now, self._push_latency(snap.modified_time, reply_id))
        elif current is not None and (
            verdict is Verdict.CONFIRM or (verdict is Verdict.DISCARD_STALE and reply_id)
        ):
            # A reply older than the view held still proves the view is that fresh.
            if verdict is Verdict.DISCARD_STALE:
                self._metrics.stale_deltas_discarded += 1
            elif reply_id is None and not self._same_content(source, snap, current):
                actions.extend(self._doubt(source))  # same generation, other content
            self._views.put(replace(current, synced_at=now))
            status.synced(now, self._push_latency(snap.modified_time, reply_id))
        else:
            self._metrics.stale_deltas_discarded += 1
            failure = f"the reply is from an older lifetime ({snap.generation})"
        if reply_id is None and local is not None and snap.generation < local:
            actions.extend(self._doubt(source))
        if reply_id is not None:
            held = self._views.get(source)
            if failure is None and held is not None and held.pending_remote_generation:
                failure = (
                    f"the reply (generation {held.generation}) is older than the announced "
                    f"generation {held.pending_remote_generation}"
                )
            actions.extend(self._pulls.settle(source, reply_id, failure, recorded=recorded))
            if source in self._doubted:
                actions.extend(self._pulls.ensure(source, probe=False))  # ask again, after
        return actions

    def forget(self, node: str) -> None:
        """``node`` left: drop what this replica kept about its view."""
        self._taken_at.pop(node, None)
        self._marked_at.pop(node, None)
        self._last_payload.pop(node, None)
        self._doubted.discard(node)

    def _owner_answers(
        self,
        source: str,
        reply_id: int,
        snap: FullSnapshot,
        current: StateViewObject[Any] | None,
    ) -> bool:
        """Does this reply overrule the receiver rules? It does when it answers a pull sent
        after the view held was taken, and either contradicts that view (older, or at the
        same generation while the view is doubted) or an announcement made before the pull.
        An honest owner never does either, so the view (or mark) held is one it never made."""
        if not self._pulls.is_in_flight(source, reply_id):
            return False
        if current is None:
            floor = self._peers.floor(source)
            if floor is None or snap.generation >= floor:
                return False
            return self._overruled(source, f"the floor {floor}", snap.generation)
        pending = current.pending_remote_generation
        if (
            pending is not None
            and snap.generation < pending
            and reply_id > self._marked_at.get(source, reply_id)
        ):
            return self._overruled(source, f"the announced generation {pending}", snap.generation)
        if reply_id <= self._taken_at.get(source, 0):
            return False  # asked before the view was taken: the answer proves nothing about it
        self._doubted.discard(source)
        held = current.generation
        if snap.generation < held:
            return self._overruled(source, f"generation {held}", snap.generation)
        if snap.generation != held or self._same_content(source, snap, current):
            return False
        return self._overruled(source, f"other content at generation {held}", snap.generation)

    def _overruled(self, source: str, claim: str, answer: Generation) -> bool:
        """The owner answered ``answer`` to a pull sent after this node took ``claim`` for
        its shard: it never made ``claim``. Count, log, forget what rested on it."""
        self.drop(
            "unproduced_generation",
            source,
            f"held {claim}, which its owner never made: the owner answers {answer}",
        )
        self._peers.forget_floor(source)
        self._statuses.of(source).remote_generation = answer
        return True

    def _doubt(self, source: str) -> list[Action]:
        """A message contradicted the view of ``source``: ask its owner."""
        self._doubted.add(source)
        return self._pulls.ensure(source, probe=False)

    def delta(self, update: DeltaUpdate) -> list[Action]:
        """A peer's delta: applied if it follows the view, else a gap to repair by a pull."""
        return self._delta(update)[0]

    def run(self, run: DeltaRun) -> list[Action]:
        """A peer's run of consecutive deltas, each as :meth:`delta`; after a gap or an
        unreadable delta the rest waits for the pull that repairs the view."""
        actions: list[Action] = []
        for update in run.updates():
            done, applied = self._delta(update)
            actions += done
            if not applied and update.generation > self._held(update.source_node):
                break
        return actions

    def _held(self, source: str) -> Generation:
        view = self._views.get(source)
        return view.generation if view is not None else Generation(0, 0)

    def _delta(self, update: DeltaUpdate) -> tuple[list[Action], bool]:
        """:meth:`delta`, and whether the view took it."""
        source = update.source_node
        self._metrics.deltas_received += 1
        self._metrics.bytes_received += len(update.payload)
        if not self.admit(source, update.generation):
            return [], False
        status = self._statuses.of(source)
        status.saw(update.generation)
        current = self._views.get(source)
        local = current.generation if current else None
        verdict = judge(Kind.DELTA, update.generation, local, self._peers.floor(source))
        actions: list[Action] = []
        if self._kind.sends_deltas:
            if verdict is Verdict.GAP:
                self._metrics.age_gaps_detected += 1
                status.gap_count += 1
                return self._pulls.ensure(source, probe=False), False
            if verdict is not Verdict.APPLY:
                self._metrics.stale_deltas_discarded += 1
                if local is not None and self._contradicts(source, update, local):
                    return self._doubt(source), False
                return [], False
        try:
            value = self._kind.read_delta(
                None if current is None else current.value, update.payload, update.wire_version
            )
        except Unreadable as bad:
            self._unreadable(source, bad, actions)
            return actions, False
        now = self._clock.now()
        view = _view_from(update, value, now, current)
        actions.append(NotifyView(source, self._views.put(view), view))
        self._taken_at[source] = self._pulls.last_request_id
        self._last_payload[source] = (update.generation, True, update.payload)
        status.synced(now, self._push_latency(update.modified_time, None))
        return actions, True

    def _contradicts(self, source: str, update: DeltaUpdate, held: Generation) -> bool:
        """An older delta, or one of the generation held with other bytes than the one
        applied, says the view may not be the owner's."""
        if update.generation < held:
            return True
        applied = self._last_payload.get(source)
        return (
            update.generation == held
            and applied is not None
            and applied[:2] == (held, True)
            and applied[2] != update.payload
        )

    def _same_content(self, source: str, snap: FullSnapshot, current: StateViewObject[Any]) -> bool:
        """Does a snapshot of the generation held carry what the view holds? The bytes tell
        when a snapshot set the view; after a delta, the decoded view is compared."""
        taken = self._last_payload.get(source)
        if taken is not None and taken[:2] == (current.generation, False):
            return taken[2] == snap.payload
        try:
            value = self._kind.read_snapshot(snap.payload, snap.wire_version)
        except Unreadable:
            return True  # nothing to compare with: the rules count it when it matters
        same: bool = value == current.value
        return same

    def announced(self, source: str, generation: Generation) -> list[Action]:
        """A peer's change feed announced ``generation``: mark the view pending (pull later)."""
        if not self.admit(source, generation):
            return []
        self._statuses.of(source).announced(self._clock.now(), generation)
        current = self._views.get(source)
        if current is None:
            floor = self._peers.floor(source)
            if floor is not None and generation < floor:
                self._metrics.stale_deltas_discarded += 1
                return []
            return self._pulls.ensure(source, probe=False)
        pending = current.pending_remote_generation
        if generation <= current.generation or (pending is not None and generation <= pending):
            return []  # a forged view that this contradicts is undone by the query's pull
        self._views.put(replace(current, pending_remote_generation=generation))
        self._marked_at[source] = self._pulls.last_request_id
        return []

    # -- helpers ------------------------------------------------------------------

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
            self._statuses.of(source).failed(now, reason)
            self._rate_log.warning(
                ("malformed", source),
                "kept the view of peer %r: its update could not be read: %s",
                source,
                bad.detail,
                peer=source,
            )
            return reason
        reason = f"unreadable wire version {bad.unknown_version}: {bad.detail}"
        self._statuses.of(source).failed(now, reason)
        self._rate_log.warning(
            ("version", source),
            "peer %r sent wire version %s, which this node cannot read (%s); %s",
            source,
            bad.unknown_version,
            bad.detail,
            "its view is dropped until a readable update arrives"
            if self._drop_views
            else "its last good view is kept",
            peer=source,
        )
        if self._drop_views:
            old = self._views.remove(source)
            if old is not None:
                self._peers.view_dropped(source, old.generation)
                actions.append(NotifyView(source, old, None))
        return reason


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
