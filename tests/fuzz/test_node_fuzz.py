"""Mutated frames through a live node: nothing escapes, no refused frame changes a view.

A deterministic 3-node cluster hosts TestState and TestDeltaState (StateConfig
defaults). Each mutated frame (from the cluster's own traffic and a change-feed
cluster's) is injected into one node with ``cluster.inject`` and delivered with
``run_until_idle``; every node's views are compared before and after. Default run:
10,000 frames without a cluster secret and 10,000 with one; DSTATE_SOAK=1 runs ten
times more. A failure names the seed, the block and the frame index: the same
``DSTATE_FUZZ_SEED`` replays the same run.

Without a secret a mutated frame that decodes into a plausible update from a member
may change a view (``docs/security.md``): only refused frames are held to "no view
changed", and each block starts a fresh cluster so forged views do not pile up. With
a secret no injected frame may change any view, verbatim replays of genuine frames
may not change a view's generation or value, and the cluster must still converge.
"""

from __future__ import annotations

import hmac
import logging
import resource
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from dstate_core.testing import TestDeltaState, TestState, local_cluster

from .frames import (
    NODES,
    SECRET,
    SEED,
    SOAK,
    Captured,
    Mutator,
    capture_corpus,
    drive_traffic,
    frame_rng,
    register_states,
    spy_on,
)

NODE_FRAMES = 100_000 if SOAK else 10_000
BLOCK = 1_000  # frames per fresh cluster
LEGIT_EVERY = 97  # a real mutation between injected frames, now and then
TRACED_BLOCKS = 1  # tracemalloc watches the first block (it slows the run about 5x)
MEMORY_BOUND = 64 * 1024 * 1024
RSS_BOUND = 128 * 1024 * 1024
REPLAY_SHARE = 0.1  # with a secret: verbatim replays of genuine frames
#: Counted in dropped_messages but not a refusal of the injected frame: the owner's pull
#: answer overruling a generation the receiver had accepted (the repair of a forged view).
CORRECTIONS = {"unproduced_generation"}


class EscapeLog(logging.Handler):
    """Counts exceptions that escaped an actor handler (the runtime logs them at ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record.getMessage()[:300])


@contextmanager
def escape_log() -> Iterator[EscapeLog]:
    handler = EscapeLog()
    logger = logging.getLogger("dstate")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class NodeStats:
    seed: int
    frames: int = 0
    refused: int = 0
    accepted_changed: int = 0  # accepted frames that changed a view (allowed without secret)
    replays: int = 0
    not_converged: int = 0  # without a secret: views still off after a real mutation
    escapes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    peak: int = 0
    rss_growth: int = 0
    seconds: float = 0.0

    def fail(self, kind: list[str], text: str) -> None:
        if len(kind) < 5:
            kind.append(text)

    def check(self) -> None:
        replay = f"replay: DSTATE_FUZZ_SEED={self.seed} pytest tests/fuzz/test_node_fuzz.py"
        assert not self.escapes, f"seed {self.seed}: escapes {self.escapes}\n{replay}"
        assert not self.violations, f"seed {self.seed}: violations {self.violations}\n{replay}"


def views(cluster: Any, shards: dict[str, tuple[Any, Any]]) -> dict[tuple[str, int], Any]:
    return {(n, i): dict(pair[i].snapshot()) for n, pair in shards.items() for i in (0, 1)}


def essence(all_views: dict[tuple[str, int], Any]) -> dict[tuple[str, int], Any]:
    """Views without ``synced_at`` (what a replay may legitimately refresh)."""
    return {
        key: {peer: (v.generation, v.value, v.pending_remote_generation) for peer, v in m.items()}
        for key, m in all_views.items()
    }


def refusals(cluster: Any, shards: dict[str, tuple[Any, Any]]) -> dict[str, int]:
    """Refusals so far, by node and reason: dropped unread or by a shard, or unreadable."""
    counts: dict[str, int] = {}
    for n, pair in shards.items():
        for reason, count in cluster.node(n).dropped_messages.items():
            if reason not in CORRECTIONS:
                counts[f"{n}:{reason}"] = count
        counts[f"{n}:sync_failures"] = sum(shard.metrics().sync_failures for shard in pair)
    return counts


def diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def converged(shards: dict[str, tuple[Any, Any]]) -> list[str]:
    """Views that do not show their owner's state."""
    off = []
    for owner, pair in shards.items():
        for i, shard in enumerate(pair):
            own = shard.state
            want = own.value if i == 0 else own.value.project_view()
            for n, other in shards.items():
                seen = other[i].snapshot().get(owner)
                if seen is None or seen.generation != own.generation or seen.value != want:
                    off.append(
                        f"{n} sees {owner}/{shard.name} at "
                        f"{None if seen is None else seen.generation}, "
                        f"owner at {own.generation}"
                    )
    return off


