"""What a node holds in memory, and what one update costs as the peer count grows.

Run: ``python -m bench.node_memory``. Not a test.

* **RSS**: in a fresh Python process, one node registers 10 states and
  receives a 1 KB snapshot of each from 100 peers (1,000 views). The
  process's resident set is read from ``/proc`` before the states are
  registered (the interpreter, the imports and the simulated cluster: the
  baseline) and once every view is held.
* **Publishing an update**: storing one peer's view in a shard's view table,
  at 3 and at 100 peers, beside a plain dict assignment. Publishing is O(1)
  (the first reader after a change copies the map, once), so the cost must
  not grow with the peer count.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import timeit
from typing import Any

PEERS = 100
STATES = 10
PAYLOAD_BYTES = 1024
REPEATS = 7

#: Runs in the child process; prints one JSON object.
_CHILD = f"""
import json, random

from dstate_core import DistributedState, Generation
from dstate_core.testing import local_cluster
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import FullSnapshot


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def blob_type(i: int) -> type[DistributedState]:
    fields = {{"NAME": f"blob{{i}}", "__annotations__": {{"data": str}}, "data": ""}}
    return type(f"Blob{{i}}", (DistributedState,), fields)


types = [blob_type(i) for i in range({STATES})]
peers = [f"p{{i:03d}}" for i in range({PEERS})]
rng = random.Random(7)
codec = WireCodec()
with local_cluster(["a", *peers]) as cluster:
    for peer in peers:
        cluster.node(peer).shutdown()  # a member without a node: only "a" holds anything
    cluster.run_until_idle()
    before = rss()
    node = cluster.node("a")
    shards = [node.register(kind) for kind in types]
    wall = cluster.clock.wall_ms()
    for kind in types:
        for peer in peers:
            value = kind(data="".join(rng.choice("abcdef0123") for _ in range({PAYLOAD_BYTES})))
            snapshot = FullSnapshot(
                kind.NAME, peer, Generation(wall, 1), kind.WIRE_VERSION,
                value.serialize_state(), wall, wall,
            )
            cluster.inject(peer, "a", codec.encode(snapshot))
        cluster.run_until_idle()
    held = sum(len(shard.snapshot()) - 1 for shard in shards)
    print(json.dumps({{"before": before, "after": rss(), "views": held}}))
"""


def measure_rss() -> dict[str, int]:
    """``before`` and ``after`` RSS in bytes, and the ``views`` the node held."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=300
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["views"] != PEERS * STATES:
        raise RuntimeError(f"the node holds {result['views']} views, not {PEERS * STATES}")
    return result


def measure_publish(peers: int, number: int = 200_000) -> dict[str, float]:
    """Median ns of storing one peer's view in a view table of ``peers`` peers, and of a
    plain dict assignment."""
    from dstate_core import Generation, StateViewObject
    from dstate_core.engine._views import ViewTable

    table = ViewTable("own")
    plain: dict[str, Any] = {}
    for i in range(peers + 1):
        node = "own" if i == peers else f"p{i:03d}"
        view = StateViewObject(Generation(1, 1), 1, i, 0, 0, 0.0, None, node)
        table.put(view)
        plain[node] = view
    table.snapshot()
    update = StateViewObject(Generation(1, 2), 1, -1, 0, 0, 1.0, None, "p000")

    def put() -> None:
        table.put(update)

    def assign() -> None:
        plain["p000"] = update

    def median(fn: Any) -> float:
        runs = timeit.repeat(fn, number=number, repeat=REPEATS)
        return statistics.median(runs) / number * 1e9

    return {"dict assignment (baseline)": median(assign), "view table update": median(put)}


#: Progress steps of :func:`tables`.
STEPS = 3


def tables(tick: Any) -> list[Any]:
    """The two measurements as result tables (``python -m bench``)."""
    from bench._report import Table, fmt_bytes, fmt_seconds, ratio

    memory = measure_rss()
    tick("node memory, 100 peers x 10 states")
    rss = Table(
        "Memory of a node holding 100 peers x 10 states of 1 KB",
        f"One node, in a fresh process, registers {STATES} states and receives a "
        f"{PAYLOAD_BYTES}-byte snapshot of each from {PEERS} peers ({PEERS * STATES} views). "
        "Resident set size from /proc. Baseline, same process: before the states are "
        "registered (the interpreter, the imports and the simulated 101-node cluster).",
        ["case", "RSS", "vs baseline"],
    )
    rss.add("before the states (baseline)", fmt_bytes(memory["before"]), "x1.00")
    rss.add(
        f"holding {memory['views']} views",
        fmt_bytes(memory["after"]),
        ratio(memory["after"], memory["before"]),
    )
    rss.notes.append(
        f"The views cost {fmt_bytes(memory['after'] - memory['before'])} for "
        f"{fmt_bytes(PEERS * STATES * PAYLOAD_BYTES)} of payload. Goal: RSS <= 50 MB."
    )
    publish = Table(
        "Publishing one peer's update",
        "Storing one peer's view in a shard's view table (what every received update does), "
        f"median of {REPEATS} timing runs. Baseline, same run: a plain dict assignment.",
        ["peers", "case", "median per call", "vs baseline"],
    )
    for peers in (3, PEERS):
        results = measure_publish(peers)
        base = results["dict assignment (baseline)"]
        for name, ns in results.items():
            publish.add(str(peers), name, fmt_seconds(ns * 1e-9), ratio(ns, base))
        tick(f"view table update, {peers} peers")
    publish.notes.append(
        "Publishing is O(1): the first reader after a change copies the map, once. The cost "
        "must not grow with the peer count."
    )
    return [rss, publish]


def main() -> None:
    memory = measure_rss()
    mb = 1024 * 1024
    print(
        f"RSS: {memory['before'] / mb:.1f} MB before, {memory['after'] / mb:.1f} MB holding "
        f"{memory['views']} views of {PAYLOAD_BYTES} bytes"
    )
    for peers in (3, PEERS):
        results = measure_publish(peers)
        base = results["dict assignment (baseline)"]
        for name, ns in results.items():
            print(f"{peers:>4} peers  {name:<28} {ns:8.1f} ns  x{ns / base:.2f}")


if __name__ == "__main__":
    main()
