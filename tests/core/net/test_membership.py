"""Tests for the membership engine (``dstate_core.net._membership``), one scenario each.

Every scenario runs on :class:`~dstate_core.testing._netsim.MemberSim` (base
latency 0.5-2 ms, no faults unless set) over several seeds; the seeded fault
runs are in ``test_membership_sim.py``.
"""

from __future__ import annotations

import random

import pytest

from dstate_core.net._gossip import GossipQueue, notice_fanout
from dstate_core.net._membership import (
    JoinRefused,
    MemberDown,
    Membership,
    MembershipConfig,
    MemberUp,
    Send,
)
from dstate_core.net._messages import Gossip, MemberMsg, MsgKind, Peer, PeerStatus
from dstate_core.net._probes import ring_targets
from dstate_core.testing import TestClock
from dstate_core.testing._netsim import MemberSim

CONFIG = MembershipConfig()
TIMEOUT = CONFIG.failure_timeout
SEEDS = range(20)
MAX_LATENCY = 0.002


def cluster(n: int, seed: int, *, any_seed: bool = True) -> MemberSim:
    """``n`` processes n0..n{n-1}, each joining through a random earlier one (or n0)."""
    sim = MemberSim(seed, CONFIG)
    ids = [f"n{i}" for i in range(n)]
    for i, node in enumerate(ids):
        seeds = [sim.rng.choice(ids[:i]) if any_seed else "n0"] if i else []
        sim.spawn(node, seeds)
        sim.run(sim.rng.uniform(0, 0.05))
    assert sim.run_until(sim.converged, 5.0), {p.node: p.view() for p in sim.running()}
    return sim


def others(sim: MemberSim, node: str) -> set[str]:
    return {p.node for p in sim.running() if p.node != node}


# -- joining ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_every_member_learns_every_other(seed: int) -> None:
    sim = cluster(4 + seed % 5, seed)
    sim.check_outputs()
    assert sim.stalls == 0
    for proc in sim.running():
        ups = {e.output.peer.node for e in sim.events if e.observer is proc}
        assert ups == others(sim, proc.node)


def test_a_chain_of_seeds_joins_one_cluster() -> None:
    sim = MemberSim(1, CONFIG)
    sim.spawn("n0")
    for i in range(1, 8):
        sim.spawn(f"n{i}", [f"n{i - 1}"])  # each through the newest member
    assert sim.run_until(sim.converged, 3.0)
    assert len(sim.process("n0").view()) == 8


def test_a_process_alone_keeps_asking_its_seeds() -> None:
    sim = MemberSim(2, CONFIG)
    sim.spawn("n0")
    sim.crash("n0")
    joiner = sim.spawn("n1", ["n0"])
    sim.run(10.0)
    sent = joiner.sent_messages
    assert 5 <= sent <= 20  # backs off to join_retry_max, never stops
    sim.restart("n0")
    assert sim.run_until(sim.converged, 3.0)


# -- leaving -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_clean_leave_is_down_everywhere_at_once(seed: int) -> None:
    sim = cluster(5, seed)
    node = f"n{seed % 5}"
    leaving = sim.process(node)
    t0 = sim.clock.now()
    sim.leave(node)
    sim.run(0.1)
    downs = sim.downs(leaving.peer)
    assert set(downs) == others(sim, node)
    assert max(downs.values()) <= t0 + MAX_LATENCY + 1e-9  # the next delivery
    assert all(e.output.reason == "left" for e in sim.events if e.time >= t0)
    sim.run(5.0)
    assert sim.converged()
    sim.check_outputs()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_crash_is_down_everywhere_within_the_failure_timeout(seed: int) -> None:
    sim = cluster(4 + seed % 7, seed)
    sim.run(sim.rng.uniform(0, 1))
    node = f"n{seed % 4}"
    crashed = sim.crash(node)
    t0 = sim.clock.now()
    sim.run(TIMEOUT + 0.5)
    downs = sim.downs(crashed.peer)
    assert set(downs) == others(sim, node), (t0, downs)
    assert max(downs.values()) - t0 <= TIMEOUT + 0.5
    assert sim.converged()
    sim.check_outputs()