def fuzz_block(
    stats: NodeStats, block: int, frames: int, secret: bytes | None, feed: list[Captured]
) -> None:
    options: dict[str, Any] = {} if secret is None else {"cluster_secret": secret}
    with local_cluster(list(NODES), seed=block, **options) as cluster, escape_log() as log:
        own: list[Captured] = []
        spy_on(cluster, own)
        shards = register_states(cluster)
        cluster.run_until_idle()
        drive_traffic(cluster, shards)
        genuine = list(own)
        mutator = Mutator(genuine + feed, secret=secret)
        for k in range(frames):
            index = block * BLOCK + k
            frng = frame_rng(stats.seed, index)
            where = f"block {block} frame {index}"
            if k % LEGIT_EVERY == LEGIT_EVERY - 1:
                owner = frng.choice(NODES)
                shards[owner][0].mutate(TestState.increment())
                shards[owner][1].mutate_with_delta(TestDeltaState.bump(f"k{k % 3}"))
                cluster.run_until_idle()
            replay = secret is not None and frng.random() < REPLAY_SHARE
            if replay:
                sent = genuine[frng.randrange(len(genuine))]
                data, op, src, original = sent.data, "replay", sent.src, sent.data
            else:
                m = mutator.mutate(frng)
                data, op, src, original = m.data, m.op, m.source.src, m.source.data
            dst = frng.choice(NODES)
            before = views(cluster, shards)
            refused_before = refusals(cluster, shards)
            errors_before = len(log.records)
            try:
                cluster.inject(src, dst, data)
                cluster.run_until_idle()
            except Exception as exc:
                stats.fail(stats.escapes, f"{where} ({op}): {type(exc).__name__}: {exc!s:.200}")
                continue
            stats.frames += 1
            if len(log.records) > errors_before:
                stats.fail(stats.escapes, f"{where} ({op}): {log.records[-1]}")
            after = views(cluster, shards)
            refused_now = diff(refused_before, refusals(cluster, shards))
            refused = bool(refused_now)
            stats.refused += refused
            what = (
                f"{where} ({op}, {len(data)} bytes to {dst}, refusals {refused_now}, "
                f"bytes[:100]={data[:100].hex()})"
            )
            if replay:
                stats.replays += 1
                if essence(after) != essence(before):
                    stats.fail(stats.violations, f"a replayed genuine frame changed a view: {what}")
            elif after != before:
                if refused:
                    stats.fail(stats.violations, f"a refused frame changed a view: {what}")
                elif secret is not None:
                    stats.fail(stats.violations, f"a frame changed a view under a secret: {what}")
                else:
                    stats.accepted_changed += 1
            if secret is not None and not replay and not refused and data != original:
                stats.fail(stats.violations, f"a mutated frame was not refused: {what}")
        # a real mutation everywhere: with a secret every view must show it
        for pair in shards.values():
            pair[0].mutate(TestState.increment())
            pair[1].mutate_with_delta(TestDeltaState.bump("end"))
        cluster.run_until_idle()
        off = converged(shards)
        if secret is not None and off:
            stats.fail(stats.violations, f"block {block}: no convergence after the fuzz: {off}")
        stats.not_converged += len(off)


def run_node_fuzz(secret: bytes | None, seed: int, frames: int) -> NodeStats:
    stats = NodeStats(seed)
    feed = [c for c in capture_corpus(secret) if c.data]
    started = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    blocks = (frames + BLOCK - 1) // BLOCK
    for block in range(blocks):
        count = min(BLOCK, frames - block * BLOCK)
        if block < TRACED_BLOCKS:
            tracemalloc.start()
            try:
                fuzz_block(stats, block, count, secret, feed)
                stats.peak = max(stats.peak, tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        else:
            fuzz_block(stats, block, count, secret, feed)
    stats.rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    stats.seconds = time.perf_counter() - started
    return stats


def summary(label: str, stats: NodeStats) -> str:
    return (
        f"\n{label}: {stats.frames} frames in {stats.seconds:.1f}s, refused {stats.refused}, "
        f"accepted and changed a view {stats.accepted_changed}, replays {stats.replays}, "
        f"views off after the block {stats.not_converged}, traced peak "
        f"{stats.peak / 2**20:.1f} MiB, RSS growth {stats.rss_growth / 2**20:.1f} MiB"
    )


def check_memory(stats: NodeStats) -> None:
    assert 0 < stats.peak < MEMORY_BOUND, f"seed {stats.seed}: traced peak {stats.peak} bytes"
    assert stats.rss_growth < RSS_BOUND, f"seed {stats.seed}: RSS grew {stats.rss_growth} bytes"


def test_node_without_secret() -> None:
    stats = run_node_fuzz(None, SEED + 2, NODE_FRAMES)
    print(summary("node, no secret", stats))
    stats.check()
    check_memory(stats)
    assert stats.frames == NODE_FRAMES
    assert stats.refused > NODE_FRAMES // 2, f"seed {stats.seed}: {stats.refused} refused"


def test_node_with_secret() -> None:
    stats = run_node_fuzz(SECRET, SEED + 3, NODE_FRAMES)
    print(summary("node, cluster secret", stats))
    stats.check()
    check_memory(stats)
    assert stats.frames == NODE_FRAMES
    assert stats.refused >= NODE_FRAMES - stats.replays  # every mutated frame, some replays


# --- the harness can fail -------------------------------------------------------------


def test_harness_sees_escapes_and_changed_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """A router that raises is counted as an escape; a secret cluster whose codec accepted
    everything would show frames that are not refused and views that change."""
    from dstate_core.shell import _inbox

    route = _inbox.InboundRouter.route

    def leaky(self: Any, data: object, registered: Any) -> Any:
        if isinstance(data, bytes) and len(data) % 5 == 0:
            raise KeyError("leak")
        return route(self, data, registered)

    monkeypatch.setattr(_inbox.InboundRouter, "route", leaky)
    stats = NodeStats(11)
    fuzz_block(stats, 0, 200, None, [])
    assert stats.escapes
    with pytest.raises(AssertionError, match="seed 11: escapes"):
        stats.check()
    monkeypatch.setattr(_inbox.InboundRouter, "route", route)

    def no_tag(self: Any, data: object, registered: Any) -> Any:
        assert isinstance(data, bytes)
        return route(self, data[:-32] + hmac.digest(SECRET, data[:-32], "sha256"), registered)

    monkeypatch.setattr(_inbox.InboundRouter, "route", no_tag)
    stats = NodeStats(12)
    fuzz_block(stats, 0, 300, SECRET, [])
    assert any("not refused" in v or "changed a view" in v for v in stats.violations)
