"""Seeded random schedules over the deterministic cluster, with invariants checked at each step.

One schedule = one seed: a 3-6 node cluster, one or two state types (simple,
delta-aware, or one in mid-upgrade between two wire versions), each with its
own strategy, and a random sequence of mutations, time steps, faults,
partitions, crashes, restarts (with and without persistence), leaves, joins
and rolling upgrades (a node leaves and comes back on the next release,
``upgrades.py``). After every step:

* no replica's view of a peer ever moves to an older generation (within one
  lifetime of the observing node), so no departed incarnation reappears;
* a node that left (cleanly, or crashed past the failure timeout) and has not
  come back is in no live node's view map;
* a node restarted on its store resumes exactly the last mutation it
  acknowledged (no acknowledged mutation is ever lost), across releases too;
* during a careful rollout (every node on release 1 before any on release 2)
  no node ever meets an update it cannot read.

At the end the network is healed, and after periodic sync (where configured),
one pull-on-query round and ``run_until_idle`` every live node's view of every
live peer equals that peer's own view.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dstate_core import (
    DeltaDistributedState,
    Generation,
    MutationError,
    StalePeerError,
    StateConfig,
    SyncStrategy,
    VersionMismatchPolicy,
)
from dstate_core.engine._pulls import PROBE_BACKOFF_CAP
from dstate_core.testing import (
    DeterministicCluster,
    FailingPersistence,
    TestDeltaState,
    TestState,
    UrgentDeltaState,
)
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import FullSnapshot

from .upgrades import RELEASES, PriceV1, amount_of, raise_price

FAILURE_TIMEOUT = 3.0
SYNC_INTERVAL = 2.0

STRATEGIES: dict[str, Callable[[], SyncStrategy]] = {
    "active_push": SyncStrategy.active_push,
    "feed_lazy_pull": SyncStrategy.feed_lazy_pull,
    "feed_with_periodic_sync": lambda: SyncStrategy.feed_with_periodic_sync(SYNC_INTERVAL),
    "periodic_only": lambda: SyncStrategy.periodic_only(SYNC_INTERVAL),
}
#: ``PriceV1`` stands for the state in mid-upgrade: each node runs one of its releases.
STATE_TYPES: list[type[Any]] = [TestState, TestDeltaState, UrgentDeltaState, PriceV1]
UNREADABLE = "unreadable wire version"


class InvariantViolation(AssertionError):
    """A schedule broke an invariant; the message tells how to replay it."""


@dataclass
class Schedule:
    """One seeded run; :meth:`run` raises :class:`InvariantViolation` on a bug."""

    seed: int
    steps: int = 60
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        rng = self.rng
        #: (state type, strategy) of each registered state; mixed in one cluster.
        self.kinds: list[tuple[type[Any], str]] = [
            (state_type, rng.choice(sorted(STRATEGIES)))
            for state_type in rng.sample(STATE_TYPES, rng.choice((1, 2, 2)))
        ]
        self.state_type, self.strategy_name = self.kinds[0]
        self.node_ids = [f"n{i}" for i in range(rng.choice((3, 3, 4, 5, 6)))]
        self.stores = {
            (node, kind.NAME): FailingPersistence()
            for node in self.node_ids
            for kind, _ in self.kinds
        }
        self.persistent = {node: rng.random() < 0.5 for node in self.node_ids}
        self.crashed: dict[str, float] = {}
        self.removed: set[str] = set()
        self.highest: dict[tuple[int, str, str], Generation] = {}
        #: The last mutation each node acknowledged, per state, while its store kept it.
        self.acked: dict[tuple[str, str], tuple[Generation, Any]] = {}
        #: The release of the upgrading state each node runs, and how the rollout goes.
        self.release = dict.fromkeys(self.node_ids, 0)
        self.careless = rng.random() < 0.25
        self.policy = rng.choice(list(VersionMismatchPolicy))

    # -- set-up -------------------------------------------------------------------

    def config(self, node: str) -> StateConfig:
        return StateConfig(
            sync_strategy=STRATEGIES[self.strategy_name](),
            persistence=self.stores[node, self.state_type.NAME] if self.persistent[node] else None,
            pull_timeout=0.5,
            default_staleness=5.0,
            version_mismatch_policy=self.policy,
        )

    @property
    def upgrading(self) -> bool:
        return any(kind is PriceV1 for kind, _ in self.kinds)

    def class_of(self, node: str) -> type[Any]:
        """The class ``node`` runs for the current kind (its release, when upgrading)."""
        if self.state_type is PriceV1:
            return RELEASES[self.release[node]]
        return self.state_type

    def same(self, a: Any, b: Any) -> bool:
        """Equal values; across releases of the upgrading state, the same price."""
        if self.state_type is PriceV1:
            return amount_of(a) == amount_of(b)
        return bool(a == b)

    def each_kind(self) -> Iterator[tuple[type[Any], str]]:
        """Make each kind the current one in turn (the last stays current)."""
        for kind in self.kinds:
            self.state_type, self.strategy_name = kind
            yield kind

    def register(self, node: str) -> None:
        for _ in self.each_kind():
            self.cluster.node(node).register(self.class_of(node), self.config(node))

    def shard(self, node: str) -> Any:
        return self.cluster.node(node).lookup(self.state_type.NAME)

    def fail(self, what: str) -> NoReturn:
        tail = "\n  ".join(self.log[-25:])
        raise InvariantViolation(
            f"seed {self.seed} ({[(k.__name__, st) for k, st in self.kinds]}, "
            f"nodes {self.node_ids}): {what}\n  last steps:\n  {tail}\n"
            f"replay: DSTATE_SEED={self.seed} pytest tests/simulation -k replay"
        )

    # -- steps --------------------------------------------------------------------

    def mutate(self, node: str) -> None:
        """One mutation, or a burst: pipelined ones and a blocking last, one batch (whose
        one save sometimes fails: then every mutation of it fails and nothing changes)."""
        shard = self.shard(node)
        rng = self.rng
        burst = rng.choice((1, 1, 1, 2, 5))
        failing = self.persistent[node] and rng.random() < 0.05
        before = shard.state.generation
        if failing:
            self.log.append(f"{node}: its next save fails")
            self.stores[node, self.state_type.NAME].fail_next_save()
        pipelined = [self.one_mutation(node, shard, block=False) for _ in range(burst - 1)]
        try:
            generation = self.one_mutation(node, shard, block=True)
        except MutationError:
            if not failing:
                raise
            if any(not isinstance(f.exception(timeout=0), MutationError) for f in pipelined):
                self.fail("a mutation of a batch whose save failed did not fail")
            if shard.state.generation != before:
                self.fail(f"a batch whose save failed moved {before} to {shard.state.generation}")
            return
        if failing:
            self.fail("a batch whose save failed was committed")
        for back, future in enumerate(reversed(pipelined), start=1):
            got = future.result(timeout=0)
            if got.incarnation != generation.incarnation or got.age != generation.age - back:
                self.fail(f"pipelined mutation got {got}, the blocking one after it {generation}")
        if self.persistent[node]:
            key = (node, self.state_type.NAME)
            self.acked[key] = (generation, shard.state.value.model_copy(deep=True))

    def one_mutation(self, node: str, shard: Any, block: bool) -> Any:
        rng = self.rng
        mode = "" if block else ", block=False"
        if self.state_type is PriceV1:
            amount = rng.randint(1, 9)
            self.log.append(f"{node}.raise_price(+{amount}{mode})")
            return shard.mutate(raise_price(amount), block=block)
        if self.state_type is TestState:
            amount = rng.randint(1, 9)
            self.log.append(f"{node}.mutate(+{amount}{mode})")
            return shard.mutate(TestState.increment(amount), block=block)
        prefix = ""
        if self.state_type is UrgentDeltaState:
            prefix = rng.choice(("", "", "now:", "late:", "quiet:"))
        key = f"{prefix}k{rng.randint(0, 3)}"
        self.log.append(f"{node}.bump({key}{mode})")
        return shard.mutate_with_delta(self.state_type.bump(key, rng.randint(1, 5)), block=block)

    def step(self) -> None:
        rng, cluster = self.rng, self.cluster
        self.state_type, self.strategy_name = rng.choice(self.kinds)
        live = cluster.node_ids
        roll = rng.random()
        if self.upgrading and live and rng.random() < 0.05:
            node = rng.choice(live)
            release = self.next_release(node)
            if release is not None:
                self.upgrade(node, release)
                return
        if roll < 0.40 and live:
            self.mutate(rng.choice(live))
        elif roll < 0.55:
            seconds = rng.choice((0.1, 0.3, 0.7, 1.5, 3.5))
            cluster.advance(seconds)
            self.log.append(f"advance({seconds})")
        elif roll < 0.65:
            cluster.run_until_idle()
            self.log.append("run_until_idle()")
        elif roll < 0.70:
            nodes = list(self.node_ids)
            rng.shuffle(nodes)
            cut = rng.randint(1, len(nodes) - 1)
            cluster.partition(nodes[:cut], nodes[cut:])
            self.log.append(f"partition({nodes[:cut]}, {nodes[cut:]})")
        elif roll < 0.75:
            cluster.heal()
            self.log.append("heal()")
        elif roll < 0.79:
            faults = {
                "drop": rng.choice((0.0, 0.1, 0.3)),
                "duplicate": rng.choice((0.0, 0.1, 0.2)),
                "reorder": rng.choice((0.0, 0.2, 0.5)),
                "delay": rng.choice((0.0, 0.2, 0.8)),
            }
            cluster.set_faults(**faults)
            self.log.append(f"set_faults({faults})")
        elif roll < 0.82:
            cluster.clear_faults()
            self.log.append("clear_faults()")
        elif roll < 0.87 and len(live) > 2:
            node = rng.choice(live)
            cluster.crash(node)
            self.crashed[node] = cluster.clock.now()
            self.log.append(f"crash({node})")
        elif roll < 0.93 and (self.crashed or self.removed):
            node = rng.choice(sorted(set(self.crashed) | self.removed))
            self.persistent[node] = rng.random() < 0.5
            if not self.persistent[node]:
                # A lifetime without persistence must not leave an older record behind
                # for a later persistent restart to resume from.
                for kind, _ in self.kinds:
                    self.stores[node, kind.NAME].clear()
                    self.acked.pop((node, kind.NAME), None)
            if node in self.removed:
                cluster.add_node(node)
            else:
                cluster.restart(node)
            self.crashed.pop(node, None)
            self.removed.discard(node)
            self.register(node)
            self.log.append(f"restart({node}, persistent={self.persistent[node]})")
            self.check_resumed(node)
        elif roll < 0.95 and len(live) > 2:
            node = rng.choice(live)
            cluster.remove_node(node)
            self.removed.add(node)
            self.log.append(f"remove_node({node})")
        elif roll < 0.97 and live:
            self.inject_garbage(rng.choice(live))
        elif live:
            node = rng.choice(live)
            bound = rng.choice((0.0, 1.0, 5.0))
            try:
                self.shard(node).query(lambda views: len(views), max_staleness=bound)
                self.log.append(f"{node}.query({bound}) ok")
            except StalePeerError as exc:
                self.log.append(f"{node}.query({bound}) stale: {exc.node_id}")

    def check_resumed(self, node: str) -> None:
        """A node back on its store resumes the last mutation it acknowledged."""
        for kind in self.each_kind():
            acked = self.acked.get((node, kind[0].NAME))
            own = self.shard(node).state
            if acked is not None and (
                own.generation != acked[0] or not self.same(own.value, acked[1])
            ):
                self.fail(
                    f"{node} acknowledged {acked[0]} {acked[1]!r} of {kind[0].NAME} but "
                    f"resumed at {own.generation} {own.value!r}"
                )

    def next_release(self, node: str) -> int | None:
        """The release ``node`` may move to now (None: it may not move)."""
        now = self.release[node]
        if now == len(RELEASES) - 1:
            return None
        if self.careless:
            return self.rng.randint(now + 1, len(RELEASES) - 1)
        if now == 1 and any(r < 1 for r in self.release.values()):
            return None  # release 2 writes what release 0 cannot read
        return now + 1

    def upgrade(self, node: str, release: int) -> None:
        """A rolling upgrade of one node: it leaves, and comes back on ``release``."""
        self.cluster.remove_node(node)
        self.cluster.add_node(node)
        self.release[node] = release
        self.register(node)
        self.log.append(f"upgrade({node}, release={release})")
        self.check_resumed(node)

    def inject_garbage(self, dst: str) -> None:
        """Random bytes, or a well-formed snapshot from a node that is not a member."""
        rng = self.rng
        before = {owner: view.generation for owner, view in self.shard(dst).snapshot().items()}
        if rng.random() < 0.5:
            data = rng.randbytes(rng.randint(0, 64))
            what = "garbage"
        else:
            forged = FullSnapshot(
                self.state_type.NAME,
                "intruder",
                Generation(2**40, 1),
                self.state_type.WIRE_VERSION,
                self.state_type.serialize_view(self.state_type().project_view())
                if issubclass(self.state_type, DeltaDistributedState)
                else self.state_type().serialize_state(),
                0,
                0,
            )
            data = WireCodec().encode(forged)
            what = "a snapshot from a non-member"
        self.cluster.inject("intruder", dst, data)
        self.cluster.run_until_idle()
        after = {owner: view.generation for owner, view in self.shard(dst).snapshot().items()}
        if "intruder" in after or any(after.get(o, g) < g for o, g in before.items()):
            self.fail(f"{what} injected into {dst} changed its views: {before} -> {after}")
        self.log.append(f"inject({dst}, {what})")

    # -- invariants ---------------------------------------------------------------

    def check(self) -> None:
        for _ in self.each_kind():
            self.check_state()

    def check_state(self) -> None:
        now = self.cluster.clock.now()
        gone = set(self.removed) | {
            node for node, when in self.crashed.items() if now - when > FAILURE_TIMEOUT + 0.01
        }
        for observer in self.cluster.node_ids:
            lifetime = id(self.cluster.node(observer))
            if self.state_type is PriceV1 and not self.careless:
                for row in self.shard(observer).sync_status():
                    if UNREADABLE in (row.last_error or ""):
                        self.fail(f"careful rollout {self.release}: {observer}: {row.last_error}")
            for owner, view in self.shard(observer).snapshot().items():
                key = (lifetime, owner, self.state_type.NAME)
                best = self.highest.get(key)
                if best is not None and view.generation < best:
                    self.fail(
                        f"{observer}'s view of {owner} went back from {best} to {view.generation}"
                    )
                self.highest[key] = view.generation
                if owner in gone and self.drained:
                    self.fail(f"{observer} still holds a view of departed {owner}")

    def finish_rollout(self) -> None:
        """Every live node on the last release, in the careful order (nodes that are down
        are taken out of service for good)."""
        for release in range(1, len(RELEASES)):
            for node in self.cluster.node_ids:
                if self.release[node] < release:
                    self.upgrade(node, release)
                    self.cluster.run_until_idle()
                    self.check()

    def converge(self) -> None:
        cluster = self.cluster
        cluster.heal()
        cluster.clear_faults()
        if self.upgrading:
            for node in set(self.node_ids) - set(cluster.node_ids):
                self.release[node] = len(RELEASES) - 1  # out of service: not waited for
            self.finish_rollout()
        # Past the failure timeout, two sync intervals and the longest join-probe backoff.
        cluster.advance(FAILURE_TIMEOUT + 2 * SYNC_INTERVAL + PROBE_BACKOFF_CAP + 1.0)
        for _ in self.each_kind():
            for node in cluster.node_ids:
                self.shard(node).query(lambda views: None, max_staleness=0.0)
        cluster.run_until_idle()
        for _ in self.each_kind():
            self.check_converged()

    def check_converged(self) -> None:
        live = self.cluster.node_ids
        for observer in live:
            views = self.shard(observer).snapshot()
            if sorted(views) != live:
                self.fail(f"{observer} holds views of {sorted(views)}, expected {live}")
            for owner in live:
                own = self.shard(owner).snapshot()[owner]
                seen = views[owner]
                if seen.generation != own.generation or not self.same(seen.value, own.value):
                    self.fail(
                        f"{observer}'s view of {owner} is {seen.generation} {seen.value!r}, "
                        f"but {owner} is at {own.generation} {own.value!r}"
                    )

    def run(self) -> None:
        """Run the schedule; any failure (an invariant or an error) names the seed."""
        try:
            self._run()
        except InvariantViolation:
            raise
        except Exception as exc:
            self.fail(f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        with DeterministicCluster(
            self.node_ids, seed=self.seed, failure_timeout=FAILURE_TIMEOUT
        ) as cluster:
            self.cluster = cluster
            for node in self.node_ids:
                self.register(node)
            cluster.run_until_idle()
            for _ in range(self.steps):
                self.step()
                self.drained = self.log[-1].startswith(("advance", "run_until_idle"))
                self.check()
            self.drained = False
            self.converge()
