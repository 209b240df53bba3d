"""Seeded corpus and structure-aware mutators for the fuzz tests (``tests/fuzz``).

The corpus is real traffic: every frame a deterministic 3-node cluster sends
(``FullSnapshot``, ``DeltaUpdate``, ``DeltaRun``, ``RequestSnapshot``, ``SnapshotReply``,
``BatchedChangeFeed``), captured at the simulated network, plus a few valid
edge-case frames encoded with :class:`~dstate_core.wire.WireCodec`.

A :class:`Mutator` turns one corpus frame into a hostile one with a named
operator: byte-level (flips, truncation, extension, splices, huge length
prefixes) or structure-level (the frame's msgpack map is decoded into
``(key, value)`` pairs, one is changed, dropped, duplicated or retyped, and the
map is re-encoded by hand, so duplicate keys, lying headers and deep nesting
are possible). Everything is driven by ``random.Random``: one seed and one
frame index give the same bytes again (:func:`frame_rng`).
"""

from __future__ import annotations

import hmac
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from dstate_core import StateConfig, SyncStrategy
from dstate_core.model._generation import Generation
from dstate_core.testing import TestDeltaState, TestState, local_cluster
from dstate_core.wire import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaRun,
    FullSnapshot,
    RequestSnapshot,
    SnapshotReply,
    WireCodec,
)

#: ``make soak`` sets DSTATE_SOAK=1: ten times more frames.
SOAK = os.environ.get("DSTATE_SOAK") == "1"
#: The base seed; a failure prints it (replay: DSTATE_FUZZ_SEED=<seed> pytest tests/fuzz).
SEED = int(os.environ.get("DSTATE_FUZZ_SEED", "20261203"))
SECRET = b"k" * 32
WRONG_SECRET = b"j" * 32
TAG = 32
NODES = ("a", "b", "c")


def frame_rng(seed: int, index: int) -> random.Random:
    """The generator of frame ``index`` under ``seed`` (each frame replays on its own)."""
    return random.Random((seed << 40) ^ index)


def sign(body: bytes, secret: bytes) -> bytes:
    return body + hmac.digest(secret, body, "sha256")


# --- corpus -------------------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One frame as it crossed the simulated network."""

    src: str
    dst: str
    data: bytes


def spy_on(cluster: Any, sink: list[Captured]) -> None:
    """Record every cross-node frame ``cluster`` sends into ``sink``."""
    net = cluster.network
    original = net._wire_send

    def spy(src: str, actor: Any, msg: bytes, slot: Any) -> None:
        sink.append(Captured(src, actor.node_id, msg))
        original(src, actor, msg, slot)

    net._wire_send = spy


def register_states(cluster: Any) -> dict[str, tuple[Any, Any]]:
    """TestState and TestDeltaState (StateConfig defaults) on every node."""
    return {
        n: (
            cluster.node(n).register(TestState, StateConfig()),
            cluster.node(n).register(TestDeltaState, StateConfig()),
        )
        for n in cluster.node_ids
    }


def drive_traffic(cluster: Any, shards: dict[str, tuple[Any, Any]], rounds: int = 2) -> None:
    """A few mutations of every shard, delivered, then a pipelined burst (a delta run)."""
    for i in range(rounds):
        for simple, delta in shards.values():
            simple.mutate(TestState.increment(i + 1))
            delta.mutate_with_delta(TestDeltaState.bump(f"k{i % 2}", i + 1))
        cluster.run_until_idle()
    for _, delta in shards.values():
        for i in range(3):
            delta.mutate_with_delta(TestDeltaState.bump(f"k{i}", i + 1), block=False)
    cluster.run_until_idle()