def test_no_member_is_down_on_a_quiet_network() -> None:
    sim = cluster(10, 3)
    sim.run(30.0)
    assert not [e for e in sim.events if isinstance(e.output, MemberDown)]


# -- pauses --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_paused_process_is_declared_left_and_rejoins_by_itself(seed: int) -> None:
    sim = cluster(5, seed)
    node = f"n{seed % 5}"
    paused = sim.pause(node, TIMEOUT * 3)
    t0 = sim.clock.now()
    sim.run(TIMEOUT + 0.5)
    assert set(sim.downs(paused.peer)) == others(sim, node)
    assert node not in sim.process("n0" if node != "n0" else "n1").view()
    sim.run(TIMEOUT * 2 - 0.5 + 0.001)  # it resumes
    resumed = sim.clock.now()
    assert paused.running
    assert sim.run_until(sim.converged, 3.0), {p.node: p.view() for p in sim.running()}
    assert set(sim.ups(paused.peer, since=resumed)) == others(sim, node)
    # It re-announces every peer: its views missed what was sent while it was out.
    again = {e.output.peer.node for e in sim.events if e.observer is paused and e.time >= t0}
    assert again == others(sim, node)
    assert paused.engine.me.version >= 1
    sim.check_outputs()


def test_a_short_pause_goes_unnoticed() -> None:
    sim = cluster(5, 4)
    sim.pause("n2", TIMEOUT / 4)
    sim.run(5.0)
    assert not [e for e in sim.events if isinstance(e.output, MemberDown)]


# -- node ids and restarts -----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_second_live_process_with_a_taken_node_id_is_refused(seed: int) -> None:
    sim = cluster(4, seed)
    first = sim.process("n1")
    seed_node = f"n{(seed % 3) + 1}" if seed % 3 else "n0"
    second = sim.spawn("n1", [seed_node if seed_node != "n1" else "n0"])
    sim.run(2.0)
    refusals = [e for e in sim.events if isinstance(e.output, JoinRefused)]
    assert [e.observer for e in refusals] == [second]
    assert "taken" in refusals[0].output.reason
    assert second.status == "refused"
    assert first.running
    for proc in sim.running():
        assert proc.view()["n1"] == first.peer.inc
    assert not sim.downs(first.peer)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("same_address", [True, False])
def test_a_restart_after_a_crash_is_admitted(seed: int, same_address: bool) -> None:
    sim = cluster(5, seed)
    old = sim.crash("n2")
    sim.run(sim.rng.uniform(0, TIMEOUT * 2))  # before or after the crash is noticed
    new = sim.restart("n2", ["n0"]) if same_address else sim.spawn("n2", ["n0"])
    assert new.peer.inc > old.peer.inc
    assert sim.run_until(sim.converged, TIMEOUT + 1.0)
    assert set(sim.downs(old.peer)) == others(sim, "n2")
    assert set(sim.ups(new.peer)) == others(sim, "n2")
    assert not [e for e in sim.events if isinstance(e.output, JoinRefused)]
    sim.run(5.0)
    assert sim.converged()
    sim.check_outputs()  # every down of the old process came before the new one's up


def test_an_older_incarnation_is_refused_by_a_newer_one() -> None:
    sim = cluster(3, 5)
    newer = sim.process("n1")
    stale = Peer("n1", "0" * 12, 0, "10.9.9.9:7100")
    sim.inject(sim.address("n0"), MemberMsg(MsgKind.JOIN, stale))
    sim.run(0.5)
    assert sim.process("n0").view()["n1"] == newer.peer.inc
    assert not sim.downs(newer.peer)


# -- forged and replayed messages ------------------------------------------------------------


