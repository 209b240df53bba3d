"""Seeded fault schedules over the membership engine, and its traffic as the cluster grows.

One schedule = one seed: 4-8 processes, then random steps (time, link faults
with drop/duplicate/reorder/delay, partitions and heals, crashes, restarts,
pauses, clean leaves, new joins). After every step each running engine's
MemberUp/MemberDown outputs must add up to its view. At the end faults stop,
the partition heals, and every running process must know exactly the running
ones (their current incarnations). ``DSTATE_SOAK=1`` runs ten times more.

Seeds are given as operators give them: every process gets the same seed list
(the first :data:`SEED_NODES` node ids, those started before it) plus one
random member, and at the end a seed node is running (one is restarted if all
are down). Nothing less guarantees a merge: two cliques that formed apart
during a partition, with no member, tombstone or seed address in common, have
nothing to contact each other through (seed 121 once ended so when each
restart got a single random seed).
"""

from __future__ import annotations

import os
import random

import pytest

from dstate_core.net._membership import MembershipConfig
from dstate_core.testing._netsim import MemberSim, measure_traffic

SOAK = os.environ.get("DSTATE_SOAK") == "1"
SCHEDULES = 200 if SOAK else 20
CONFIG = MembershipConfig()
#: After faults stop: a failure timeout, pauses ending, anti-entropy past a partition.
SETTLE = 40.0
#: How many of the first node ids every process lists as seeds.
SEED_NODES = 3


def schedule(seed: int, steps: int = 40) -> None:
    rng = random.Random(seed)
    sim = MemberSim(seed, CONFIG)
    ids = [f"n{i}" for i in range(rng.randint(4, 8))]
    log: list[str] = []

    def fail(what: str) -> None:
        tail = "\n  ".join(log[-20:])
        raise AssertionError(f"seed {seed}: {what}\n  last steps:\n  {tail}")

    def up(node: str) -> bool:
        return sim.process(node).status in ("running", "paused")

    def seeds_for(node: str) -> list[str]:
        """The seed nodes started so far, plus a random live member (an operator's list)."""
        started = [n for n in ids if n != node and n in spawned]
        seeds = [n for n in ids[:SEED_NODES] if n in started]
        live = [n for n in started if up(n) and n not in seeds]
        return [*seeds, rng.choice(live)] if live else seeds

    spawned: set[str] = set()
    for node in ids:
        sim.spawn(node, seeds_for(node))
        spawned.add(node)
    for _ in range(steps):
        roll = rng.random()
        live = [n for n in ids if up(n)]
        if roll < 0.35:
            seconds = rng.choice((0.1, 0.3, 0.7, 1.5, 3.0))
            sim.run(seconds)
            log.append(f"run({seconds})")
        elif roll < 0.50:
            faults = {
                "drop": rng.choice((0.0, 0.1, 0.3)),
                "duplicate": rng.choice((0.0, 0.1, 0.3)),
                "reorder": rng.choice((0.0, 0.2, 0.5)),
                "delay": rng.choice((0.0, 0.05, 0.3)),
            }
            sim.set_faults(**faults)
            log.append(f"set_faults({faults})")
        elif roll < 0.55:
            sim.clear_faults()
            log.append("clear_faults()")
        elif roll < 0.62:
            shuffled = list(ids)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(ids) - 1)
            sim.partition(shuffled[:cut], shuffled[cut:])
            log.append(f"partition({shuffled[:cut]}, {shuffled[cut:]})")
        elif roll < 0.68:
            sim.heal()
            log.append("heal()")
        elif roll < 0.74 and len(live) > 2:
            node = rng.choice(live)
            sim.crash(node)
            log.append(f"crash({node})")
        elif roll < 0.82:
            node = rng.choice(ids)
            seeds = seeds_for(node)
            sim.restart(node, seeds)
            log.append(f"restart({node}, seeds={seeds})")
        elif roll < 0.90 and live:
            node = rng.choice(live)
            seconds = rng.choice((0.3, 1.5, 4.0))
            sim.pause(node, seconds)
            log.append(f"pause({node}, {seconds})")
        elif roll < 0.95 and len(live) > 2:
            node = rng.choice(live)
            sim.leave(node)
            log.append(f"leave({node})")
        else:
            node = f"n{len(ids)}"
            seeds = seeds_for(node)
            ids.append(node)
            sim.spawn(node, seeds)
            spawned.add(node)
            log.append(f"spawn({node}, seeds={seeds})")
        try:
            sim.check_outputs()
        except AssertionError as exc:
            fail(str(exc))
    sim.clear_faults()
    sim.heal()
    log.append("clear_faults(); heal()")
    sim.run(5.0)  # every pause ends
    # Every process lists the seed nodes: with one of them running, all can meet.
    if not any(up(n) for n in ids[:SEED_NODES]):
        seeds = seeds_for(ids[0])
        sim.restart(ids[0], seeds)
        log.append(f"restart({ids[0]}, seeds={seeds}) (a seed node runs again)")
    if not sim.run_until(sim.converged, SETTLE, step=0.5):
        views = {p.node: p.view() for p in sim.running()}
        fail(f"no convergence {SETTLE} s after faults stopped: {views}, truth {sim.expected()}")
    try:
        sim.check_outputs()
    except AssertionError as exc:
        fail(str(exc))
    if sim.stalls:
        fail(f"{sim.stalls} wake-ups with a deadline in the past (a busy loop)")


@pytest.mark.parametrize("block", range(10))
def test_random_fault_schedules(block: int) -> None:
    """Each block runs a tenth of the schedules (seeds block, block+10, ...)."""
    for seed in range(block, SCHEDULES, 10):
        schedule(seed)


def test_a_broken_schedule_names_its_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A view that disagrees with the outputs fails the run and names the seed."""

    def lying(self: MemberSim) -> None:
        raise AssertionError("outputs disagree")

    monkeypatch.setattr(MemberSim, "check_outputs", lying)
    with pytest.raises(AssertionError, match="seed 3: outputs disagree"):
        schedule(3)


# -- failure detection at scale -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3 if SOAK else 1))
def test_crashes_among_100_nodes_are_down_everywhere_within_the_failure_timeout(
    seed: int,
) -> None:
    """Ten crashes, one at a time: the last observer of each within failure_timeout + 0.5 s
    (one log2 of notices per failed probe took up to 1.6 s here)."""
    sim = MemberSim(seed, CONFIG)
    ids = [f"n{i:03d}" for i in range(100)]
    for i, node in enumerate(ids):
        sim.spawn(node, [sim.rng.choice(ids[:i])] if i else [])
        sim.run(0.005)
    assert sim.run_until(sim.converged, 60.0, step=0.25)
    sim.run(5.0)  # the join's rumours die down
    for node in sim.rng.sample(ids, 10):
        sim.run(sim.rng.uniform(0, 1))
        crashed, t0 = sim.crash(node), sim.clock.now()
        sim.run(CONFIG.failure_timeout + 0.5)
        downs = sim.downs(crashed.peer)
        assert set(downs) == {p.node for p in sim.running()}
        assert max(downs.values()) - t0 <= CONFIG.failure_timeout + 0.5, (node, seed)
    assert sim.converged()


# -- traffic ------------------------------------------------------------------------------


def test_traffic_per_node_is_flat_from_10_to_100_nodes() -> None:
    small, big = measure_traffic(10, 5.0), measure_traffic(100, 5.0)
    assert 20 < small.msgs_per_node < 50  # 4 probes a round, each acked, 4 rounds a second
    assert big.msgs_per_node < 1.2 * small.msgs_per_node
    assert big.bytes_per_node < 2 * small.bytes_per_node