def capture_corpus(secret: bytes | None = None) -> list[Captured]:
    """Real frames from two deterministic clusters (push and change feed) plus edge cases."""
    frames: list[Captured] = []
    options: dict[str, Any] = {} if secret is None else {"cluster_secret": secret}
    with local_cluster(list(NODES), **options) as cluster:
        spy_on(cluster, frames)
        shards = register_states(cluster)
        cluster.run_until_idle()
        drive_traffic(cluster, shards)
    with local_cluster(list(NODES), **options) as cluster:
        spy_on(cluster, frames)
        config = StateConfig(sync_strategy=SyncStrategy.feed_lazy_pull())
        feed = {n: cluster.node(n).register(TestState, config) for n in cluster.node_ids}
        cluster.run_until_idle()
        for shard in feed.values():
            shard.mutate(TestState.increment())
        cluster.advance(1.5)
        feed["b"].query(lambda views: len(views), max_staleness=0.5)
        cluster.run_until_idle()
    codec = WireCodec(secret)
    gen = Generation(1_700_000_000_000, 3)
    payload = msgpack.packb({"value": 7, "label": "é" * 40, "items": {"x": 1}})
    edge = [
        FullSnapshot("test_state", "a", gen, 1, payload, 0, 2**64 - 1),
        FullSnapshot(
            "s" * 256,
            "\U0001f600" * 256,
            Generation(2**64 - 1, 2**64 - 1),
            2**64 - 1,
            b"\x00" * 2000,
            2**64 - 1,
            0,
        ),
        RequestSnapshot("test_delta_state", "c", 2**64 - 1),
        SnapshotReply(0, FullSnapshot("test_state", "b", gen, 1, payload, 1, 1)),
        BatchedChangeFeed(
            "a", tuple(ChangeNotification(f"st{i}", "a", Generation(i, i)) for i in range(40))
        ),
        BatchedChangeFeed("c", ()),
        DeltaRun(
            "test_delta_state",
            "b",
            Generation(2**64 - 1, 2**64 - 3),
            2**64 - 1,
            2**64 - 1,
            ((b"", 0), (payload, 2**64 - 1), (b"\xff" * 300, 1)),
        ),
    ]
    frames.extend(Captured("a", "b", codec.encode(m)) for m in edge)
    return frames


# --- raw msgpack building -------------------------------------------------------------