def test_a_dead_rumour_about_a_live_member_changes_nothing() -> None:
    sim = cluster(5, 6)
    liar, victim = sim.process("n1").peer, sim.process("n3").peer
    for target in ("n0", "n2", "n4"):
        rumour = Gossip(PeerStatus.DEAD, victim)
        sim.inject(sim.address(target), MemberMsg(MsgKind.NOTICE, liar, gossip=(rumour,)))
    sim.run(TIMEOUT * 3)
    assert not sim.downs(victim)
    assert sim.converged()


def test_a_replayed_leave_of_an_old_incarnation_changes_nothing() -> None:
    sim = cluster(4, 7)
    old = sim.process("n2").peer
    sim.restart("n2", ["n0"])
    assert sim.run_until(sim.converged, 3.0)
    new = sim.process("n2").peer
    for target in ("n0", "n1", "n3"):
        sim.inject(sim.address(target), MemberMsg(MsgKind.LEAVE, old))
    sim.run(TIMEOUT * 2)
    assert not sim.downs(new)
    assert sim.converged()
    sim.check_outputs()


@pytest.mark.parametrize("seed", range(5))
def test_a_forged_leave_of_a_live_member_is_refuted_by_it(seed: int) -> None:
    """Its next message to each member gets a notice; it refutes and is back everywhere."""
    sim = cluster(5, seed)
    victim = sim.process(f"n{seed % 5}")
    t0 = sim.clock.now()
    for target in others(sim, victim.node):
        sim.inject(sim.address(target), MemberMsg(MsgKind.LEAVE, victim.peer))
    sim.run(0.01)
    assert set(sim.downs(victim.peer)) == others(sim, victim.node)  # forged, but obeyed
    assert sim.run_until(sim.converged, TIMEOUT + 1.0), {p.node: p.view() for p in sim.running()}
    assert victim.engine.me.version >= 1  # it refuted
    assert set(sim.ups(victim.peer, since=t0)) == others(sim, victim.node)
    for proc in sim.running():
        if proc is not victim:
            assert proc.engine.peer(victim.node) == victim.engine.me
    sim.check_outputs()


def test_an_old_ping_of_a_process_that_left_changes_nothing() -> None:
    sim = cluster(4, 8)
    gone = sim.process("n3").peer
    sim.leave("n3")
    sim.run(0.5)
    for target in ("n0", "n1", "n2"):
        sim.inject(sim.address(target), MemberMsg(MsgKind.PING, gone, seq=1))
        sim.inject(sim.address(target), MemberMsg(MsgKind.SYNC, gone, table=(gone,), reply=True))
        sim.inject(sim.address(target), MemberMsg(MsgKind.JOIN, gone))
    sim.run(TIMEOUT * 3)
    assert not sim.ups(gone, since=0.5)
    assert sim.converged()


def test_a_late_dead_rumour_about_an_old_incarnation_leaves_no_hole() -> None:
    sim = cluster(4, 9)
    old = sim.process("n1").peer
    sim.restart("n1", ["n2"])
    assert sim.run_until(sim.converged, 3.0)
    for target in ("n0", "n2", "n3"):
        late = MemberMsg(MsgKind.NOTICE, sim.process("n0").peer, gossip=(Gossip("dead", old),))
        sim.inject(sim.address(target), late, delay=0.01)
    sim.run(TIMEOUT * 3)
    assert sim.converged()
    assert not sim.downs(sim.process("n1").peer)
    sim.check_outputs()


def test_a_refuse_from_a_non_seed_or_after_joining_changes_nothing() -> None:
    sim = cluster(4, 10, any_seed=False)  # everyone joined through n0
    n0, n2 = sim.process("n0").peer, sim.process("n2").peer
    for target in ("n1", "n3"):
        sim.inject(sim.address(target), MemberMsg(MsgKind.REFUSE, n0, reason="go away"))
        sim.inject(sim.address(target), MemberMsg(MsgKind.REFUSE, n2, reason="go away"))
    # A process still joining only listens to the seeds it asked.
    joiner = sim.spawn("n9", ["n0"])
    sim.inject(joiner.peer.addr, MemberMsg(MsgKind.REFUSE, n2, reason="not a seed"))
    sim.run(2.0)
    assert not [e for e in sim.events if isinstance(e.output, JoinRefused)]
    assert all(p.running for p in sim.processes)
    assert sim.converged()


