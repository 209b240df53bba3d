"""What the owner sends, and when: the push side of a shard engine.

A committed mutation becomes at most one of: a delta or snapshot broadcast now,
a delayed window, a change-feed announcement, or nothing. Which one follows from
the change's :class:`SyncUrgency` and the strategy's push mode.

Peers never see a gap they could avoid: the publisher remembers the generation
it last broadcast, and sends a delta only when that delta directly follows it.
Otherwise (deltas suppressed, coalesced, or announced only) the next broadcast
is one full snapshot.

Sending is split in two phases so a mutation can be rolled back: :meth:`prepare`
encodes everything and changes nothing; :meth:`commit` records it. Mutations
committed together (a batch) send less (:meth:`commit_all`): a snapshot
broadcast that a later one of the batch replaces stays home, and consecutive
delta broadcasts leave as one :class:`DeltaRun` frame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..model._clock import Clock
from ..model._config import PushMode, SyncStrategy
from ..model._diagnostics import MetricCounters
from ..model._generation import Generation, StateObject
from ..model._urgency import SyncUrgency, UrgencyKind
from ..wire._codec import WireCodec
from ..wire._messages import (
    ChangeNotification,
    DeltaRun,
    DeltaUpdate,
    FullSnapshot,
    SnapshotReply,
)
from ._actions import (
    DELAYED_PUSH,
    Action,
    AnnounceChange,
    Broadcast,
    CancelTimer,
    SendTo,
    StartTimer,
)
from ._kinds import StateKind

__all__ = ["Publisher", "SendPlan"]


class _Step(enum.Enum):
    NOTHING = "nothing"
    SUPPRESS = "suppress"
    BROADCAST = "broadcast"
    DELAY = "delay"
    ANNOUNCE = "announce"


@dataclass(frozen=True, slots=True)
class SendPlan:
    """What :meth:`Publisher.commit` will do for one mutation (already encoded)."""

    step: _Step
    generation: Generation
    data: bytes = b""
    is_delta: bool = False
    immediate: bool = False
    delay: float = 0.0
    delta: BaseModel | None = None
    #: The update a delta broadcast sends (to merge consecutive ones into a run).
    update: DeltaUpdate | None = None

    def sent_after(self, last_sent: Generation | None) -> Generation | None:
        """The generation peers were last sent once this plan is carried out."""
        return self.generation if self.step is _Step.BROADCAST else last_sent


@dataclass(slots=True)
class _Window:
    deadline: float
    delta: BaseModel | None
    generation: Generation
    count: int


class Publisher:
    """Encodes and schedules the own shard's outgoing updates.

    Concurrency: used by one thread at a time (the shard's turn).
    """

    def __init__(
        self,
        kind: StateKind,
        strategy: SyncStrategy,
        node_id: str,
        codec: WireCodec,
        metrics: MetricCounters,
        clock: Clock,
    ) -> None:
        self._kind = kind
        self._type = kind.state_type
        self._strategy = strategy
        self._node_id = node_id
        self._codec = codec
        self._metrics = metrics
        self._clock = clock
        self._broadcast_gen: Generation | None = None
        self._window: _Window | None = None
        self._snapshot: FullSnapshot | None = None
        # The StateObject the cached snapshot was made from: a failed save can leave
        # a snapshot of an uncommitted state at the generation the next mutation reuses.
        self._snapshot_of: StateObject[Any] | None = None
        self._peer_count = 0

    def set_peer_count(self, count: int) -> None:
        """How many peers a broadcast reaches (for the sent counters)."""
        self._peer_count = count

    def mark_broadcast(self, generation: Generation) -> None:
        """Record that peers were given ``generation`` (e.g. at start)."""
        self._broadcast_gen = generation

    @property
    def last_sent(self) -> Generation | None:
        """The generation last broadcast (a delta sent now must follow it)."""
        return self._broadcast_gen

    # -- messages -----------------------------------------------------------------

    def snapshot(self, own: StateObject[Any], view: Any) -> FullSnapshot:
        """The own snapshot of ``own`` (serialized once per committed state object)."""
        cached = self._snapshot
        if cached is not None and self._snapshot_of is own:
            return cached
        payload = self._kind.snapshot_payload(own, view)
        snap = FullSnapshot(
            state_name=self._type.NAME,
            source_node=self._node_id,
            generation=own.generation,
            wire_version=self._type.WIRE_VERSION,
            payload=payload,
            created_time=own.created_time,
            modified_time=own.modified_time,
        )
        self._snapshot, self._snapshot_of = snap, own
        return snap

    def _delta_update(self, own: StateObject[Any], delta: BaseModel) -> DeltaUpdate:
        return DeltaUpdate(
            state_name=self._type.NAME,
            source_node=self._node_id,
            generation=own.generation,
            wire_version=self._type.WIRE_VERSION,
            payload=self._kind.delta_payload(delta),
            created_time=own.created_time,
            modified_time=own.modified_time,
        )

    def _update_frame(
        self,
        own: StateObject[Any],
        view: Any,
        delta: BaseModel | None,
        last_sent: Generation | None,
    ) -> tuple[bytes, DeltaUpdate | None]:
        """The frame of an update, and the delta it carries (``None``: a snapshot)."""
        if delta is not None and last_sent is not None and last_sent.next() == own.generation:
            update = self._delta_update(own, delta)
            return self._codec.encode(update), update
        return self._codec.encode(self.snapshot(own, view)), None

    # -- mutations ----------------------------------------------------------------

    def prepare(
        self,
        own: StateObject[Any],
        view: Any,
        delta: BaseModel | None,
        urgency: SyncUrgency,
        last_sent: Generation | None,
    ) -> SendPlan:
        """Decide and encode what a mutation sends, peers having last been sent
        ``last_sent`` (:attr:`last_sent`, or what the batch before it leaves);
        changes nothing (may raise)."""
        gen = own.generation
        kind = urgency.kind
        if kind is UrgencyKind.SUPPRESS:
            return SendPlan(_Step.SUPPRESS, gen)
        if kind is UrgencyKind.DELAYED:
            return SendPlan(_Step.DELAY, gen, delay=urgency.delay, delta=delta)
        mode = self._strategy.push_mode
        if kind is UrgencyKind.IMMEDIATE or mode is PushMode.ACTIVE_PUSH:
            data, update = self._update_frame(own, view, delta, last_sent)
            return SendPlan(
                _Step.BROADCAST,
                gen,
                data=data,
                is_delta=update is not None,
                immediate=kind is UrgencyKind.IMMEDIATE,
                update=update,
            )
        if mode is PushMode.ACTIVE_FEED_LAZY_PULL:
            return SendPlan(_Step.ANNOUNCE, gen)
        return SendPlan(_Step.NOTHING, gen)

    def commit(self, plan: SendPlan) -> list[Action]:
        """Carry out a prepared plan once the mutation is committed."""
        step = plan.step
        if step is _Step.BROADCAST:
            if plan.immediate:
                self._metrics.deltas_immediate += 1
            return self._broadcast(plan.generation, plan.data, plan.is_delta)
        if step is _Step.SUPPRESS:
            self._metrics.deltas_suppressed += 1
            return []
        if step is _Step.DELAY:
            return self._extend_window(plan)
        if step is _Step.ANNOUNCE:
            note = ChangeNotification(self._type.NAME, self._node_id, plan.generation)
            return [AnnounceChange(note)]
        return []

    def commit_all(self, plans: list[SendPlan]) -> list[Action]:
        """Carry out the plans of mutations committed together, in order, sending less:
        a snapshot broadcast replaced by a later one with no delta broadcast between
        stays home (receivers would only replace it), and consecutive delta broadcasts
        leave as one run."""
        superseded = _superseded_snapshots(plans)
        actions: list[Action] = []
        index, count = 0, len(plans)
        while index < count:
            plan = plans[index]
            if index in superseded:
                if plan.immediate:
                    self._metrics.deltas_immediate += 1
                index += 1
                continue
            end = index + 1
            while end < count and plan.update is not None and plans[end].update is not None:
                end += 1  # a delta broadcast, and the delta broadcasts right after it
            if end - index > 1:
                actions += self._broadcast_run(plans[index:end])
            else:
                actions += self.commit(plan)
            index = end
        return actions

    def _broadcast_run(self, plans: list[SendPlan]) -> list[Action]:
        updates = [plan.update for plan in plans if plan.update is not None]
        first = updates[0]
        run = DeltaRun(
            state_name=first.state_name,
            source_node=first.source_node,
            generation=first.generation,
            wire_version=first.wire_version,
            created_time=first.created_time,
            deltas=tuple((update.payload, update.modified_time) for update in updates),
        )
        try:
            data = self._codec.encode(run)
        except ValueError:  # together over the size cap: one frame each, as prepared
            return [action for plan in plans for action in self.commit(plan)]
        self._metrics.deltas_immediate += sum(plan.immediate for plan in plans)
        return self._broadcast(plans[-1].generation, data, True, len(plans))

    def _broadcast(
        self, generation: Generation, data: bytes, is_delta: bool, deltas: int = 1
    ) -> list[Action]:
        actions: list[Action] = []
        if self._window is not None:
            self._window = None
            actions.append(CancelTimer(DELAYED_PUSH))
        self._broadcast_gen = generation
        peers = self._peer_count
        if is_delta:
            self._metrics.deltas_sent += peers * deltas
        else:
            self._metrics.snapshots_sent += peers
        self._metrics.bytes_sent += len(data) * peers
        actions.append(Broadcast(data))
        return actions

    def _extend_window(self, plan: SendPlan) -> list[Action]:
        deadline = self._clock.now() + plan.delay
        window = self._window
        if window is None:
            self._window = _Window(deadline, plan.delta, plan.generation, 1)
            return [StartTimer(DELAYED_PUSH, plan.delay)]
        window.delta, window.generation = plan.delta, plan.generation
        window.count += 1
        if deadline < window.deadline:
            window.deadline = deadline
            return [StartTimer(DELAYED_PUSH, plan.delay)]
        return []

    # -- timers and requests ------------------------------------------------------

    def flush_window(self, own: StateObject[Any], view: Any) -> list[Action]:
        """The delayed window closed: send what it holds as one message."""
        window, self._window = self._window, None
        if window is None or self._broadcast_gen == own.generation:
            return []
        single = window.count == 1 and window.generation == own.generation
        data, update = self._update_frame(
            own, view, window.delta if single else None, self._broadcast_gen
        )
        return self._broadcast(own.generation, data, update is not None)

    def periodic(self, own: StateObject[Any], view: Any) -> list[Action]:
        """The periodic full sync: broadcast a snapshot."""
        if not self._peer_count:
            return []
        data = self._codec.encode(self.snapshot(own, view))
        return self._broadcast(own.generation, data, False)

    def snapshot_to(self, peer: str, own: StateObject[Any], view: Any) -> SendTo:
        """The own snapshot for one peer (join exchange)."""
        data = self._codec.encode(self.snapshot(own, view))
        self._metrics.snapshots_sent += 1
        self._metrics.bytes_sent += len(data)
        return SendTo(peer, data)

    def reply_to(self, peer: str, request_id: int, own: StateObject[Any], view: Any) -> SendTo:
        """Answer a pull with the own snapshot."""
        data = self._codec.encode(SnapshotReply(request_id, self.snapshot(own, view)))
        self._metrics.snapshots_sent += 1
        self._metrics.bytes_sent += len(data)
        return SendTo(peer, data)


def _superseded_snapshots(plans: list[SendPlan]) -> set[int]:
    """The indexes of snapshot broadcasts that a later snapshot broadcast replaces with
    no delta broadcast between (a delta builds on the snapshot before it)."""
    superseded: set[int] = set()
    snapshot_follows = False
    for index in range(len(plans) - 1, -1, -1):
        plan = plans[index]
        if plan.step is not _Step.BROADCAST:
            continue
        if plan.is_delta:
            snapshot_follows = False
        elif snapshot_follows:
            superseded.add(index)
        else:
            snapshot_follows = True
    return superseded