class Raw:
    """Bytes spliced into a hand-built map as they are (a value msgpack would not write)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def packed(obj: Any) -> bytes:
    """msgpack of ``obj``, with any :class:`Raw` inside it (in lists and maps) spliced in."""
    if isinstance(obj, Raw):
        return obj.data
    if type(obj) is list:
        return array_header(len(obj)) + b"".join(packed(item) for item in obj)
    if type(obj) is dict:
        return build_map(list(obj.items()))
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 2**16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 2**16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def build_map(pairs: list[tuple[Any, Any]], count: int | None = None) -> bytes:
    out = [map_header(len(pairs) if count is None else count)]
    for key, value in pairs:
        out.append(packed(key))
        out.append(packed(value))
    return b"".join(out)


def deep(rng: random.Random) -> Raw:
    depth = rng.choice([2, 10, 100, 500, 1000, 1100, 5000, 30000])
    kind = rng.randrange(3)
    if kind == 0:
        return Raw(b"\x91" * depth + b"\x01")
    if kind == 1:
        return Raw(b"\x81\xa1k" * depth + b"\xc0")
    return Raw(b"\x92\xc0" * depth + b"\x90")


HUGE_HEADERS = [
    b"\xdb\xff\xff\xff\xff",  # str32, 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xdd\xff\xff\xff\xff",  # array32
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xc9\xff\xff\xff\xff\x01",  # ext32
    b"\xda\xff\xff",  # str16
    b"\xc5\xff\xff",  # bin16
    b"\xdc\xff\xff",  # array16
    b"\xde\xff\xff",  # map16
    b"\xd9\xff",  # str8
    b"\xc4\xff",  # bin8
    b"\xc7\xff\x02",  # ext8
    b"\xdb\x7f\xff\xff\xff",
    b"\xc6\x00\x10\x00\x01",  # bin32 of 1 MiB + 1
]

INTERESTING_BYTES = [
    0x00,
    0x01,
    0x7F,
    0x80,
    0x8F,
    0x90,
    0x9F,
    0xA0,
    0xBF,
    0xC0,
    0xC1,
    0xC2,
    0xC3,
    0xC4,
    0xC7,
    0xCA,
    0xCB,
    0xCF,
    0xD3,
    0xD4,
    0xD8,
    0xD9,
    0xDC,
    0xDD,
    0xDE,
    0xDF,
    0xE0,
    0xFF,
]

GENERATIONS: list[Any] = [
    [-1, 0],
    [0, -1],
    [-(2**63), 5],
    [2**64 - 1, 2**64 - 1],
    [2**62, 5],
    [0, 0],
    [True, 1],
    [1, False],
    [1.0, 2],
    [1, 2.5],
    [None, 1],
    ["1", "2"],
    [b"\x01", 2],
    [1],
    [],
    [1, 2, 3],
    [[1], [2]],
    "1:2",
    None,
    7,
    {"i": 1, "a": 2},
    [float("nan"), 1],
    [1_700_000_000_000, 2**64 - 1],
    [1_699_999_999_999, 9],
]


def junk_value(rng: random.Random) -> Any:
    """A value of a random wrong (or borderline) type."""
    pool: list[Callable[[], Any]] = [
        lambda: None,
        lambda: True,
        lambda: False,
        lambda: -1,
        lambda: 0,
        lambda: 1,
        lambda: 2**63,
        lambda: 2**64 - 1,
        lambda: -(2**63),
        lambda: rng.randrange(-(2**63), 2**64),
        lambda: 1.5,
        lambda: float("nan"),
        lambda: float("-inf"),
        lambda: "",
        lambda: "x" * rng.choice([1, 255, 256, 257, 1024]),
        lambda: "\U0001f600" * rng.choice([256, 257]),
        lambda: b"",
        lambda: rng.randbytes(rng.randrange(0, 64)),
        lambda: [],
        lambda: [rng.randrange(100) for _ in range(rng.randrange(1, 5))],
        lambda: {},
        lambda: {"a": 1, "b": [1, 2]},
        lambda: Raw(b"\xc7\x00" + bytes([rng.randrange(256)])),  # an empty ext
        lambda: Raw(bytes([0xD6, 0xFF]) + b"\x00\x00\x00\x01"),  # timestamp ext
        lambda: Raw(b"\xa3\xff\xfe\xfd"),  # str that is not UTF-8
        lambda: Raw(b"\xc1"),  # never-used type byte
        lambda: Raw(rng.choice(HUGE_HEADERS)),
        lambda: deep(rng),
        lambda: GENERATIONS[rng.randrange(len(GENERATIONS))],
    ]
    return pool[rng.randrange(len(pool))]()


# --- the mutator ----------------------------------------------------------------------


@dataclass
class Mutated:
    """One hostile frame: which operator made it from which corpus frame."""

    op: str
    source: Captured
    data: bytes
    signed: bool = False  # re-signed with the real cluster secret


@dataclass
class Mutator:
    """Seeded hostile frames from a corpus (frames signed with ``secret`` when set).

    ``resign`` is the share of mutated bodies signed again with the real secret,
    so the parser behind the HMAC check is fuzzed too (0 for node tests, where a
    correctly signed frame is by definition a trusted one).
    """

    corpus: list[Captured]
    secret: bytes | None = None
    resign: float = 0.0
    ops: dict[str, Callable[[random.Random, bytes], bytes]] = field(init=False)

    def __post_init__(self) -> None:
        self.ops = {
            "bitflip": self._bitflip,
            "byteset": self._byteset,
            "truncate": self._truncate,
            "extend": self._extend,
            "insert_delete": self._insert_delete,
            "splice": self._splice,
            "huge_length": self._huge_length,
            "field_type": self._field_type,
            "generation": self._generation,
            "msg_type": self._msg_type,
            "protocol_version": self._protocol_version,
            "missing_key": self._missing_key,
            "extra_key": self._extra_key,
            "duplicate_key": self._duplicate_key,
            "lying_header": self._lying_header,
            "deep_nesting": self._deep_nesting,
            "huge_int": self._huge_int,
            "names": self._names,
            "payload": self._payload,
            "feed_items": self._feed_items,
            "not_a_map": self._not_a_map,
            "stacked": self._stacked,
        }
        self.names = list(self.ops)
        self.bodies = [self._body(c.data) for c in self.corpus]

    def _body(self, data: bytes) -> bytes:
        return data[:-TAG] if self.secret is not None else data

    def _other_body(self, rng: random.Random) -> bytes:
        return self.bodies[rng.randrange(len(self.bodies))]

    def mutate(self, rng: random.Random) -> Mutated:
        i = rng.randrange(len(self.corpus))
        source = self.corpus[i]
        op = self.names[rng.randrange(len(self.names))]
        body = self.ops[op](rng, self.bodies[i])
        if self.secret is None:
            return Mutated(op, source, body)
        if rng.random() < self.resign:
            return Mutated(op, source, sign(body, self.secret), signed=True)
        tag = source.data[-TAG:]
        choice = rng.randrange(5)
        if choice == 0:
            data = body + tag  # the original tag on a changed body
        elif choice == 1:
            data = body  # no tag at all
        elif choice == 2:
            data = sign(body, WRONG_SECRET)
        elif choice == 3:
            data = body + rng.randbytes(TAG)
        else:  # a bit of the tag itself
            flipped = bytearray(tag)
            flipped[rng.randrange(TAG)] ^= 1 << rng.randrange(8)
            data = body + bytes(flipped)
        return Mutated(op, source, data)

    # -- byte level --

    @staticmethod
    def _bitflip(rng: random.Random, body: bytes) -> bytes:
        out = bytearray(body)
        for _ in range(rng.choice([1, 1, 2, 3, 8])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)

    @staticmethod
    def _byteset(rng: random.Random, body: bytes) -> bytes:
        out = bytearray(body)
        for _ in range(rng.choice([1, 1, 2, 4])):
            out[rng.randrange(len(out))] = rng.choice(INTERESTING_BYTES)
        return bytes(out)

    @staticmethod
    def _truncate(rng: random.Random, body: bytes) -> bytes:
        return body[: rng.randrange(len(body))]

    def _extend(self, rng: random.Random, body: bytes) -> bytes:
        how = rng.randrange(5)
        if how == 0:
            return body + rng.randbytes(rng.randrange(1, 64))
        if how == 1:
            return body + body
        if how == 2:
            return body + b"\xc0"
        if how == 3:
            return body + self._other_body(rng)
        # over the default 4 MiB cap (rarely: it costs a large allocation)
        if rng.random() < 0.02:
            return body + b"\x00" * (4 * 1024 * 1024)
        return body + b"\x00" * rng.choice([4096, 70_000])

    @staticmethod
    def _insert_delete(rng: random.Random, body: bytes) -> bytes:
        at = rng.randrange(len(body))
        if rng.random() < 0.5:
            return body[:at] + rng.randbytes(rng.randrange(1, 8)) + body[at:]
        return body[:at] + body[at + rng.randrange(1, 8) :]

    def _splice(self, rng: random.Random, body: bytes) -> bytes:
        other = self._other_body(rng)
        return body[: rng.randrange(len(body))] + other[rng.randrange(len(other)) :]

    @staticmethod
    def _huge_length(rng: random.Random, body: bytes) -> bytes:
        at = rng.randrange(1, len(body))
        header = rng.choice(HUGE_HEADERS)
        if rng.random() < 0.5:
            return body[:at] + header + body[at:]
        return body[:at] + header + body[at + len(header) :]

    # -- structure level: the map as (key, value) pairs --

    @staticmethod
    def _pairs(body: bytes) -> list[tuple[Any, Any]]:
        return list(msgpack.unpackb(body, raw=False).items())

    def _with_field(self, rng: random.Random, body: bytes, fn: Callable[[Any, Any], Any]) -> bytes:
        pairs = self._pairs(body)
        i = rng.randrange(len(pairs))
        key, value = pairs[i]
        pairs[i] = (key, fn(key, value))
        return build_map(pairs)

    def _field_type(self, rng: random.Random, body: bytes) -> bytes:
        return self._with_field(rng, body, lambda k, v: junk_value(rng))

    def _generation(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        keys = [k for k, _ in pairs]
        if "g" not in keys:
            return self._feed_items(rng, body) if "f" in keys else self._field_type(rng, body)
        i = keys.index("g")
        inc, age = pairs[i][1]
        pick = rng.randrange(4)
        if pick == 0:
            gen: Any = GENERATIONS[rng.randrange(len(GENERATIONS))]
        elif pick == 1:
            gen = [inc, age + rng.choice([1, 2, 1000, -1])]
        elif pick == 2:
            gen = [inc + rng.choice([1, -1, 10**6, 2**40]), rng.choice([0, age, age + 1])]
        else:
            gen = [rng.randrange(2**64), rng.randrange(2**64)]
        if pick != 0:  # keep the arithmetic in msgpack's (and the wire's) range
            gen = [min(max(x, 0), 2**64 - 1) for x in gen]
        pairs[i] = ("g", gen)
        return build_map(pairs)

    def _msg_type(self, rng: random.Random, body: bytes) -> bytes:
        choices: list[Any] = [
            "full",
            "delta",
            "run",
            "pull",
            "reply",
            "feed",
            "FULL",
            "fulll",
            "",
            "x" * 300,
            "snapshot",
            1,
            None,
            b"full",
            ["full"],
        ]
        return self._set(body, "t", choices[rng.randrange(len(choices))])

    def _protocol_version(self, rng: random.Random, body: bytes) -> bytes:
        choices: list[Any] = [0, 2, 3, -1, 2**64 - 1, True, False, "1", 1.0, None, [1], b"\x01"]
        return self._set(body, "v", choices[rng.randrange(len(choices))])

    def _set(self, body: bytes, key: str, value: Any) -> bytes:
        pairs = [(k, value if k == key else v) for k, v in self._pairs(body)]
        return build_map(pairs)

    def _missing_key(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        del pairs[rng.randrange(len(pairs))]
        return build_map(pairs)

    def _extra_key(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        keys: list[Any] = [
            "x",
            "r",
            "g",
            "f",
            "p",
            "",
            "V",
            "é",
            Raw(b"\xc4\x01v"),
            Raw(b"\x01"),
            Raw(b"\xc0"),
            Raw(b"\x91\x01"),
            Raw(b"\xa2\xff\xfe"),
        ]
        for _ in range(rng.choice([1, 1, 2, 12])):
            pairs.insert(rng.randrange(len(pairs) + 1), (rng.choice(keys), junk_value(rng)))
        return build_map(pairs)

    def _duplicate_key(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        key, value = pairs[rng.randrange(len(pairs))]
        dup = (key, junk_value(rng) if rng.random() < 0.5 else value)
        pairs.insert(rng.randrange(len(pairs) + 1), dup)
        return build_map(pairs)

    def _lying_header(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        count = rng.choice([0, len(pairs) - 1, len(pairs) + 1, 16, 17, 2**16 - 1, 2**32 - 1])
        return build_map(pairs, count)

    def _deep_nesting(self, rng: random.Random, body: bytes) -> bytes:
        if rng.random() < 0.2:
            return deep(rng).data
        return self._with_field(rng, body, lambda k, v: deep(rng))

    def _huge_int(self, rng: random.Random, body: bytes) -> bytes:
        values = [2**64 - 1, 2**63, 2**63 - 1, -(2**63), -1, 2**32, 0]
        pairs = self._pairs(body)
        ints = [i for i, (_, v) in enumerate(pairs) if type(v) is int]
        i = rng.choice(ints) if ints else rng.randrange(len(pairs))
        pairs[i] = (pairs[i][0], rng.choice(values))
        return build_map(pairs)

    def _names(self, rng: random.Random, body: bytes) -> bytes:
        choices: list[Any] = [
            "",
            "a",
            "b",
            "c",
            "z",
            "test_state",
            "test_delta_state",
            "unknown_state",
            "n" * 256,
            "n" * 257,
            "\U0001f600" * 256,
            "\U0001f600" * 257,
            Raw(b"\xa2\xed\xa0"),
            "a\x00",
            " a",
        ]
        pairs = self._pairs(body)
        spots = [i for i, (k, _) in enumerate(pairs) if k in ("s", "n")]
        if not spots:
            return self._field_type(rng, body)
        i = rng.choice(spots)
        pairs[i] = (pairs[i][0], choices[rng.randrange(len(choices))])
        return build_map(pairs)

    def _payload(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        spots = [i for i, (k, _) in enumerate(pairs) if k == "p"]
        if not spots:
            return self._field_type(rng, body)
        i = spots[0]
        old = pairs[i][1]
        pick = rng.randrange(8)
        if pick == 0:
            new: Any = rng.randbytes(rng.randrange(0, 40))
        elif pick == 1:
            new = old[: rng.randrange(len(old) + 1)]
        elif pick == 2:
            new = self._bitflip(rng, old) if old else b"\xc1"
        elif pick == 3:
            if rng.random() < 0.5:
                new = packed(junk_value(rng))
            else:
                new = build_map([("value", junk_value(rng)), ("label", "x"), ("items", {})])
        elif pick == 4:
            new = msgpack.packb({"counters": {"k": 2**64 - 1}, "total": -(2**63)})
        elif pick == 5:
            new = msgpack.packb({"key": "k0", "value": rng.randrange(-5, 5), "total": "x"})
        elif pick == 6:  # another frame's payload (another state's format)
            other = msgpack.unpackb(self._other_body(rng), raw=False)
            new = other.get("p", b"") if type(other) is dict else b""
        else:
            new = old.decode("latin-1")  # str instead of bin
        pairs[i] = ("p", new)
        return build_map(pairs)

    def _feed_items(self, rng: random.Random, body: bytes) -> bytes:
        pairs = self._pairs(body)
        spots = [i for i, (k, _) in enumerate(pairs) if k == "f"]
        if not spots:
            return self._generation(rng, body) if any(k == "g" for k, _ in pairs) else body
        i = spots[0]
        items = list(pairs[i][1])
        pick = rng.randrange(6)
        if pick == 0 and items:
            j = rng.randrange(len(items))
            items[j] = junk_value(rng)
        elif pick == 1:  # a forged note for another node
            items.append(
                [
                    rng.choice(["test_state", "test_delta_state"]),
                    rng.choice(NODES),
                    [1_700_000_000_000, rng.randrange(0, 50)],
                ]
            )
        elif pick == 2 and items:
            j = rng.randrange(len(items))
            items[j] = [items[j][0], items[j][1], GENERATIONS[rng.randrange(len(GENERATIONS))]]
        elif pick == 3:
            items = items * rng.choice([2, 50, 500])
        elif pick == 4:
            items = [[1, 2], [None], "x", [b"s", b"n", [1, 1]]][: rng.randrange(1, 5)]
        else:
            items = Raw(b"\xdd\x00\x01\x00\x00")  # an array claiming 65,536 items
        pairs[i] = ("f", items)
        return build_map(pairs)

    @staticmethod
    def _not_a_map(rng: random.Random, body: bytes) -> bytes:
        values: list[Any] = [
            None,
            1,
            "full",
            b"x",
            [1, "full"],
            [],
            1.5,
            True,
            msgpack.unpackb(body, raw=False).items().__iter__().__next__(),
        ]
        return packed(values[rng.randrange(len(values))])

    def _stacked(self, rng: random.Random, body: bytes) -> bytes:
        """Two structure-level operators in a row, then maybe a byte-level one."""
        structural = [
            self._field_type,
            self._generation,
            self._missing_key,
            self._extra_key,
            self._duplicate_key,
            self._huge_int,
            self._names,
            self._payload,
        ]
        for op in rng.sample(structural, 2):
            try:
                body = op(rng, body)
            except Exception:  # the first operator left no readable map: keep its bytes
                break
        if rng.random() < 0.3:
            body = self._bitflip(rng, body)
        return body
