"""Structure-aware fuzzing of the wire codec: decode returns a message or raises
WireDecodeError, nothing else, in bounded memory.

Default run: 120,000 mutated frames (60,000 without a cluster secret, each also
decoded by a codec with a 4 KiB cap, and 60,000 with one); DSTATE_SOAK=1 runs
ten times more. A failure names the seed, the frame index and the operator;
replay one frame with ``DSTATE_FUZZ_SEED=<seed> DSTATE_FUZZ_FRAME=<index>
pytest tests/fuzz -k replay``.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from dstate_core.wire import DecodeReason, WireCodec, WireDecodeError

from .frames import SECRET, SEED, SOAK, Captured, Mutated, Mutator, capture_corpus, frame_rng

FRAMES_PER_CODEC = 600_000 if SOAK else 60_000
#: tracemalloc slows decoding about five times: it watches the first frames of each batch
#: (oversized 4 MiB frames included); the peak RSS growth bounds the whole batch.
TRACED_FRAMES = 100_000 if SOAK else 8_000
#: Peak traced memory while the traced frames are built, decoded and dropped.
MEMORY_BOUND = 64 * 1024 * 1024
#: Growth of the process's peak RSS over a whole batch.
RSS_BOUND = 128 * 1024 * 1024
SMALL_CAP = 4096
#: Errors that may reach decode's last-resort handler (none: a value nested thousands deep
#: used to raise RecursionError in the error text, found by this fuzzer and fixed).
KNOWN_MASKED: set[str] = set()


@dataclass
class Stats:
    """What a batch of decodes did; ``escapes`` must stay empty."""

    seed: int
    frames: int = 0
    accepted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    refused_by_op: Counter[str] = field(default_factory=Counter)
    accepted_by_op: Counter[str] = field(default_factory=Counter)
    escapes: list[str] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)  # caught only by decode's last-resort net
    known_masked: Counter[str] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)  # accepted but not re-encodable, bad errors
    forged: list[str] = field(default_factory=list)  # an unsigned change accepted under a secret
    peak: int = 0
    rss_growth: int = 0
    seconds: float = 0.0

    def note(self, kind: list[str], index: int, m: Mutated, what: str) -> None:
        if len(kind) < 5:
            kind.append(
                f"frame {index} ({m.op} of a {len(m.source.data)}-byte frame): {what}; "
                f"bytes[:120]={m.data[:120].hex()}"
            )
        else:
            kind.append("...")

    def check(self) -> None:
        replay = f"replay: DSTATE_FUZZ_SEED={self.seed} DSTATE_FUZZ_FRAME=<n> pytest tests/fuzz"
        for name in ("escapes", "masked", "broken", "forged"):
            found: list[str] = getattr(self, name)
            assert not found, f"seed {self.seed}: {len(found)} {name}: {found[:5]}\n{replay}"


def decode_one(
    codec: WireCodec, index: int, m: Mutated, stats: Stats, decode: Callable[[bytes], Any]
) -> None:
    try:
        msg = decode(m.data)
    except WireDecodeError as exc:
        stats.reasons[exc.reason.value] += 1
        stats.refused_by_op[m.op] += 1
        if type(exc.__cause__).__name__ in KNOWN_MASKED:
            stats.known_masked[type(exc.__cause__).__name__] += 1
        elif exc.__cause__ is not None:
            stats.note(stats.masked, index, m, f"{type(exc.__cause__).__name__}: {exc.detail}")
        if not isinstance(exc.reason, DecodeReason) or len(exc.detail) > 400:
            stats.note(stats.broken, index, m, f"a bad error: {exc.reason!r} {exc.detail[:80]}")
        claimed = exc.claimed_source
        if claimed is not None and (type(claimed) is not str or not 0 < len(claimed) <= 256):
            stats.note(stats.broken, index, m, f"a bad claimed_source {claimed!r:.80}")
        return
    except Exception as exc:
        stats.note(stats.escapes, index, m, f"{type(exc).__name__}: {exc!s:.200}")
        return
    stats.accepted += 1
    stats.accepted_by_op[m.op] += 1
    if codec.authenticated and not m.signed and m.data != m.source.data:
        stats.note(stats.forged, index, m, f"accepted without a valid tag: {msg!r:.120}")
    try:
        again = codec.decode(codec.encode(msg))
    except Exception as exc:
        stats.note(stats.broken, index, m, f"accepted, but {type(exc).__name__}: {exc!s:.150}")
        return
    if again != msg:
        stats.note(stats.broken, index, m, f"does not round-trip: {msg!r:.120}")


def run_batch(
    mutator: Mutator,
    codecs: list[WireCodec],
    seed: int,
    frames: int,
    decode: Callable[[WireCodec, bytes], Any] | None = None,
    *,
    traced: int = 0,
) -> list[Stats]:
    """Mutate ``frames`` frames and decode each with every codec; one Stats per codec.

    The first ``traced`` frames run under tracemalloc (its peak goes in ``Stats.peak``).
    """
    all_stats = [Stats(seed) for _ in codecs]
    started = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = 0
    if traced:
        tracemalloc.start()
    try:
        for index in range(frames):
            if index == traced and traced:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            m = mutator.mutate(frame_rng(seed, index))
            for codec, stats in zip(codecs, all_stats, strict=True):
                stats.frames += 1
                fn = codec.decode if decode is None else (lambda d, c=codec: decode(c, d))
                decode_one(codec, index, m, stats, fn)
    finally:
        if tracemalloc.is_tracing():
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    elapsed = time.perf_counter() - started
    for stats in all_stats:
        stats.seconds, stats.peak, stats.rss_growth = elapsed, peak, rss_growth
    return all_stats


@pytest.fixture(scope="module")
def plain_corpus() -> list[Captured]:
    return capture_corpus()


@pytest.fixture(scope="module")
def signed_corpus() -> list[Captured]:
    return capture_corpus(SECRET)


def check_memory(stats: Stats) -> None:
    assert 0 < stats.peak < MEMORY_BOUND, f"seed {stats.seed}: traced peak {stats.peak} bytes"
    assert stats.rss_growth < RSS_BOUND, f"seed {stats.seed}: RSS grew {stats.rss_growth} bytes"


def summary(label: str, stats: Stats) -> str:
    return (
        f"\n{label}: {stats.frames} frames in {stats.seconds:.1f}s, traced peak "
        f"{stats.peak / 2**20:.1f} MiB, RSS growth {stats.rss_growth / 2**20:.1f} MiB, "
        f"accepted {stats.accepted}, refused {dict(stats.reasons)}, "
        f"known masked {dict(stats.known_masked)}"
    )


def check_coverage(stats: Stats, mutator: Mutator, reasons: set[str]) -> None:
    """The mutator is doing its job: every operator gets frames refused, some accepted."""
    where = f"seed {stats.seed}"
    missing = [op for op in mutator.names if stats.refused_by_op[op] == 0]
    assert not missing, f"{where}: operators that never produced a refused frame: {missing}"
    assert reasons <= set(stats.reasons), f"{where}: reasons seen {dict(stats.reasons)}"
    refused = stats.frames - stats.accepted
    assert refused > stats.frames // 2, f"{where}: only {refused} of {stats.frames} refused"
    assert stats.accepted > stats.frames // 100, f"{where}: only {stats.accepted} accepted"


def test_codec_without_secret(plain_corpus: list[Captured]) -> None:
    mutator = Mutator(plain_corpus)
    assert {type(WireCodec().decode(c.data)).__name__ for c in plain_corpus} == {
        "FullSnapshot",
        "DeltaUpdate",
        "DeltaRun",
        "RequestSnapshot",
        "SnapshotReply",
        "BatchedChangeFeed",
    }
    default, small = run_batch(
        mutator,
        [WireCodec(), WireCodec(max_message_bytes=SMALL_CAP)],
        SEED,
        FRAMES_PER_CODEC,
        traced=TRACED_FRAMES,
    )
    print(summary("codec, no secret (and a 4 KiB-cap codec)", default))
    default.check()
    small.check()
    check_memory(default)
    check_coverage(
        default, mutator, {"malformed", "oversized", "unknown_type", "unknown_protocol_version"}
    )
    assert small.reasons["oversized"] > default.reasons["oversized"]


def test_codec_with_secret(signed_corpus: list[Captured]) -> None:
    mutator = Mutator(signed_corpus, secret=SECRET, resign=0.6)
    codec = WireCodec(SECRET)
    assert all(codec.decode(c.data) for c in signed_corpus)
    (stats,) = run_batch(mutator, [codec], SEED + 1, FRAMES_PER_CODEC, traced=TRACED_FRAMES)
    print(summary("codec, cluster secret", stats))
    stats.check()
    check_memory(stats)
    check_coverage(
        stats,
        mutator,
        {"malformed", "oversized", "unknown_type", "unknown_protocol_version", "unauthenticated"},
    )


# --- the harness can fail -------------------------------------------------------------


def test_escape_counter_counts(plain_corpus: list[Captured]) -> None:
    """An exception other than WireDecodeError is counted and fails the batch, with its seed."""

    def leaky(codec: WireCodec, data: bytes) -> Any:
        if len(data) % 7 == 0:
            raise KeyError("leak")
        return codec.decode(data)

    (stats,) = run_batch(Mutator(plain_corpus), [WireCodec()], 5, 700, leaky)
    assert stats.escapes
    with pytest.raises(AssertionError, match=r"seed 5: \d+ escapes.*KeyError"):
        stats.check()


def test_unsigned_change_is_caught(signed_corpus: list[Captured]) -> None:
    """A codec that ignored the tag would be caught as accepting forged frames."""
    keyless = WireCodec()

    def no_tag_check(codec: WireCodec, data: bytes) -> Any:
        return keyless.decode(data[:-32])

    (stats,) = run_batch(
        Mutator(signed_corpus, secret=SECRET),
        [WireCodec(SECRET)],
        6,
        500,
        no_tag_check,
    )
    assert stats.forged
    with pytest.raises(AssertionError, match="forged"):
        stats.check()


def test_mutants_are_refused(plain_corpus: list[Captured]) -> None:
    """Every operator makes frames the codec refuses (so a lenient codec would show)."""
    mutator = Mutator(plain_corpus)
    (stats,) = run_batch(mutator, [WireCodec()], 7, 4000)
    stats.check()
    for op in mutator.names:
        assert stats.refused_by_op[op] > 0, op


def test_replay() -> None:
    """Replay one frame printed by a failure (DSTATE_FUZZ_SEED, DSTATE_FUZZ_FRAME)."""
    index = int(os.environ.get("DSTATE_FUZZ_FRAME", "0"))
    plain = Mutator(capture_corpus())
    signed = Mutator(capture_corpus(SECRET), secret=SECRET, resign=0.6)
    for mutator, codec, seed in ((plain, WireCodec(), SEED), (signed, WireCodec(SECRET), SEED + 1)):
        m = mutator.mutate(frame_rng(seed, index))
        stats = Stats(seed)
        decode_one(codec, index, m, stats, codec.decode)
        stats.check()
