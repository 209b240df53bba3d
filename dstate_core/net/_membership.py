"""Membership and failure detection for network nodes: a sans-IO engine.

The design is SWIM's (ping, indirect ping through other members, rumours
piggybacked on the probes) with two changes, explained in ``docs/network.md``:

* **Ring probes.** Each round (every ``failure_timeout / 4``) a node probes its
  next :attr:`MembershipConfig.ring` members in a ring of the sorted node ids,
  plus one random member. So every member is probed by several others every
  round: a dead process is noticed within a bounded time, however big the
  cluster, while each node sends a fixed number of probes per round.
* **Only direct evidence changes the view.** A node becomes a member here when
  it speaks to this node itself (a ping, an ack, a join...), and leaves when it
  says goodbye itself or when this node's own probe of it fails. A rumour
  ("X joined", "X is dead") only makes this node probe X. So a forged or
  replayed rumour changes nothing, and a member cut off from only one other
  member is not evicted by that one.

A process declared left that is still running (it was paused, say) hears so
the next time it speaks to a member, bumps its ``version`` (SWIM's refutation)
and is a member again; it then re-announces every peer to its runtime
(``left`` then ``joined``), because its views missed what was sent while it was
out.

Inputs: :meth:`Membership.start`, :meth:`~Membership.receive`,
:meth:`~Membership.tick` (at :meth:`~Membership.next_deadline` or later) and
:meth:`~Membership.leave`. Outputs: :class:`Send`, :class:`MemberUp`,
:class:`MemberDown`, :class:`JoinRefused`. Time comes from a ``Clock``,
randomness from the ``random.Random`` it is given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from .._logs import NodeLog
from ..model._clock import Clock
from ._gossip import GossipQueue, Tombstones, notice_fanout
from ._messages import Gossip, MemberMsg, MsgKind, Peer, PeerStatus
from ._outputs import (
    JoinRefused,
    MemberDown,
    MembershipConfig,
    MembershipOutput,
    MemberUp,
    Send,
)
from ._probes import Probe, ProbeTimers, Purpose, ring_targets

__all__ = [
    "JoinRefused",
    "MemberDown",
    "MemberUp",
    "Membership",
    "MembershipConfig",
    "MembershipOutput",
    "Send",
]


class Membership:
    """One node's membership engine.

    Args:
        me: this process (``version`` 0).
        seeds: addresses of members to join through (none: start a cluster).
        config: timing.
        clock: where time comes from.
        rng: the source of every random choice.

    Concurrency: not thread-safe; the shell calls it from one thread.
    """

    def __init__(
        self,
        me: Peer,
        seeds: Sequence[str],
        config: MembershipConfig,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.me = me
        self._log = NodeLog("dstate.net", me.node)
        self.config = config
        self._seeds = [s for s in seeds if s != me.addr]
        self._clock = clock
        self._rng = rng
        self._alive: dict[str, Peer] = {}
        self._tombs = Tombstones(config.tombstone_ttl)
        self._gossip = GossipQueue(config.gossip_per_message)
        self._probes: dict[str, Probe] = {}
        self._timers = ProbeTimers()
        self._ring: list[str] | None = None
        self._by_seq: dict[int, str] = {}
        self._relays: dict[int, tuple[Peer, int, float]] = {}
        self._seq = 0
        now = clock.now()
        self._last_tick = now
        self._next_round = now
        self._next_join = now
        self._join_wait = config.round_interval
        self._next_sync = now + config.sync_interval
        self._told_dead: dict[str, float] = {}
        self._out: list[MembershipOutput] = []
        self._leaving = False

    # -- inspection -----------------------------------------------------------------

    def members(self) -> dict[str, Peer]:
        """The live members, this process included, by node id."""
        return {**self._alive, self.me.node: self.me}

    def peer(self, node: str) -> Peer | None:
        """The member ``node`` (not this process), if it is one."""
        return self._alive.get(node)

    @property
    def joined(self) -> bool:
        """True once this process knows another member (or has no seeds)."""
        return bool(self._alive) or not self._seeds

    @property
    def settled(self) -> bool:
        """True once joined and no rumoured member is still being checked."""
        return self.joined and not any(p.purpose is Purpose.VERIFY for p in self._probes.values())

    def next_deadline(self) -> float:
        """When :meth:`tick` has work next (clock seconds)."""
        deadlines = [self._next_round, self._next_sync]
        probe_due = self._timers.next(self._probes, self.config)
        if probe_due is not None:
            deadlines.append(probe_due)
        deadlines += [until for _, _, until in self._relays.values()]
        if self._seeds and not self._alive:
            deadlines.append(self._next_join)
        return min(deadlines)

    # -- inputs ---------------------------------------------------------------------

    def start(self) -> list[MembershipOutput]:
        """Begin: ask the seeds to let this process in (see :meth:`tick`)."""
        return self.tick()

    def tick(self) -> list[MembershipOutput]:
        """Do what is due: join attempts, probe rounds, expired probes, anti-entropy."""
        now = self._clock.now()
        self._catch_up(now)
        if self._leaving:
            return self._flush()
        if now >= self._next_round:
            self._next_round = now + self.config.round_interval
            self._probe_round()
        self._advance_probes(now)
        # After the probes: one that just expired may have taken the last member.
        if self._seeds and not self._alive and now >= self._next_join:
            for seed in self._seeds:
                self._send(seed, MsgKind.JOIN)
            self._next_join = now + self._join_wait
            self._join_wait = min(self._join_wait * 2, self.config.join_retry_max)
        for seq in [s for s, (_, _, until) in self._relays.items() if now >= until]:
            del self._relays[seq]
        if now >= self._next_sync:
            self._anti_entropy(now)
        return self._flush()

    def receive(self, msg: MemberMsg) -> list[MembershipOutput]:
        """One message from the network (decoded, not yet trusted)."""
        self._catch_up(self._clock.now())
        if self._leaving:
            return []
        if msg.src.node == self.me.node:
            if msg.kind == MsgKind.JOIN and msg.src.inc != self.me.inc:
                self._refuse(
                    msg.src, f"node id {self.me.node!r} is taken by the live node at {self.me.addr}"
                )
            return self._flush()
        if msg.kind == MsgKind.JOIN:
            self._on_join(msg.src)
        elif msg.kind == MsgKind.LEAVE:
            self._on_leave(msg.src)
        elif msg.kind == MsgKind.REFUSE:
            self._on_refuse(msg)
        elif self._heard_from(msg.src):
            self._on_message(msg)
        else:
            # A peer this node declared left may say the same of it (a partition that
            # healed): refute it, or each side ignores the other's news for good.
            for rumour in msg.gossip:
                if rumour.peer.node == self.me.node:
                    self._on_rumour(rumour, msg.src)
        return self._flush()

    def leave(self) -> list[MembershipOutput]:
        """Say goodbye to every member; afterwards the engine does nothing more."""
        if not self._leaving:
            for peer in self._alive.values():
                self._send(peer.addr, MsgKind.LEAVE)
            self._leaving = True
        return self._flush()

    # -- messages -------------------------------------------------------------------

    def _on_message(self, msg: MemberMsg) -> None:
        for rumour in msg.gossip:
            self._on_rumour(rumour, msg.src)
        kind = msg.kind
        if kind == MsgKind.PING:
            self._send(msg.src.addr, MsgKind.ACK, seq=msg.seq)
        elif kind == MsgKind.ACK:
            self._on_ack(msg)
        elif kind == MsgKind.PING_REQ and msg.target is not None:
            seq = self._next_seq()
            self._relays[seq] = (msg.src, msg.seq, self._clock.now() + self.config.probe_timeout)
            self._send(msg.target.addr, MsgKind.PING, seq=seq)
        elif kind in (MsgKind.WELCOME, MsgKind.SYNC):
            for peer in msg.table:
                self._on_rumour(Gossip(PeerStatus.ALIVE, peer), msg.src)
            if kind == MsgKind.SYNC and msg.reply:
                self._send(msg.src.addr, MsgKind.SYNC, table=self._table())

    def _on_ack(self, msg: MemberMsg) -> None:
        relay = self._relays.pop(msg.seq, None)
        if relay is not None and msg.target is None:
            requester, their_seq, _ = relay
            self._send(requester.addr, MsgKind.ACK, seq=their_seq, target=msg.src)
            return
        node = self._by_seq.pop(msg.seq, None)
        probe = self._probes.get(node) if node is not None else None
        if probe is None or probe.seq != msg.seq:
            return
        subject = msg.target or msg.src
        if not subject.same_process(probe.peer):
            return  # an answer from another process at that address
        del self._probes[probe.peer.node]
        if probe.purpose == Purpose.DUPLICATE_CHECK and probe.joiner is not None:
            self._refuse(
                probe.joiner,
                f"node id {probe.peer.node!r} is taken by the live process at {probe.peer.addr}",
            )

    def _on_join(self, joiner: Peer) -> None:
        current = self._alive.get(joiner.node)
        if current is not None and current.inc != joiner.inc:
            if joiner.inc < current.inc:
                self._refuse(
                    joiner, f"node id {joiner.node!r} is taken by a newer process at {current.addr}"
                )
                return
            if current.addr != joiner.addr:
                # A restart after a crash, or a second process with the same id: ask the
                # first one whether it still runs.
                if joiner.node not in self._probes:
                    self._start_probe(current, Purpose.DUPLICATE_CHECK, joiner=joiner)
                return
        if self._heard_from(joiner):
            self._send(joiner.addr, MsgKind.WELCOME, table=self._table())

    def _on_leave(self, peer: Peer) -> None:
        current = self._alive.get(peer.node)
        if current is not None and current.same_process(peer):
            self._down(current, "left", left=True)
        elif current is None:
            tomb = self._tombs.get(peer.node)
            if tomb is None or tomb.peer.inc <= peer.inc:
                self._tombs.bury(peer, left=True, now=self._clock.now())

    def _on_refuse(self, msg: MemberMsg) -> None:
        # Only a seed this process asked, and only before it got in, can refuse it.
        if not self._alive and msg.src.addr in self._seeds:
            self._out.append(JoinRefused(msg.reason or "refused", msg.src.addr))

    def _refuse(self, joiner: Peer, reason: str) -> None:
        self._log.warning(
            "refused %r at %s: %s", joiner.node, joiner.addr, reason, peer=joiner.node
        )
        self._send(joiner.addr, MsgKind.REFUSE, reason=reason)

    # -- evidence and rumours ---------------------------------------------------------

    def _heard_from(self, peer: Peer) -> bool:
        """``peer`` spoke to this node: make it a member unless it is stale or gone.

        Returns False if its message must be ignored.
        """
        current = self._alive.get(peer.node)
        if current is not None:
            if peer.inc == current.inc:
                if peer.version > current.version or peer.addr != current.addr:
                    self._alive[peer.node] = peer
                return True
            if peer.inc < current.inc:
                return False
            self._down(current, "restarted")
        tomb = self._tombs.get(peer.node)
        if tomb is not None:
            if peer.inc < tomb.peer.inc:
                return False
            # Even after a goodbye: one forged by another member must not cut a live
            # process off, so it hears it was declared left and comes back (a process
            # that really left is gone and cannot).
            if peer.inc == tomb.peer.inc and peer.version <= tomb.peer.version:
                self._tell_declared_left(tomb.peer)
                return False
            self._tombs.remove(peer.node)
        self._up(peer)
        return True

    def _on_rumour(self, rumour: Gossip, teller: Peer) -> None:
        peer = rumour.peer
        if peer.node == self.me.node:
            if rumour.status == PeerStatus.DEAD and peer.inc == self.me.inc:
                self._refute(peer.version, teller)
            return
        current = self._alive.get(peer.node)
        if rumour.status == PeerStatus.DEAD:
            if current is not None and current.same_process(peer) and peer.node not in self._probes:
                self._start_probe(current, Purpose.CONFIRM)
            return
        if current is not None and (
            peer.inc < current.inc or (peer.inc == current.inc and peer.version <= current.version)
        ):
            return
        tomb = self._tombs.get(peer.node)
        if tomb is not None and (
            peer.inc < tomb.peer.inc
            or (peer.inc == tomb.peer.inc and (tomb.left or peer.version <= tomb.peer.version))
        ):
            return
        if peer.node not in self._probes:
            self._start_probe(peer, Purpose.VERIFY)

    def _refute(self, version: int, teller: Peer) -> None:
        """Members declared this process left: come back with a higher version."""
        probe = self._probes.get(teller.node)
        if version >= self.me.version:
            self.me = replace(self.me, version=version + 1)
            self._log.warning(
                "declared left by %r; rejoining as version %d",
                teller.node,
                self.me.version,
                peer=teller.node,
            )
            self._gossip.add(Gossip(PeerStatus.ALIVE, self.me))
            # What peers sent while this process was out never came: re-announce them all.
            for peer in sorted(self._alive.values(), key=lambda p: p.node):
                self._out.append(MemberDown(peer, "this node was declared left; resyncing"))
                self._out.append(MemberUp(peer))
        elif probe is None:
            return
        if probe is not None:
            # The teller answered this node's ping with the news, not an ack: ask again
            # as the new version, or the probe fails and the two evict each other in turn.
            self._send(probe.peer.addr, MsgKind.PING, seq=probe.seq)
        else:
            self._send(teller.addr, MsgKind.NOTICE)

    def _tell_declared_left(self, peer: Peer) -> None:
        """Tell a process this node declared left so (once per round at most)."""
        now = self._clock.now()
        if now - self._told_dead.get(peer.node, -1e9) < self.config.round_interval:
            return
        self._told_dead[peer.node] = now
        self._send(peer.addr, MsgKind.NOTICE, gossip=(Gossip(PeerStatus.DEAD, peer),))

    # -- probes ---------------------------------------------------------------------

    def _probe_round(self) -> None:
        if self._ring is None:
            self._ring = sorted(self._alive)
        for node in ring_targets(self._ring, self.me.node, self.config.ring, self._rng):
            if node not in self._probes:
                self._start_probe(self._alive[node], Purpose.MONITOR)
        self._told_dead = {
            n: t
            for n, t in self._told_dead.items()
            if n in self._alive or self._tombs.get(n) is not None
        }

    def _start_probe(self, peer: Peer, purpose: Purpose, joiner: Peer | None = None) -> None:
        seq = self._next_seq()
        probe = self._probes[peer.node] = Probe(peer, seq, self._clock.now(), purpose, joiner)
        self._timers.add(probe, self.config)
        self._by_seq[seq] = peer.node
        self._send(peer.addr, MsgKind.PING, seq=seq)

    def _advance_probes(self, now: float) -> None:
        for node in self._timers.due(now, self._probes, self.config):
            probe = self._probes[node]
            if probe.indirect_due(now, self.config):
                probe.indirect_sent = True
                helpers = [p for n, p in self._alive.items() if n != node]
                for helper in self._rng.sample(helpers, min(self.config.indirect, len(helpers))):
                    self._send(helper.addr, MsgKind.PING_REQ, seq=probe.seq, target=probe.peer)
            if now >= probe.deadline(self.config):
                del self._probes[node]
                self._by_seq.pop(probe.seq, None)
                self._expired(probe)

    def _expired(self, probe: Probe) -> None:
        peer = self._alive.get(probe.peer.node)
        if probe.purpose == Purpose.DUPLICATE_CHECK and probe.joiner is not None:
            if peer is not None and peer.same_process(probe.peer):
                self._down(peer, "unreachable (a new process took its node id)")
            if self._heard_from(probe.joiner):
                self._send(probe.joiner.addr, MsgKind.WELCOME, table=self._table())
        elif probe.purpose != Purpose.VERIFY and peer is not None and peer.same_process(probe.peer):
            self._down(peer, "unreachable")
            dead = Gossip(PeerStatus.DEAD, peer)
            self._gossip.add(dead)
            # The news itself, not the queue's oldest rumours (after joins, say).
            others = list(self._alive.values())
            for other in self._rng.sample(others, notice_fanout(len(others), self.config.indirect)):
                self._send(other.addr, MsgKind.NOTICE, gossip=(dead,))

    def _catch_up(self, now: float) -> None:
        """After a pause (SIGSTOP, a starved process), start the probes afresh.

        Silence during this process's own pause says nothing about the peers.
        """
        if now - self._last_tick > max(3 * self.config.round_interval, self.config.probe_timeout):
            self._log.info("paused for %.1f s", now - self._last_tick)
            for probe in self._probes.values():
                probe.restart(now)
                self._timers.add(probe, self.config)
                self._send(probe.peer.addr, MsgKind.PING, seq=probe.seq)
            self._next_round = now
        self._last_tick = now

    # -- anti-entropy -----------------------------------------------------------------

    def _anti_entropy(self, now: float) -> None:
        scale = max(1.0, (len(self._alive) + 1) / 16)
        self._next_sync = now + self.config.sync_interval * scale * self._rng.uniform(0.75, 1.25)
        if self._alive:
            peer = self._rng.choice(list(self._alive.values()))
            self._send(peer.addr, MsgKind.SYNC, table=self._table(), reply=True)
        known = {p.addr for p in self._alive.values()}
        strangers = [seed for seed in self._seeds if seed not in known]
        if self._alive and strangers:
            # Two clusters that formed apart (their seeds were unreachable at the time)
            # merge: a seed that hears this node admits it, and their tables cross.
            self._send(self._rng.choice(strangers), MsgKind.SYNC, table=self._table(), reply=True)
        self._tombs.expire(now)
        unreachable = self._tombs.unreachable()
        if unreachable:
            # A partition that healed: the other side is alive but declared left. A ping
            # makes it tell this node so, or this node tell it (both then come back).
            self._send(self._rng.choice(unreachable).addr, MsgKind.PING, seq=self._next_seq())

    def _table(self) -> tuple[Peer, ...]:
        return (self.me, *sorted(self._alive.values(), key=lambda p: p.node))

    # -- outputs --------------------------------------------------------------------

    def _up(self, peer: Peer) -> None:
        self._alive[peer.node] = peer
        self._ring = None
        self._gossip.add(Gossip(PeerStatus.ALIVE, peer))
        self._out.append(MemberUp(peer))

    def _down(self, peer: Peer, reason: str, left: bool = False) -> None:
        del self._alive[peer.node]
        self._ring = None
        probe = self._probes.pop(peer.node, None)
        if probe is not None:
            self._by_seq.pop(probe.seq, None)
        self._tombs.bury(peer, left=left, now=self._clock.now())
        self._out.append(MemberDown(peer, reason))

    def _send(
        self,
        addr: str,
        kind: str,
        *,
        seq: int = 0,
        target: Peer | None = None,
        table: tuple[Peer, ...] = (),
        reason: str = "",
        reply: bool = False,
        gossip: tuple[Gossip, ...] | None = None,
    ) -> None:
        rumours = self._gossip.take(len(self._alive) + 1) if gossip is None else gossip
        msg = MemberMsg(kind, self.me, seq, target, table, rumours, reason, reply)
        self._out.append(Send(addr, msg))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _flush(self) -> list[MembershipOutput]:
        out, self._out = self._out, []
        return out
