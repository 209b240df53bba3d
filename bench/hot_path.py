"""The hot path against the machinery under it: a mutation vs an ask, vs the codec.

Run: ``python -m bench.hot_path``. Not a test.

* **Blocking mutate vs a bare Pykka ask**: ``shard.mutate(increment)`` on a
  Pykka node (alone, and with two peers in the same process), against an ask
  to a Pykka echo actor in the same process and run: the floor of one
  blocking call through an actor.
* **Deterministic mutate + delivery vs the codec**: ``mutate`` plus
  ``run_until_idle`` on a 3-node deterministic cluster (both peers updated),
  against one encode and two decodes of the same state and frame (msgpack +
  pydantic, ``WireCodec``): the floor of sending one state to two peers.

Both run in a fresh Python process: a process that ran other benchmarks
first (their threads and their heap, which every garbage collection walks)
slows the ask and the mutation alike, and hides the ratio between them. The
blocking comparison runs twice: with the threads where the OS puts them, and
with the process pinned to one core, where a hand-off between two threads
costs least (on a VM, a wake-up across cores can cost 60 µs or more).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._report import Table, Tick, fmt_seconds, median_time, no_tick, print_tables, ratio

__all__ = ["STEPS", "main", "tables"]

REPEATS = 5
CALLS = 2000
#: Alternating rounds of asks and mutations (CALLS // 10 calls each).
ROUNDS = 21
STEPS = 5
PLACEMENTS = {False: "as the OS schedules", True: "pinned to one core"}


def blocking_mutate(nodes: int) -> tuple[float, float]:
    """(bare ask, blocking mutate) seconds per call, ``nodes`` Pykka nodes in one process."""
    import pykka

    from dstate_core import DStateNode
    from dstate_core.testing import TestState
    from dstate_pykka import PykkaNetwork, PykkaRuntime

    class Echo(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    network = PykkaNetwork()
    runtimes = [PykkaRuntime(node, network) for node in "abc"[:nodes]]
    dnodes = [DStateNode(runtime) for runtime in runtimes]
    shards = [node.register(TestState) for node in dnodes]
    echo = Echo.start()
    try:
        deadline = time.monotonic() + 10
        while any(len(s.snapshot()) < nodes for s in shards) and time.monotonic() < deadline:
            time.sleep(0.01)
        increment = TestState.increment(1)
        writer = shards[0]
        for _ in range(200):  # warm up both paths
            echo.ask(1)
            writer.mutate(increment)
        # On a VM the OS moves an ask's two threads between one core and two, which
        # changes a round trip up to sixfold (14 vs 85 us here). Alternating rounds, and
        # the fastest round of each: the cost when the threads are placed well.
        asks, mutates = [], []
        for _ in range(ROUNDS):
            asks.append(median_time(lambda: echo.ask(1), CALLS // 10, 1))
            mutates.append(median_time(lambda: writer.mutate(increment), CALLS // 10, 1))
        bare, mutate = min(asks), min(mutates)
    finally:
        echo.stop()
        for node in dnodes:
            node.shutdown()
        for runtime in runtimes:
            runtime.shutdown()
        network.close()
    return bare, mutate


def deterministic_mutate() -> tuple[float, float, float]:
    """Seconds per call: one encode + two decodes of the state (msgpack + pydantic), the
    same with ``WireCodec`` frames around it, and mutate + delivery to 2 peers."""
    from dstate_core import Generation
    from dstate_core.testing import TestState, local_cluster
    from dstate_core.wire._codec import WireCodec
    from dstate_core.wire._messages import FullSnapshot

    codec = WireCodec()
    state = TestState(value=7, label="bench", items={"a": 1, "b": 2})

    def state_floor() -> None:
        payload = state.serialize_state()
        for _ in range(2):
            TestState.deserialize_state(payload, 1)

    def framed_floor() -> None:
        frame = codec.encode(
            FullSnapshot("test_state", "a", Generation(1, 1), 1, state.serialize_state(), 0, 0)
        )
        for _ in range(2):
            message: Any = codec.decode(frame)
            TestState.deserialize_state(message.payload, message.wire_version)

    with local_cluster(["a", "b", "c"]) as cluster:
        shards = {node: cluster.node(node).register(TestState) for node in cluster.node_ids}
        cluster.run_until_idle()
        writer = shards["a"]
        writer.mutate(lambda s: s.items.update(a=1, b=2))
        cluster.run_until_idle()
        increment = TestState.increment(1)

        def replicate() -> None:
            writer.mutate(increment)
            cluster.run_until_idle()

        floor = median_time(state_floor, CALLS, REPEATS)
        framed = median_time(framed_floor, CALLS, REPEATS)
        mutate = median_time(replicate, CALLS // 4, REPEATS)
        if shards["c"].snapshot()["a"].generation != writer.state.generation:
            raise RuntimeError("the last mutation did not reach c")
    return floor, framed, mutate


def measure(pinned: bool) -> dict[str, float]:
    """Every figure, in seconds, measured in this process (pinned to one core: only the
    blocking comparison)."""
    if pinned:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    figures: dict[str, float] = {}
    for nodes in (1, 3):
        figures[f"ask_{nodes}"], figures[f"mutate_{nodes}"] = blocking_mutate(nodes)
    if not pinned:
        figures["codec"], figures["framed"], figures["replicate"] = deterministic_mutate()
    return figures


def _measure_in_a_fresh_process(pinned: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.hot_path", "--json", *(["--pinned"] if pinned else [])],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def tables(tick: Tick = no_tick) -> list[Table]:
    """Both comparisons as result tables."""
    logging.getLogger("dstate").setLevel(logging.WARNING)
    blocking = Table(
        "Blocking mutate vs a bare Pykka ask",
        f"`shard.mutate(increment)` on a Pykka node, in a fresh process: the fastest of "
        f"{ROUNDS} rounds of {CALLS // 10} calls. Baseline, same process, in rounds "
        "alternating with those: `ask` to a Pykka echo actor. Once with the threads where "
        "the OS puts them (a round trip between two cores of a VM costs several times one "
        "on a single core), once with the process pinned to one core. With peers, all "
        "3 nodes share the process (and its GIL): the peers decode and apply each update "
        "while the writer waits for its next turn.",
        [
            "threads",
            "nodes in the process",
            "bare ask (baseline)",
            "blocking mutate",
            "vs baseline",
        ],
    )
    figures: dict[str, float] = {}
    for pinned, placement in PLACEMENTS.items():
        found = _measure_in_a_fresh_process(pinned)
        figures.update({} if pinned else found)
        for nodes in (1, 3):
            bare, mutate = found[f"ask_{nodes}"], found[f"mutate_{nodes}"]
            blocking.add(
                placement, str(nodes), fmt_seconds(bare), fmt_seconds(mutate), ratio(mutate, bare)
            )
            tick(f"blocking mutate, {nodes} node(s), {placement}")
    floor, framed, mutate = figures["codec"], figures["framed"], figures["replicate"]
    codec = Table(
        "Deterministic mutate + delivery vs the codec",
        "`mutate` + `run_until_idle` on a 3-node deterministic cluster (both peers hold the "
        f"new generation), median of {REPEATS} runs. Baseline, same run: one encode and two "
        "decodes of the same state (`serialize_state`, `deserialize_state`: msgpack + "
        "pydantic); also the same inside `WireCodec` frames (what crosses the wire).",
        ["case", "per mutation", "vs baseline"],
    )
    codec.add("one encode + two decodes of the state (baseline)", fmt_seconds(floor), "x1.00")
    codec.add("the same, framed by `WireCodec`", fmt_seconds(framed), ratio(framed, floor))
    codec.add("mutate + delivery to 2 peers", fmt_seconds(mutate), ratio(mutate, floor))
    codec.notes.append(
        "The rest is the engine (copy, validation, generations, the receiver rules on each "
        "peer, the view tables) and the simulated runtime's actors and network."
    )
    tick("deterministic mutate")
    return [blocking, codec]


def main() -> None:
    if "--json" in sys.argv[1:]:  # the child of tables(): the raw figures
        logging.getLogger("dstate").setLevel(logging.WARNING)
        print(json.dumps(measure("--pinned" in sys.argv[1:])))
        return
    print_tables(tables())


if __name__ == "__main__":
    main()
