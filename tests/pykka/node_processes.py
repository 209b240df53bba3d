"""Node processes over the network for tests: start them, drive them, wait on them.

Every node is its own ``python -m dstate_pykka node`` process on 127.0.0.1, driven
through its stdin/stdout control channel with :class:`PykkaNodeHandle`. Nothing
sleeps hoping: every wait polls for its condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dstate_core.process import port_open
from dstate_pykka._process import PykkaNodeHandle
from tests.waiting import wait_until as _wait_until

REPO = Path(__file__).resolve().parents[2]
#: The states every node hosts: a simple one under active push, a delta one on the change feed.
STATES = ("dstate_core.testing:TestState", "dstate_core.testing:TestDeltaState@feed")
PUSH, FEED = "test_state", "test_delta_state"
FAST_FEED = ("--feed-interval", "0.05")
#: How long a condition may take (it usually takes milliseconds).
DEADLINE = 15.0
#: The failure detector's default bound, and what SPEC allows on top of it for kill -9.
FAILURE_TIMEOUT = 1.0
DETECTION_SLACK = 0.5
#: A failure timeout long enough that a ``left`` well before it can only be a goodbye.
LONG_FAILURE_TIMEOUT = ("--failure-timeout", "5")
ERROR_PREFIX = "python -m dstate_pykka node: error: "
NODE_COMMAND = (sys.executable, "-m", "dstate_pykka", "node")

Event = dict[str, Any]
Spawn = Callable[..., PykkaNodeHandle]


def wait_until(predicate: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (see ``tests.waiting``)."""
    return _wait_until(predicate, timeout, period)


def left(node_id: str, after: float = 0.0) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == "left" and e["node"] == node_id and e["t"] >= after


def joined(node_id: str, after: float = 0.0) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == "joined" and e["node"] == node_id and e["t"] >= after


def views(node: PykkaNodeHandle, state: str) -> dict[str, Any]:
    return dict(node.request("views", state=state)["views"])


def generations(node: PykkaNodeHandle, state: str = PUSH) -> dict[str, list[int]]:
    """``{node: [incarnation, age]}`` of every view."""
    return {peer: view["generation"] for peer, view in views(node, state).items()}


def values(node: PykkaNodeHandle, field: str, state: str = PUSH) -> dict[str, Any]:
    return {peer: view["value"][field] for peer, view in views(node, state).items()}


def wait_seen(
    nodes: Sequence[PykkaNodeHandle], writer: str, generation: list[int], state: str = PUSH
) -> None:
    """Every node's view of ``writer`` reaches ``generation`` (``wait`` pulls a pending one)."""
    for node in nodes:
        node.request(
            "wait", state=state, node=writer, age=generation[1], timeout=DEADLINE, pull=True
        )
    for node in nodes:
        assert generations(node, state)[writer] == generation, node.node_id


def mutate(node: PykkaNodeHandle, amount: int = 1, state: str = PUSH) -> list[int]:
    """One mutation on ``node``; its new generation."""
    if state == PUSH:
        reply = node.request("mutate", state=PUSH, fn="increment", args=[amount])
    else:
        reply = node.request("mutate", state=state, fn="bump", args=[node.node_id, amount])
    return list(reply["generation"])


def leftovers(node: PykkaNodeHandle) -> list[str]:
    """What of ``node`` still runs or listens."""
    found = []
    if node.proc.poll() is None:
        found.append(f"{node.node_id}: process {node.proc.pid}")
    ready = node.ready_event
    if ready is not None:
        port = int(str(ready["address"]).rpartition(":")[2])
        if port_open(port, timeout=0.2):
            found.append(f"{node.node_id}: port {port}")
    return found


def write_secret(path: Path, mode: int = 0o600) -> Path:
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(mode)
    return path


def start_cluster(
    spawn: Spawn, ids: Sequence[str], extra: dict[str, Sequence[str]] | None = None
) -> list[PykkaNodeHandle]:
    """The first id starts the cluster, the others join through it; returns once every node
    has every other's views."""
    extra = extra or {}
    first = spawn(ids[0], extra=extra.get(ids[0], ()))
    seed = first.address
    nodes = [first] + [spawn(n, [seed], extra=extra.get(n, ())) for n in ids[1:]]
    for node in nodes:
        node.ready()
    wait_full(nodes, ids)
    return nodes


def wait_full(nodes: Sequence[PykkaNodeHandle], ids: Sequence[str]) -> None:
    def full() -> bool:
        return all(
            sorted(generations(node, state)) == sorted(ids)
            for node in nodes
            for state in (PUSH, FEED)
        )

    assert wait_until(full, DEADLINE), {n.node_id: n.request("status") for n in nodes}


def one_line_error(node: PykkaNodeHandle) -> str:
    """The node exits with status 2 before ``ready`` and says why in one stderr line."""
    assert node.proc.wait(DEADLINE) == 2, node.describe()
    assert node.stderr_closed.wait(5)
    assert len(node.stderr) == 1, node.stderr
    assert node.stderr[0].startswith(ERROR_PREFIX), node.stderr
    assert node.ready_event is None
    return node.stderr[0]


def start_spawner(secret_file: Path) -> tuple[Spawn, Callable[[], None]]:
    """A ``spawn`` function (starts node processes, with the cluster's secret unless told)
    and the cleanup that stops them and checks nothing is left running or listening."""
    started: list[PykkaNodeHandle] = []

    def start(
        node_id: str,
        seeds: Sequence[str] = (),
        *,
        secret: Path | None = secret_file,
        states: Sequence[str] = STATES,
        extra: Sequence[str] = (),
        listen: str = "127.0.0.1:0",
    ) -> PykkaNodeHandle:
        node = PykkaNodeHandle.start(
            node_id,
            states=states,
            listen=listen,
            seeds=seeds,
            secret_file=secret,
            options=(*FAST_FEED, *extra),
            cwd=REPO,
        )
        started.append(node)
        return node

    def stop_all() -> None:
        for node in started:
            if node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.proc.pid, signal.SIGCONT)  # a test that failed while it was paused
        for node in started:
            node.close()
        remaining: list[str] = []

        def gone() -> bool:
            remaining[:] = [item for node in started for item in leftovers(node)]
            return not remaining

        assert wait_until(gone, 5.0), f"left behind: {remaining}"

    return start, stop_all