def test_garbage_rumours_about_itself_are_refuted_not_obeyed() -> None:
    sim = cluster(3, 11)
    me = sim.process("n0")
    forged = MemberMsg(
        MsgKind.NOTICE, sim.process("n1").peer, gossip=(Gossip("dead", me.engine.me),)
    )
    sim.inject(me.peer.addr, forged)
    sim.run(2.0)
    assert me.engine.me.version == 1  # refuted: a higher version, still a member
    assert sim.converged()
    assert not sim.downs(me.peer)


# -- partitions ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_views_merge_after_a_partition_heals(seed: int) -> None:
    sim = cluster(6, seed)
    ids = [f"n{i}" for i in range(6)]
    random.Random(seed).shuffle(ids)
    cut = 1 + seed % 5
    sim.partition(ids[:cut], ids[cut:])
    sim.run(TIMEOUT + 1.0)
    for proc in sim.running():
        side = ids[:cut] if proc.node in ids[:cut] else ids[cut:]
        assert set(proc.view()) == set(side)
    sim.heal()
    assert sim.run_until(sim.converged, 20.0), {p.node: p.view() for p in sim.running()}
    sim.check_outputs()


def test_two_clusters_formed_apart_merge_through_a_seed_across() -> None:
    """n2 could not reach its seed n0 when it started, so n3 joined n2 instead: two
    clusters with nothing in common but n2's seed, which anti-entropy re-contacts."""
    sim = MemberSim(12, CONFIG)
    sim.spawn("n0")
    sim.spawn("n1", ["n0"])
    sim.partition(["n0", "n1"], ["n2", "n3"])
    sim.spawn("n2", ["n0"])
    sim.run(0.5)
    sim.spawn("n3", ["n2"])
    sim.run(2.0)
    assert set(sim.process("n0").view()) == {"n0", "n1"}
    assert set(sim.process("n3").view()) == {"n2", "n3"}
    sim.heal()
    assert sim.run_until(sim.converged, 3 * CONFIG.sync_interval)
    assert not [e for e in sim.events if isinstance(e.output, MemberDown)]
    sim.check_outputs()


# -- engine details ------------------------------------------------------------------------


def test_an_unanswered_probe_goes_indirect_at_the_ack_timeout() -> None:
    """next_deadline() must include the indirect retry, or a shell that sleeps until it
    sends the ping-req only at the next round."""
    clock = TestClock()
    me = Peer("a", "1", 0, "h:1")
    engine = Membership(me, [], CONFIG, clock, random.Random(0))
    engine.start()
    for node in "bcd":
        engine.receive(MemberMsg(MsgKind.PING, Peer(node, "1", 0, f"{node}:1"), seq=1))
    clock.advance(CONFIG.round_interval)
    probes = [o for o in engine.tick() if isinstance(o, Send) and o.msg.kind == MsgKind.PING]
    assert probes
    assert engine.next_deadline() == pytest.approx(clock.now() + CONFIG.ack_timeout)
    clock.set(engine.next_deadline())
    kinds = [o.msg.kind for o in engine.tick() if isinstance(o, Send)]
    assert MsgKind.PING_REQ in kinds


