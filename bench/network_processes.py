"""dstate node processes over the network (Pykka on ``TcpNetwork``), beside bare pyzmq.

Run: ``python -m bench.network_processes``. Not a test.

Node processes are ``python -m dstate_pykka node`` on 127.0.0.1 with a cluster
secret (CURVE on), driven through their control channel
(:class:`dstate_pykka.PykkaNodeHandle`). Times are the processes' own
``time.monotonic()``, one system-wide clock on Linux.

* **Visibility latency**, 2 node processes: ``b`` watches ``test_state``; ``a``
  mutates once at a time; a sample is ``b``'s view event time minus the time
  ``mutate`` was called on ``a``. Baseline: a bare pyzmq CURVE message from this
  process to a child process (DEALER -> ROUTER), one way, 128 bytes.
* **Under load**: the same two, with one CPU-bound Python thread in each node
  process (a busy actor), against the bare message with a busy thread on both
  ends.
* **Replicated mutations/s**, 3 node processes: ``a`` runs ``MUTATIONS``
  mutations back to back; rate until ``b`` and ``c`` hold the last. Baseline:
  PySyncObj (Raft) on 3 processes replicating a counter, async increments on
  the leader until all three hold the count.
* **Join**: 10 node processes (9 seeded with the first); the time from the
  last ``ready`` until every node has seen every other join.
* **Crash detection**: a 4th node is killed (``kill -9``); the time until
  ``a`` and ``b`` report it left, against ``failure_timeout``.
* **Memory**: resident set size of each node process.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import zmq

from bench._nodes import visibility
from bench._report import (
    Table,
    Tick,
    fmt_bytes,
    fmt_rate,
    fmt_seconds,
    no_tick,
    print_tables,
    ratio,
    wait_until,
)
from dstate_core.net import curve_keys
from dstate_core.process import free_port
from dstate_pykka import PykkaNodeHandle

__all__ = ["STEPS", "main", "tables"]

PUSH = "test_state"
STATE = "dstate_core.testing:TestState@push"
BUSY = "bench._busy:BusyState@push"
WARMUP = 30
SAMPLES = 300
MUTATIONS = 2000
ROUNDS = 3
JOINERS = 10
CRASHES = 3
DEADLINE = 120.0
FAILURE_TIMEOUT = 1.0

STEPS = 2 + 2 + ROUNDS + 1 + 1 + CRASHES


# -- helpers ----------------------------------------------------------------------------------


def _wait(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    wait_until(predicate, what, timeout, 0.01)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@contextmanager
def _secret_file() -> Iterator[tuple[Path, bytes]]:
    secret = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "secret"
        path.write_bytes(secret)
        path.chmod(0o600)
        yield path, secret


@contextmanager
def _nodes(
    ids: tuple[str, ...], secret: Path, states: tuple[str, ...] = (STATE,)
) -> Iterator[dict[str, PykkaNodeHandle]]:
    """Start node processes (the first is every other's seed); wait until all joined."""
    with ExitStack() as stack:
        nodes: dict[str, PykkaNodeHandle] = {}
        seed: list[str] = []
        for node_id in ids:
            handle = PykkaNodeHandle.start(
                node_id,
                states=states,
                seeds=seed,
                secret_file=secret,
                options=("--failure-timeout", str(FAILURE_TIMEOUT)),
            )
            stack.callback(handle.close)
            nodes[node_id] = handle
            if not seed:
                seed = [handle.address]
        state = states[0].split(":")[1].split("@")[0]
        name = "busy_state" if state == "BusyState" else PUSH
        for handle in nodes.values():
            handle.ready()
        _wait(
            lambda: all(
                sorted(h.request("views", state=name)["views"]) == sorted(ids)
                for h in nodes.values()
            ),
            "the join exchange",
        )
        yield nodes


# -- bare pyzmq -------------------------------------------------------------------------------


def bare_one_way(secret: bytes, busy: bool) -> list[float]:
    """One-way latencies of bare pyzmq CURVE messages from this process to a child."""
    keys = curve_keys(secret)
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        count = WARMUP + SAMPLES
        args = [sys.executable, "-m", "bench._peers", "zmq", str(port_file), str(count)]
        env = {**os.environ, "DSTATE_BENCH_SECRET": secret.hex()}
        child = subprocess.Popen(
            [*args, *(["--busy"] if busy else [])], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            _wait(lambda: port_file.exists() and port_file.read_text() != "", "the bare peer")
            ctx = zmq.Context()
            dealer = ctx.socket(zmq.DEALER)
            dealer.curve_serverkey = keys.public
            dealer.curve_publickey = keys.public
            dealer.curve_secretkey = keys.secret
            dealer.connect(f"tcp://127.0.0.1:{port_file.read_text()}")
            stop = _busy_here() if busy else None
            for _ in range(count):
                dealer.send(struct.pack("d", time.monotonic()) + b"x" * 120)
                time.sleep(0.002)
            if stop is not None:
                stop()
            out, _ = child.communicate(timeout=DEADLINE)
            dealer.close(0)
            ctx.term()
        finally:
            child.kill()
    samples: list[float] = json.loads(out)["samples"]
    return samples[WARMUP:]


def _busy_here() -> Callable[[], None]:
    import threading

    done = threading.Event()

    def spin() -> None:
        n = 0
        while not done.is_set():
            n = (n + 1) % 1_000_003

    threading.Thread(target=spin, daemon=True).start()
    return done.set


# -- dstate -----------------------------------------------------------------------------------


def burst(nodes: dict[str, PykkaNodeHandle]) -> float:
    """Replicated mutations/s: ``MUTATIONS`` on ``a`` until ``b`` and ``c`` hold the last."""
    a = nodes["a"]
    target = a.request("status")["states"][PUSH]["generation"][1] + MUTATIONS
    waits = {
        peer: nodes[peer].send("wait", state=PUSH, node="a", age=target, timeout=60)
        for peer in ("b", "c")
    }
    reply = a.request(
        "mutate", reply_timeout=DEADLINE, state=PUSH, fn="increment", args=[1], repeat=MUTATIONS
    )
    seen = [nodes[peer].reply(rid, reply_timeout=DEADLINE)["t"] for peer, rid in waits.items()]
    return MUTATIONS / (max(seen) - reply["t0"])


def raft_burst() -> float:
    """PySyncObj on 3 processes: async increments on the leader until all hold the count."""
    ports = [free_port() for _ in range(3)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._peers",
                "raft",
                str(port),
                ",".join(str(p) for p in ports if p != port),
                str(MUTATIONS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    try:
        results = [json.loads(c.communicate(timeout=DEADLINE)[0]) for c in children]
    finally:
        for child in children:
            child.kill()
    t0 = next(r["t0"] for r in results if "t0" in r)
    return MUTATIONS / (max(r["t"] for r in results) - t0)


def join_time(secret: Path) -> float:
    """Seconds from the last of ``JOINERS`` processes' ``ready`` until all know each other."""
    ids = tuple(f"n{i}" for i in range(JOINERS))
    with ExitStack() as stack:
        nodes = []
        seed: list[str] = []
        for node_id in ids:
            handle = PykkaNodeHandle.start(node_id, states=(STATE,), seeds=seed, secret_file=secret)
            stack.callback(handle.close)
            nodes.append(handle)
            if not seed:
                seed = [handle.address]
        last_ready = max(h.ready()["t"] for h in nodes)

        def everyone(h: PykkaNodeHandle) -> float | None:
            seen = {e["node"]: e["t"] for e in h.events if e.get("event") == "joined"}
            others = set(ids) - {h.node_id}
            return max(seen[n] for n in others) if others <= set(seen) else None

        _wait(lambda: all(everyone(h) is not None for h in nodes), "10 processes joining", 30)
        return max(t for h in nodes if (t := everyone(h)) is not None) - last_ready


def crash_detection(nodes: dict[str, PykkaNodeHandle], secret: Path) -> float:
    """Seconds from ``kill -9`` of a 4th node until ``a`` and ``b`` report it left."""
    seed = nodes["a"].address
    with PykkaNodeHandle.start(
        "d",
        states=(STATE,),
        seeds=[seed],
        secret_file=secret,
        options=("--failure-timeout", str(FAILURE_TIMEOUT)),
    ) as d:
        d.ready()
        _wait(lambda: all("d" in nodes[n].request("status")["peers"] for n in ("a", "b")), "d")
        at = d.kill()
        seen = []
        for n in ("a", "b"):
            event = nodes[n].wait_event(
                lambda e, at=at: e.get("event") == "left" and e["node"] == "d" and e["t"] >= at,
                DEADLINE,
            )
            if event is None:
                raise RuntimeError(f"{n} never saw d leave")
            seen.append(event["t"])
    return max(seen) - at


def rss(pid: int) -> int:
    """Resident bytes of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# -- tables -----------------------------------------------------------------------------------


def tables(tick: Tick = no_tick) -> list[Table]:
    """Run every measurement; return the latency, throughput, join, crash and memory tables."""
    with _secret_file() as (secret_path, secret):
        bare = bare_one_way(secret, busy=False)
        tick("bare pyzmq one way")
        bare_busy = bare_one_way(secret, busy=True)
        tick("bare pyzmq one way, busy")
        with _nodes(("a", "b"), secret_path) as pair:
            seen = visibility(pair["a"], pair["b"], PUSH, WARMUP, SAMPLES, DEADLINE)
        tick("visibility latency")
        with _nodes(("a", "b"), secret_path, (BUSY,)) as pair:
            seen_busy = visibility(pair["a"], pair["b"], "busy_state", WARMUP, SAMPLES, DEADLINE)
        tick("visibility latency, busy")
        with _nodes(("a", "b", "c"), secret_path) as trio:
            rates = []
            for i in range(ROUNDS):
                rates.append(burst(trio))
                tick(f"replicated burst {i + 1}")
            memory = [rss(h.pid) for h in trio.values()]
            crashes = []
            for i in range(CRASHES):
                crashes.append(crash_detection(trio, secret_path))
                tick(f"crash detection {i + 1}")
        raft = raft_burst()
        tick("PySyncObj on 3 processes")
        joined = join_time(secret_path)
        tick("10 processes joining")

    latency = Table(
        "Cross-process visibility latency vs a bare pyzmq CURVE message",
        f"Two node processes on 127.0.0.1 (`python -m dstate_pykka node`, a cluster secret: "
        f"CURVE on), `TestState` under active push; a sample is `b`'s view event time minus "
        f"the time `mutate` was called on `a`, {SAMPLES} samples after {WARMUP} warm-up. "
        "Baseline, same run: a bare pyzmq DEALER -> ROUTER message with CURVE, 128 bytes, "
        "from this process to a child process, one way. Under load: one CPU-bound Python "
        "thread in each node process (and in both bare processes).",
        ["path", "load", "p50", "p99", "p50 vs bare"],
    )
    for load, base, ours in (("idle", bare, seen), ("busy thread", bare_busy, seen_busy)):
        b50 = statistics.median(base)
        latency.add(
            "bare pyzmq CURVE, one way (baseline)",
            load,
            fmt_seconds(b50),
            fmt_seconds(_pct(base, 99)),
            ratio(b50, b50),
        )
        d50 = statistics.median(ours)
        latency.add(
            "dstate: `mutate` on `a` -> view on `b`",
            load,
            fmt_seconds(d50),
            fmt_seconds(_pct(ours, 99)),
            ratio(d50, b50),
        )

    rate = statistics.median(rates)
    throughput = Table(
        "Replicated mutations/s across 3 node processes",
        f"`a` runs {MUTATIONS:,} mutations back to back (one `mutate` request with `repeat`); "
        f"timed until `b` and `c` hold the last generation; median of {ROUNDS} bursts. "
        "Baseline, same run: PySyncObj (Raft) on 3 processes, default configuration, "
        f"{MUTATIONS:,} async increments on the leader until all 3 hold the count. Raft "
        "commits through a leader on a majority; dstate has one writer per shard: a cost "
        "reference, not the same guarantee.",
        ["system", "mutations/s", "vs PySyncObj"],
    )
    throughput.add("PySyncObj, 3 processes (baseline)", fmt_rate(raft), ratio(raft, raft))
    throughput.add("dstate, 3 Pykka node processes, active push", fmt_rate(rate), ratio(rate, raft))

    membership = Table(
        "Membership: join, crash detection, memory",
        f"Join: {JOINERS} node processes started one after another, each seeded with the "
        "first; from the last one's `ready` until every node has reported every other "
        f"`joined` (goal: within 3 s). Crash: a 4th node is killed (`kill -9`) {CRASHES} "
        f"times; until `a` and `b` report it `left`, against `failure_timeout` "
        f"({FAILURE_TIMEOUT:g} s; the bound is that + 0.5 s). Memory: resident set of each "
        "of 3 node processes after the bursts.",
        ["figure", "value", "vs reference"],
    )
    membership.add(
        f"{JOINERS} processes all know each other",
        fmt_seconds(joined),
        ratio(joined, 3.0) + " of 3 s",
    )
    membership.add(
        "kill -9 detected, median",
        fmt_seconds(statistics.median(crashes)),
        ratio(statistics.median(crashes), FAILURE_TIMEOUT) + " of failure_timeout",
    )
    membership.add(
        "kill -9 detected, max",
        fmt_seconds(max(crashes)),
        ratio(max(crashes), FAILURE_TIMEOUT) + " of failure_timeout",
    )
    membership.add("RSS per node process, median", fmt_bytes(statistics.median(memory)), "-")
    return [latency, throughput, membership]


def main() -> None:
    print_tables(tables())


if __name__ == "__main__":
    main()
