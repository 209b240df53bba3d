"""Node processes over the network: ``python -m dstate_pykka node`` on 127.0.0.1.

Every node is its own process with its own ``TcpNetwork`` (CURVE with a
cluster secret file unless a test says otherwise), driven through its
stdin/stdout control channel with :class:`PykkaNodeHandle`. Nothing sleeps
hoping: every wait polls for its condition with a deadline, and times are
measured against the nodes' own event times (the host's monotonic clock). After
each test nothing it started may still run or listen.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dstate_core.process import free_port, port_open
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


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """The cluster's secret (chmod 600)."""
    return write_secret(tmp_path / "cluster.secret")


@pytest.fixture
def spawn(secret_file: Path) -> Iterator[Spawn]:
    """Start node processes (with the cluster's secret unless told); afterwards stop them
    and check that nothing is left."""
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

    yield start
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


class TestReplication:
    def test_three_processes_join_and_replicate_under_push_and_the_feed(self, spawn: Spawn) -> None:
        ids = ["a", "b", "c"]
        nodes = start_cluster(spawn, ids, extra=dict.fromkeys(ids, LONG_FAILURE_TIMEOUT))
        a, b, c = nodes
        for node in nodes:
            status = node.request("status")
            assert status["members"] == ids
            assert status["secure"] is True
            assert status["peers"] == [n for n in ids if n != node.node_id]
            for other in status["peers"]:
                assert node.wait_event(joined(other), DEADLINE), node.events

        # Active push: every mutation reaches every node.
        for amount, node in enumerate(nodes, start=1):
            wait_seen(nodes, node.node_id, mutate(node, amount))
        assert all(values(node, "value") == {"a": 1, "b": 2, "c": 3} for node in nodes)

        # The change feed: peers learn that a view changed and pull it.
        for amount, node in enumerate(nodes, start=1):
            wait_seen(nodes, node.node_id, mutate(node, 10 * amount, FEED), FEED)
        totals = {node.node_id: 10 * n for n, node in enumerate(nodes, start=1)}
        assert all(values(node, "total", FEED) == totals for node in nodes)
        assert a.request("metrics", state=FEED)["metrics"]["feed_batches_sent"] >= 1
        assert a.request("health")["status"] == "HEALTHY"

        # Clean stops are seen at once (the failure timeout is 5 s): SIGTERM, the
        # shutdown command, Ctrl-C; each exits 0.
        stopped_at = time.monotonic()
        assert c.stop(signal.SIGTERM) == 0
        seen = [n.wait_event(left("c"), DEADLINE) for n in (a, b)]
        assert all(seen), [n.describe() for n in (a, b)]
        took = max(e["t"] for e in seen if e) - stopped_at
        print(f"clean stop: left on the others after {took:.3f} s")
        assert took < 1.0
        stopped_at = time.monotonic()
        assert b.request("shutdown")["ok"]
        assert b.proc.wait(DEADLINE) == 0
        event = a.wait_event(left("b"), DEADLINE)
        assert event is not None and event["t"] - stopped_at < 1.0
        assert a.request("status")["members"] == ["a"]
        assert a.stop(signal.SIGINT) == 0
        for node in nodes:
            assert node.wait_event(lambda e: e.get("event") == "stopped", DEADLINE)
            assert not [line for line in node.stderr if "Traceback" in line], node.stderr