@pytest.mark.parametrize("members", [3, 8, 40])
def test_a_failed_probe_tells_a_log_of_the_members(members: int) -> None:
    """A member rumoured dead that does not answer the confirming probe is declared
    left, and notice_fanout() of the remaining members hear it at once."""
    clock = TestClock()
    engine = Membership(Peer("a", "1", 0, "h:1"), [], CONFIG, clock, random.Random(0))
    engine.start()
    peers = [Peer(f"m{i:02d}", "1", 0, f"m{i:02d}:1") for i in range(members)]
    for peer in peers:
        engine.receive(MemberMsg(MsgKind.PING, peer, seq=1))
    victim, teller = peers[0], peers[1]
    engine.receive(MemberMsg(MsgKind.NOTICE, teller, gossip=(Gossip(PeerStatus.DEAD, victim),)))
    clock.advance(CONFIG.round_interval)  # the confirmation's deadline
    out = engine.tick()
    assert MemberDown(victim, "unreachable") in out
    notices = [o for o in out if isinstance(o, Send) and o.msg.kind == MsgKind.NOTICE]
    assert len(notices) == notice_fanout(members - 1, CONFIG.indirect)
    assert len({o.addr for o in notices}) == len(notices)
    assert victim.addr not in {o.addr for o in notices}
    assert all(Gossip(PeerStatus.DEAD, victim) in o.msg.gossip for o in notices)


def test_notice_fanout_is_twice_log2_of_the_members_and_at_least_indirect_plus_one() -> None:
    assert [notice_fanout(n, 2) for n in (0, 1, 2, 3, 7, 8, 99, 1000)] == [
        0,
        1,
        2,
        3,
        6,
        8,
        14,
        20,
    ]
    assert notice_fanout(10, 5) == 8  # 2 * ceil(log2(11))
    assert notice_fanout(10, 9) == 10  # indirect + 1


def test_ring_targets_are_the_successors_then_one_other_at_random() -> None:
    ring = ["b", "d", "f", "h", "j"]
    rng = random.Random(0)
    for _ in range(20):
        targets = ring_targets(ring, "g", 2, rng)
        assert targets[:2] == ["h", "j"]
        assert len(targets) == 3 and targets[2] in {"b", "d", "f"}
    assert ring_targets(ring, "i", 3, rng)[:3] == ["j", "b", "d"]  # wraps around
    assert ring_targets(["b", "d"], "a", 3, rng) == ["b", "d"]  # no others left
    assert ring_targets([], "a", 3, rng) == []


def test_member_up_and_down_carry_the_peer() -> None:
    clock = TestClock()
    engine = Membership(Peer("a", "1", 0, "h:1"), [], CONFIG, clock, random.Random(0))
    b = Peer("b", "1", 0, "b:1")
    assert MemberUp(b) in engine.receive(MemberMsg(MsgKind.PING, b, seq=1))
    assert MemberDown(b, "left") in engine.receive(MemberMsg(MsgKind.LEAVE, b))
    assert engine.members() == {"a": engine.me}


class TestGossipQueue:
    def peer(self, node: str) -> Peer:
        return Peer(node, "1", 0, f"{node}:1")

    def test_least_told_first_and_each_told_a_bounded_number_of_times(self) -> None:
        queue = GossipQueue(per_message=2)
        for node in "abc":
            queue.add(Gossip("alive", self.peer(node)))
        assert [g.peer.node for g in queue.take(3)] == ["a", "b"]
        assert [g.peer.node for g in queue.take(3)] == ["c", "a"]
        told = 2
        while len(queue):
            queue.take(3)
            told += 1
        limit = 3 * 2  # 3 * ceil(log2(3 + 1))
        assert told == (3 * limit + 1) // 2

    def test_a_newer_rumour_replaces_the_older_and_starts_afresh(self) -> None:
        queue = GossipQueue(per_message=1)
        queue.add(Gossip("alive", self.peer("a")))
        queue.add(Gossip("alive", self.peer("b")))
        assert queue.take(2)[0].peer.node == "a"
        queue.add(Gossip("dead", self.peer("a")))
        assert len(queue) == 2
        taken = {queue.take(2)[0], queue.take(2)[0]}  # both told 0 times now
        assert taken == {Gossip("dead", self.peer("a")), Gossip("alive", self.peer("b"))}
