"""dstate across node processes on Thespian, beside bare Thespian measured in the same run.

Run: ``python -m bench.thespian_processes``. Not a test.

Three node processes (``python -m dstate_thespian node``, nodes ``a``, ``b``,
``c`` on loopback, ``a`` leads the convention) host ``TestState`` under active
push and ``TestDeltaState`` on the change feed (``--feed-interval 0.1``). This
process drives them through their stdin/stdout control channel
(:class:`dstate_thespian.NodeHandle`). Every time comes from the nodes'
``time.monotonic()``, which is one system-wide clock on Linux.

* **Visibility latency.** ``b`` watches ``test_state``; ``a`` mutates it once
  at a time; a sample is the time of ``b``'s view callback for that
  generation minus the time ``mutate`` was called on ``a``. The path: ``a``'s
  node process -> its gateway actor -> ``b``'s gateway actor -> ``b``'s
  node process: three Thespian TCP hops.
* **Bare Thespian round trip** (the baseline): two multiprocTCPBase actor
  systems started by this process; an actor in one sends 128 bytes to an
  actor in the other, which sends them back; timed inside the first actor.
* **Replicated mutations/s.** ``a`` runs ``MUTATIONS`` mutations back to back
  (one ``mutate`` request with ``repeat``); ``b`` and ``c`` were told first
  to ``wait`` for the last generation (with the feed: querying every ms, so
  pending views are pulled). Rate = mutations / (last peer holding the last
  generation - first mutation). Baseline: bare Thespian one-way messages/s
  between the two actor systems above (128 bytes, one per ``send``, the
  receiver acknowledging every 32 so the sender never runs far ahead: sending
  thousands at once from one handler is slower in Thespian).
* **Crash detection**: a fourth node ``d`` is killed and restarted: its node
  process only (``kill -9``; its gateway notices and stops its actor system
  cleanly), or its node process and actor system together (a host crash;
  the convention notices from missed registrations). A sample is the time
  until both ``a`` and ``b`` report ``left``. Default convention timing.
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from thespian.actors import Actor  # type: ignore[import-untyped]
from thespian.system.transport import TCPTransport  # type: ignore[import-untyped]

from bench._nodes import visibility
from bench._report import (
    Table,
    Tick,
    fmt_rate,
    fmt_seconds,
    no_tick,
    print_tables,
    ratio,
    wait_until,
)
from dstate_core.process import free_port
from dstate_thespian import NodeHandle
from dstate_thespian._thespian import failure_detection_bound, start_system

__all__ = ["STEPS", "main", "tables"]

STATES = ("dstate_core.testing:TestState@push", "dstate_core.testing:TestDeltaState@feed")
PUSH, FEED = "test_state", "test_delta_state"
FEED_INTERVAL = "0.1"
PAYLOAD = b"x" * 128
BARE_ROUNDS = 3
BARE_SAMPLES = 1000
BARE_FLOOD = 3000
#: The bare flood's flow control: the receiver acknowledges every WINDOW messages.
WINDOW = 32
WARMUP = 30
LATENCY_SAMPLES = 300
ROUNDS = 3
MUTATIONS = 2000
CRASH_SAMPLES = 2
#: How long any one step may take before the benchmark gives up.
DEADLINE = 120.0

STEPS = BARE_ROUNDS + 1 + 2 * ROUNDS + 2 * CRASH_SAMPLES


# -- bare Thespian ---------------------------------------------------------------------------


class _Echo(Actor):  # type: ignore[misc]
    """Sends bytes back; after ``("expect", n, to)`` counts n bytes messages instead, sends
    ``"credit"`` to their sender every :data:`WINDOW` of them and ``"done"`` to ``to`` at n."""

    def __init__(self) -> None:
        super().__init__()
        self._expect = 0
        self._seen = 0
        self._client: Any = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 (Thespian's name)
        if isinstance(msg, tuple) and msg[0] == "expect":
            self._expect, self._seen, self._client = msg[1], 0, msg[2]
        elif isinstance(msg, bytes) and self._expect:
            self._seen += 1
            if self._seen == self._expect:
                self._expect = 0
                self.send(self._client, "done")
            elif self._seen % WINDOW == 0:
                self.send(sender, "credit")
        elif isinstance(msg, bytes):
            self.send(sender, msg)


class _Pinger(Actor):  # type: ignore[misc]
    """``("ping", echo, n)``: n round trips; replies the seconds each took.

    ``("flood", echo, n)``: n one-way messages, at most ``2 * WINDOW`` unacknowledged;
    replies the seconds until the echo had them all.
    """

    def __init__(self) -> None:
        super().__init__()
        self._client: Any = None
        self._echo: Any = None
        self._left = 0
        self._sent_at = 0.0
        self._samples: list[float] = []

    def _burst(self, count: int) -> None:
        for _ in range(min(count, self._left)):
            self.send(self._echo, PAYLOAD)
            self._left -= 1

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 (Thespian's name)
        if isinstance(msg, tuple) and msg[0] == "ping":
            self._client, self._echo, self._left, self._samples = sender, msg[1], msg[2], []
            self._sent_at = time.perf_counter()
            self.send(self._echo, PAYLOAD)
        elif isinstance(msg, tuple) and msg[0] == "flood":
            self._client, self._echo, self._left = sender, msg[1], msg[2]
            self.send(self._echo, ("expect", msg[2], self.myAddress))
            self._sent_at = time.perf_counter()
            self._burst(2 * WINDOW)
        elif msg == "credit":
            self._burst(WINDOW)
        elif msg == "done":
            self.send(self._client, time.perf_counter() - self._sent_at)
        elif isinstance(msg, bytes):
            self._samples.append(time.perf_counter() - self._sent_at)
            self._left -= 1
            if self._left > 0:
                self._sent_at = time.perf_counter()
                self.send(self._echo, PAYLOAD)
            else:
                self.send(self._client, self._samples)


@dataclass
class Bare:
    """Bare Thespian figures: round-trip samples and one-way messages/s."""

    round_trips: list[float] = field(default_factory=list)
    messages_per_s: list[float] = field(default_factory=list)


def measure_bare(tick: Tick) -> Bare:
    """Round trips and a one-way flood between actors in two multiprocTCPBase systems."""
    bare = Bare()
    # Bare Thespian as shipped: plain pickle on its ports (dstate's restricted unpickler
    # would refuse to create these benchmark actors). The forked admins inherit it.
    restricted = TCPTransport.serializer
    TCPTransport.serializer = pickle
    try:
        systems = [start_system("multiprocTCPBase", {"Admin Port": free_port()}) for _ in range(2)]
    finally:
        TCPTransport.serializer = restricted
    try:
        echo = systems[1].createActor(_Echo)
        pinger = systems[0].createActor(_Pinger)
        systems[0].ask(pinger, ("ping", echo, WARMUP), DEADLINE)
        for i in range(BARE_ROUNDS):
            samples = systems[0].ask(pinger, ("ping", echo, BARE_SAMPLES), DEADLINE)
            if not isinstance(samples, list) or len(samples) != BARE_SAMPLES:
                raise RuntimeError(f"the bare round trips did not complete: {samples!r}")
            bare.round_trips += samples
            seconds = systems[0].ask(pinger, ("flood", echo, BARE_FLOOD), DEADLINE)
            if not isinstance(seconds, float):
                raise RuntimeError(f"the bare flood did not complete: {seconds!r}")
            bare.messages_per_s.append(BARE_FLOOD / seconds)
            tick(f"bare Thespian round {i + 1}")
    finally:
        for system in systems:
            system.shutdown()
    return bare


# -- dstate node processes -----------------------------------------------------------------


@contextmanager
def node_processes(ids: tuple[str, ...]) -> Iterator[dict[str, NodeHandle]]:
    """Start node processes (the first leads) and wait until every view map is full."""
    ports = {node_id: free_port() for node_id in ids}
    leader = ports[ids[0]]
    with ExitStack() as stack:
        nodes: dict[str, NodeHandle] = {}
        for node_id in ids:
            handle = NodeHandle.start(
                node_id,
                ports[node_id],
                states=STATES,
                convention=leader,
                options=("--feed-interval", FEED_INTERVAL),
            )
            stack.callback(handle.close)
            nodes[node_id] = handle
            if node_id == ids[0]:
                handle.ready()
        for handle in nodes.values():
            handle.ready()
        _wait(lambda: all(_full(h, ids) for h in nodes.values()), "the join exchange")
        yield nodes


def _full(handle: NodeHandle, ids: tuple[str, ...]) -> bool:
    views = handle.request("views", state=PUSH)["views"]
    return sorted(views) == sorted(ids)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    wait_until(predicate, what, timeout, 0.01)


@dataclass
class Burst:
    """One burst of mutations on ``a``: rates and messages sent per mutation."""

    replicated_per_s: float
    calls_per_s: float
    messages_per_mutation: float


def measure_burst(nodes: dict[str, NodeHandle], state: str) -> Burst:
    """``MUTATIONS`` mutations on ``a``, timed until ``b`` and ``c`` hold the last one."""
    a = nodes["a"]
    before = a.request("status")
    target = before["states"][state]["generation"][1] + MUTATIONS
    pull = state == FEED
    waits = {
        peer: nodes[peer].send("wait", state=state, node="a", age=target, timeout=60, pull=pull)
        for peer in ("b", "c")
    }
    if state == PUSH:
        reply = a.request(
            "mutate",
            reply_timeout=DEADLINE,
            state=state,
            fn="increment",
            args=[1],
            repeat=MUTATIONS,
        )
    else:
        reply = a.request(
            "mutate",
            reply_timeout=DEADLINE,
            state=state,
            fn="bump",
            args=["k", 1],
            repeat=MUTATIONS,
        )
    seen = [nodes[peer].reply(rid, reply_timeout=DEADLINE)["t"] for peer, rid in waits.items()]
    sent = a.request("status")["messages_sent"] - before["messages_sent"]
    return Burst(
        MUTATIONS / (max(seen) - reply["t0"]),
        MUTATIONS / (reply["t"] - reply["t0"]),
        sent / MUTATIONS,
    )


def measure_crashes(nodes: dict[str, NodeHandle], tick: Tick) -> dict[str, list[float]]:
    """Seconds until ``a`` and ``b`` see ``d`` leave, per way of killing it."""
    leader = nodes["a"].admin_port
    port = free_port()
    found: dict[str, list[float]] = {"process": [], "host": []}
    for how in ("process", "host"):
        for i in range(CRASH_SAMPLES):
            with NodeHandle.start("d", port, states=STATES, convention=leader) as d:
                d.ready()
                _wait(lambda: all(_has(nodes[n], "d") for n in ("a", "b")), "d joining")
                at = d.kill() if how == "process" else d.kill_all()
                seen = []
                for n in ("a", "b"):
                    event = nodes[n].wait_event(
                        lambda e, at=at: (
                            e.get("event") == "left" and e["node"] == "d" and e["t"] >= at
                        ),
                        DEADLINE,
                    )
                    if event is None:
                        raise RuntimeError(f"{n} never saw d leave")
                    seen.append(event["t"])
                found[how].append(max(seen) - at)
            tick(f"crash detection, {how} {i + 1}")
    return found


def _has(handle: NodeHandle, node: str) -> bool:
    return node in handle.request("views", state=PUSH)["views"]


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- tables -----------------------------------------------------------------------------------


def tables(tick: Tick = no_tick) -> list[Table]:
    """Run every measurement; return the latency, throughput and crash-detection tables."""
    bare = measure_bare(tick)
    with node_processes(("a", "b", "c")) as nodes:
        latencies = visibility(nodes["a"], nodes["b"], PUSH, WARMUP, LATENCY_SAMPLES, DEADLINE)
        tick("visibility latency")
        push: list[Burst] = []
        feed: list[Burst] = []
        for i in range(ROUNDS):
            push.append(measure_burst(nodes, PUSH))
            tick(f"active push burst {i + 1}")
            feed.append(measure_burst(nodes, FEED))
            tick(f"change feed burst {i + 1}")
        crashes = measure_crashes(nodes, tick)

    rtt = statistics.median(bare.round_trips)
    latency = Table(
        "Cross-process visibility latency vs a bare Thespian round trip",
        f"Three node processes on 127.0.0.1 (`python -m dstate_thespian node`), `TestState` "
        f"under active push. A sample: `b`'s view callback time minus the time `mutate` "
        f"was called on `a`, one mutation at a time, {LATENCY_SAMPLES} samples after "
        f"{WARMUP} warm-up. Baseline, same run: a bare Thespian actor-to-actor round trip "
        f"of {len(PAYLOAD)} bytes between two multiprocTCPBase actor systems, "
        f"{BARE_ROUNDS} x {BARE_SAMPLES} samples.",
        ["path", "p50", "p99", "p50 vs bare round trip"],
    )
    latency.add(
        "bare Thespian actor <-> actor round trip (baseline)",
        fmt_seconds(rtt),
        fmt_seconds(_pct(bare.round_trips, 99)),
        ratio(rtt, rtt),
    )
    p50 = statistics.median(latencies)
    latency.add(
        "dstate: `mutate` on `a` -> view on `b` (one way, 3 Thespian hops)",
        fmt_seconds(p50),
        fmt_seconds(_pct(latencies, 99)),
        ratio(p50, rtt),
    )
    latency.notes.append(
        "A dstate update crosses three Thespian hops (node process -> its gateway -> the "
        "peer's gateway -> the peer's node process), a round trip two; each hop pickles, "
        "writes to a TCP socket and wakes a process."
    )

    flood = statistics.median(bare.messages_per_s)
    throughput = Table(
        "Replicated mutations/s across 3 node processes",
        f"`a` runs {MUTATIONS:,} mutations back to back; `b` and `c` wait for the last "
        "generation (on the change feed by querying every ms, which pulls pending views). "
        f"Median of {ROUNDS} bursts per strategy, `--feed-interval {FEED_INTERVAL}`. Messages "
        "per mutation are what `a` sent (pushes, feed batches, pull replies). Baseline, same "
        f"run: bare Thespian one-way messages/s between two actor systems ({len(PAYLOAD)} "
        f"bytes, one per `send`, the receiver acknowledging every {WINDOW}).",
        ["strategy", "how", "mutations/s", "messages sent per mutation", "vs bare messages/s"],
    )
    throughput.add(
        "bare Thespian (baseline)",
        "one-way actor -> actor messages/s",
        fmt_rate(flood),
        "1",
        ratio(flood, flood),
    )
    for name, bursts, how in (
        ("active push", push, "`TestState`, both peers hold the last generation"),
        ("change feed", feed, "`TestDeltaState`, both peers pulled the last generation"),
    ):
        rate = statistics.median(b.replicated_per_s for b in bursts)
        throughput.add(
            name,
            how,
            fmt_rate(rate),
            f"{statistics.median(b.messages_per_mutation for b in bursts):.3g}",
            ratio(rate, flood),
        )
        calls = statistics.median(b.calls_per_s for b in bursts)
        throughput.add(
            name,
            "`mutate` calls/s on `a` (local commit)",
            fmt_rate(calls),
            "-",
            ratio(calls, flood),
        )

    throughput.notes.append(
        "dstate beats one Thespian message per update because a node's link sends what "
        "queued meanwhile as one Thespian message (up to 256 parcels), and its gateway "
        "forwards a batch per peer."
    )

    bound = failure_detection_bound()
    detection = Table(
        "Crash detection across node processes",
        f"A fourth node `d` joins, is killed, and is started again, {CRASH_SAMPLES} times per "
        "row; a sample is the time until both `a` and `b` report `left`. Baseline: the "
        f"detection bound of dstate's default convention timing ({bound:g} s, "
        "`failure_detection_bound()`).",
        ["how `d` died", "median", "max", "median vs bound"],
    )
    for how, label in (
        ("process", "`kill -9` of the node process (its gateway stops its actor system)"),
        ("host", "`kill -9` of the node process and its actor system (a host crash)"),
    ):
        samples = crashes[how]
        detection.add(
            label,
            fmt_seconds(statistics.median(samples)),
            fmt_seconds(max(samples)),
            ratio(statistics.median(samples), bound),
        )
    return [latency, throughput, detection]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