class TestFailures:
    def test_kill_9_is_noticed_in_time_and_a_restart_resumes_or_starts_afresh(
        self, spawn: Spawn, tmp_path: Path
    ) -> None:
        data = ("--data-dir", str(tmp_path / "c-data"))
        a, b, c = start_cluster(spawn, ["a", "b", "c"], extra={"c": data})
        survivors = [a, b]
        for _ in range(3):
            first = mutate(c, 2)
        assert first[1] == 3
        wait_seen(survivors, "c", first)

        killed_at = c.kill()
        bound = FAILURE_TIMEOUT + DETECTION_SLACK
        events = [n.wait_event(left("c"), bound + DEADLINE) for n in survivors]
        assert all(events), [n.describe() for n in survivors]
        detected = max(e["t"] for e in events if e) - killed_at
        print(f"kill -9: left on the others after {detected:.3f} s (bound {bound} s)")
        assert detected <= bound
        assert all(n.request("status")["members"] == ["a", "b"] for n in survivors)

        # Restarted with its data dir: the same incarnation, the age where it was.
        restarted_at = time.monotonic()
        c2 = spawn("c", [b.address], extra=data)
        assert c2.ready()["states"][PUSH] == first
        assert all(n.wait_event(joined("c", restarted_at), DEADLINE) for n in survivors)
        wait_full([a, b, c2], ["a", "b", "c"])
        assert values(c2, "value") == {"a": 0, "b": 0, "c": 6}
        resumed = mutate(c2, 1)
        assert resumed == [first[0], 4]
        wait_seen(survivors, "c", resumed)

        # Killed again and restarted at once without its data dir (usually before the others
        # noticed: the seed then checks that the old process is gone before it lets the new
        # one in): a new, higher incarnation at age 0.
        c2.kill()
        restarted_at = time.monotonic()
        c3 = spawn("c", [a.address])
        fresh = c3.ready()["states"][PUSH]
        assert fresh[0] > first[0]
        assert fresh[1] == 0
        assert all(n.wait_event(joined("c", restarted_at), DEADLINE) for n in survivors)
        wait_full([a, b, c3], ["a", "b", "c"])
        assert wait_until(lambda: all(generations(n)["c"] == fresh for n in survivors), DEADLINE), [
            generations(n) for n in survivors
        ]
        wait_seen([a, b], "c", mutate(c3, 5))
        assert all(values(n, "value") == {"a": 0, "b": 0, "c": 5} for n in (a, b, c3))

    def test_a_paused_process_is_declared_left_and_rejoins_by_itself(self, spawn: Spawn) -> None:
        a, b, c = start_cluster(spawn, ["a", "b", "c"])
        others = [a, b]
        paused_at = time.monotonic()
        os.kill(c.pid, signal.SIGSTOP)
        try:
            bound = FAILURE_TIMEOUT + DETECTION_SLACK
            events = [n.wait_event(left("c", paused_at), bound + DEADLINE) for n in others]
            assert all(events), [n.describe() for n in others]
            detected = max(e["t"] for e in events if e) - paused_at
            print(f"SIGSTOP: left on the others after {detected:.3f} s")
            assert detected <= bound
            # What c misses while it is out must reach it when it is back.
            while_away = mutate(a, 7)
            wait_seen([b], "a", while_away)
            # The scenario is a 3 s pause (not a wait for something to happen).
            time.sleep(max(0.0, paused_at + 3.0 - time.monotonic()))
        finally:
            resumed_at = time.monotonic()
            os.kill(c.pid, signal.SIGCONT)
        assert resumed_at - paused_at >= 3.0
        # Back by itself: the others see it join again, and it re-announces them.
        assert all(n.wait_event(joined("c", resumed_at), DEADLINE) for n in others), [
            n.events[-5:] for n in others
        ]
        assert c.wait_event(joined("a", resumed_at), DEADLINE), c.events[-10:]
        assert wait_until(
            lambda: all(n.request("status")["members"] == ["a", "b", "c"] for n in (a, b, c)),
            DEADLINE,
        )
        wait_seen([c], "a", while_away)
        wait_seen(others, "c", mutate(c, 3))
        assert all(values(n, "value") == {"a": 7, "b": 0, "c": 3} for n in (a, b, c))


class TestRefusals:
    def test_a_node_with_another_secret_learns_nothing_and_changes_nothing(
        self, spawn: Spawn, tmp_path: Path
    ) -> None:
        a, b = start_cluster(spawn, ["a", "b"])
        before = {n.node_id: generations(n) for n in (a, b)}
        wrong = write_secret(tmp_path / "other.secret")
        # Its only seed refuses its key: it says so and exits 2.
        refused = spawn("mallory", [a.address], secret=wrong)
        # With one more seed that never answers it cannot tell; it runs alone.
        dead = f"127.0.0.1:{free_port()}"
        alone = spawn("eve", [a.address, dead], secret=wrong, extra=("--join-timeout", "1"))

        error = one_line_error(refused)
        assert "every seed refused this node's key" in error
        assert "--secret-file" in error
        status = alone.request("status", reply_timeout=DEADLINE)
        assert status["members"] == ["eve"]
        assert status["peers"] == []
        assert sorted(status["states"][PUSH]["views"]) == ["eve"]
        mutate(alone, 99)

        def counted() -> bool:
            rejected = a.request("status")["network"]["rejected"]
            return int(sum(rejected.values())) >= 2

        assert wait_until(counted, DEADLINE), a.request("status")["network"]
        # A marker from a reaches b: whatever the outsiders sent before it was judged.
        wait_seen([b], "a", mutate(a, 1))
        after_b = generations(b)
        assert after_b["b"] == before["b"]["b"]
        assert sorted(after_b) == ["a", "b"]
        for node in (a, b):
            assert node.request("status")["members"] == ["a", "b"]
            assert not [e for e in node.events if e.get("node") in ("mallory", "eve")]
        assert not [e for e in alone.events if e.get("event") == "joined"]
        # It said why it runs alone (the refused handshakes), without a traceback.
        warning = [line for line in alone.stderr if "running alone" in line]
        assert len(warning) == 1, alone.stderr
        assert "the peer refused this node's key" in warning[0]
        assert not [line for line in alone.stderr if "Traceback" in line]

    def test_a_duplicate_node_id_is_refused(self, spawn: Spawn) -> None:
        a, b = start_cluster(spawn, ["a", "b"])
        twin = spawn("b", [a.address])
        error = one_line_error(twin)
        assert "node id 'b' is taken" in error
        for node in (a, b):
            assert node.request("status")["members"] == ["a", "b"]
        assert not a.wait_event(left("b"), 0)
        wait_seen([a], "b", mutate(b, 4))

    def test_bad_options_are_one_line_and_exit_status_2(self, spawn: Spawn, tmp_path: Path) -> None:
        readable = write_secret(tmp_path / "readable.secret", 0o644)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            neither = PykkaNodeHandle.launch(
                [*NODE_COMMAND, "--node-id", "n", "--listen", "127.0.0.1:0", "--state", STATES[0]],
                "n",
                cwd=REPO,
            )
            try:
                cases = [
                    (spawn("r", secret=readable), f"run chmod 600 {readable}"),
                    (spawn("p", listen=f"127.0.0.1:{port}"), f"cannot listen on 127.0.0.1:{port}"),
                    (spawn("i", secret=None, listen="0.0.0.0:0"), "only listens on"),
                    (neither, "needs --secret-file"),
                ]
                for node, want in cases:
                    assert want in one_line_error(node), node.stderr
            finally:
                neither.close()


class TestScale:
    def test_ten_processes_all_know_each_other_within_3_s_of_the_last_ready(
        self, spawn: Spawn
    ) -> None:
        ids = [f"n{i}" for i in range(10)]
        first = spawn(ids[0])
        seeds = [first.address]
        nodes = [first, *(spawn(node_id, seeds) for node_id in ids[1:])]
        last_ready = max(node.ready()["t"] for node in nodes)
        known: list[float] = []
        for node in nodes:
            for other in ids:
                if other != node.node_id:
                    event = node.wait_event(joined(other), 3.0 + DEADLINE)
                    assert event is not None, (node.node_id, other, node.events)
                    known.append(event["t"])
        took = max(known) - last_ready
        print(f"10 processes: everyone knew everyone {took:.3f} s after the last ready")
        assert took <= 3.0
        for node in nodes:
            assert node.request("status")["members"] == ids
        generation = mutate(first, 1)
        wait_seen(nodes, ids[0], generation)
