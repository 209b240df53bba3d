"""Node processes: ``python -m dstate_thespian node`` on loopback.

Every node here is its own process with its own actor system, driven through
its stdin/stdout control channel (``tests/thespian/nodeproc.py``). Nothing
sleeps hoping: every wait polls for its condition with a deadline. Crash
detection runs on dstate's default convention timing
(``dstate_thespian.CONVENTION_TIMING``), so the leader test takes seconds.
After each test, and again after the module, nothing a test started may
still run or listen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dstate_core import DStateNode
from dstate_core.process import RunRecord, free_port, listener_pids, pid_alive, port_open, stat
from dstate_core.runtime import Parcel, ParcelKind
from dstate_core.testing import TestState
from dstate_thespian import NodeHandle, NodeHandleError, ThespianRuntime
from dstate_thespian._thespian import start_system, tcp_address

from .nodeproc import REPO, generations, orphans, settle, values, wait_until

#: How long a condition may take (it usually takes milliseconds).
DEADLINE = 15.0
#: The states every node hosts: a simple one under active push, a delta one on the change feed.
STATES = ("dstate_core.testing:TestState", "examples.node_resource:NodeResource@feed")
PUSH, FEED = "test_state", "node_resource"
FAST_FEED = ("--feed-interval", "0.05")
#: How long the join exchange of nodes started together may take.
JOIN_DEADLINE = 5.0
#: Scheduling slack on top of the detection bound on a loaded machine (as test_integration).
SLACK = 1.0

Spawn = Callable[..., NodeHandle]

_every_node: list[NodeHandle] = []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One run dir for the module; its path marks every process the module starts."""
    path = tmp_path_factory.mktemp("dstate-run")
    yield path
    left = settle(_every_node, 5.0)
    for node in _every_node:
        node.close()
    stray = orphans(str(path))
    assert not left, f"left behind after the module: {left}"
    assert not stray, f"orphan processes after the module: {stray}"


@pytest.fixture
def spawn(run_dir: Path) -> Iterator[Spawn]:
    """Start node processes; afterwards stop the ones still running and check nothing is left."""
    started: list[NodeHandle] = []

    def start(
        node_id: str,
        admin_port: int,
        convention: int | None,
        states: Sequence[str] = STATES,
        extra: Sequence[str] = FAST_FEED,
    ) -> NodeHandle:
        node = NodeHandle.start(
            node_id,
            admin_port,
            states=states,
            convention=convention,
            options=("--run-dir", str(run_dir), *extra),
            cwd=REPO,
        )
        started.append(node)
        _every_node.append(node)
        return node

    yield start
    for node in started:
        if node.proc.poll() is None:
            with contextlib.suppress(NodeHandleError):
                node.close_stdin()
    left = settle(started)
    for node in started:
        node.close()
    assert not left, f"left behind: {left}"


def start_cluster(
    spawn: Spawn, ids: Sequence[str], extra: dict[str, Sequence[str]] | None = None
) -> list[NodeHandle]:
    """The first id leads; the others join at once; returns when every view map is full."""
    ports = {node_id: free_port() for node_id in ids}
    leader = ids[0]

    def args(node_id: str) -> Sequence[str]:
        return (*FAST_FEED, *(extra or {}).get(node_id, ()))

    first = spawn(leader, ports[leader], ports[leader], extra=args(leader))
    first.ready()
    nodes = [first] + [spawn(n, ports[n], ports[leader], extra=args(n)) for n in ids[1:]]
    for node in nodes:
        node.ready()
    # Well under the ~10 s after which dstate repeats a lost join exchange: none was lost.
    wait_full(nodes, ids, JOIN_DEADLINE)
    return nodes


def wait_full(nodes: Sequence[NodeHandle], ids: Sequence[str], timeout: float = DEADLINE) -> None:
    def full() -> bool:
        return all(
            sorted(generations(node, state)) == sorted(ids)
            for node in nodes
            for state in (PUSH, FEED)
        )

    assert wait_until(full, timeout), {n.node_id: generations(n, PUSH) for n in nodes}


def left(node_id: str, after: float = 0.0) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == "left" and e["node"] == node_id and e["t"] >= after


def joined(node_id: str, after: float = 0.0) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == "joined" and e["node"] == node_id and e["t"] >= after


def all_see(nodes: Sequence[NodeHandle], state: str, field: str, expected: dict[str, Any]) -> bool:
    return all(values(node, state, field) == expected for node in nodes)


class TestConvergence:
    def test_three_processes_converge_under_active_push_and_the_change_feed(
        self, spawn: Spawn
    ) -> None:
        nodes = start_cluster(spawn, ["a", "b", "c"])
        a, b, c = nodes
        assert [n.ready()["leader"] for n in nodes] == [True, False, False]
        for amount, node in enumerate(nodes, start=1):
            node.request("mutate", state=PUSH, fn="increment", args=[amount])
        expected = {"a": 1, "b": 2, "c": 3}
        assert wait_until(lambda: all_see(nodes, PUSH, "value", expected), DEADLINE)

        # The change feed: peers only learn that a view changed, then pull it on query.
        since = time.monotonic()
        for n, node in enumerate(nodes, start=1):
            node.request("mutate", state=FEED, fn="set_load", args=[10.0 * n, 100 * n])

        def flapped() -> bool:
            # b saw a leave and come back (its join exchange then brings the new view
            # straight away): the announcement is no longer what b learns first.
            return any(left("a", since)(e) for e in b.events)

        def announced() -> bool:
            return b.request("views", state=FEED)["views"]["a"]["pending"] is not None

        assert wait_until(lambda: announced() or flapped(), DEADLINE), (
            f"b never marked a's view pending: views {b.request('views', state=FEED)}, "
            f"status {b.request('status')}, events {b.events[-10:]}"
        )
        if not flapped():
            assert values(b, FEED, "cpu_pct")["a"] == 0.0  # announced, not pulled yet
        loads = {"a": 10.0, "b": 20.0, "c": 30.0}
        assert wait_until(
            lambda: all(values(node, FEED, "cpu_pct", query=True) == loads for node in nodes),
            DEADLINE,
        )
        feed = a.request("metrics", state=FEED)["metrics"]
        assert feed["feed_batches_sent"] >= 1
        assert feed["deltas_sent"] == 0
        assert a.request("metrics", state=PUSH)["metrics"]["snapshots_sent"] >= 2
        assert a.request("health")["status"] == "HEALTHY"

        # Clean exits: Ctrl-C, SIGTERM and the shutdown command, each with status 0.
        assert a.stop(signal.SIGINT) == 0
        assert b.wait_event(left("a"), DEADLINE)
        assert b.stop(signal.SIGTERM) == 0
        assert c.request("shutdown")["ok"]
        assert c.proc.wait(DEADLINE) == 0
        for node in nodes:
            assert node.wait_event(lambda e: e.get("event") == "stopped", DEADLINE)


class TestCrashes:
    def test_a_killed_member_leaves_then_rejoins_with_and_without_its_data_dir(
        self, spawn: Spawn, tmp_path: Path
    ) -> None:
        data = tmp_path / "c-data"
        nodes = start_cluster(spawn, ["a", "b", "c"], extra={"c": ["--data-dir", str(data)]})
        a, b, c = nodes
        survivors = [a, b]
        for _ in range(3):
            c.request("mutate", state=PUSH, fn="increment", args=[2])
        first = c.request("status")["states"][PUSH]["generation"]
        assert first[1] == 3
        assert wait_until(lambda: all(generations(n, PUSH).get("c") == first for n in nodes), 10)

        # kill -9 of the node process: its gateway notices and stops the actor system cleanly.
        bound = a.ready()["detection_bound"]
        killed_at = c.kill()
        events = [n.wait_event(left("c"), bound + SLACK) for n in survivors]
        assert all(events), [n.describe() for n in survivors]
        detected = max(e["t"] for e in events if e) - killed_at
        print(f"member process killed: NodeLeft on the others after {detected:.2f} s")
        assert detected <= bound
        assert wait_until(lambda: not any(pid_alive(p) for p in c.pids), DEADLINE), c.leftovers()
        assert wait_until(lambda: all("c" not in generations(n, PUSH) for n in survivors), 10)

        # Restarted with its data dir: the same incarnation, the age where it was.
        restarted_at = time.monotonic()
        c2 = spawn("c", c.admin_port, a.admin_port, extra=(*FAST_FEED, "--data-dir", str(data)))
        assert c2.ready()["states"][PUSH] == first
        assert all(n.wait_event(joined("c", restarted_at), DEADLINE) for n in survivors)
        wait_full([a, b, c2], ["a", "b", "c"])
        assert wait_until(lambda: all(generations(n, PUSH)["c"] == first for n in survivors), 10)
        assert values(c2, PUSH, "value") == {"a": 0, "b": 0, "c": 6}
        resumed = c2.request("mutate", state=PUSH, fn="increment", args=[1])["generation"]
        assert resumed == [first[0], 4]
        assert wait_until(lambda: all_see([a, b, c2], PUSH, "value", {"a": 0, "b": 0, "c": 7}), 10)

        # Killed again and restarted at once without it (its old actor system may still hold
        # the port: the new process stops it): a new, higher incarnation at age 0.
        c2.kill()
        c3 = spawn("c", c.admin_port, a.admin_port)
        fresh = c3.ready()["states"][PUSH]
        assert fresh[0] > first[0]
        assert fresh[1] == 0
        wait_full([a, b, c3], ["a", "b", "c"])
        assert wait_until(lambda: all(generations(n, PUSH)["c"] == fresh for n in survivors), 10)
        assert wait_until(lambda: all_see([a, b, c3], PUSH, "value", {"a": 0, "b": 0, "c": 0}), 10)

    def test_the_leader_crashing_with_its_actor_system_heals_when_it_restarts(
        self, spawn: Spawn
    ) -> None:
        nodes = start_cluster(spawn, ["a", "b", "c"])
        a, b, c = nodes
        members = [b, c]
        a.request("mutate", state=PUSH, fn="increment", args=[7])
        assert wait_until(lambda: all_see(nodes, PUSH, "value", {"a": 7, "b": 0, "c": 0}), 10)

        # A host crash: the node process and its whole actor system die at once.
        bound = a.ready()["detection_bound"]
        crashed_at = a.kill_all()
        events = [n.wait_event(left("a"), bound + SLACK + 2) for n in members]
        assert all(events), [n.describe() for n in members]
        detected = max(e["t"] for e in events if e) - crashed_at
        print(f"leader host crash: NodeLeft on the members after {detected:.2f} s (bound {bound})")
        assert detected <= bound + SLACK
        # The members keep replicating between themselves without their leader.
        b.request("mutate", state=PUSH, fn="increment", args=[2])
        assert wait_until(lambda: all_see(members, PUSH, "value", {"b": 2, "c": 0}), 10)

        restarted_at = time.monotonic()
        a2 = spawn("a", a.admin_port, a.admin_port)
        a2.ready()
        assert all(n.wait_event(joined("a", restarted_at), DEADLINE) for n in members)
        healed = time.monotonic() - restarted_at
        print(f"restarted leader: the cluster re-formed after {healed:.2f} s")
        wait_full([a2, b, c], ["a", "b", "c"])
        a2.request("mutate", state=PUSH, fn="increment", args=[5])
        expected = {"a": 5, "b": 2, "c": 0}
        assert wait_until(lambda: all_see([a2, b, c], PUSH, "value", expected), 10)


class TestPorts:
    def test_a_stale_admin_is_cleaned_up_at_start_and_a_live_node_is_refused(
        self, spawn: Spawn
    ) -> None:
        port = free_port()
        first = spawn("x", port, None)
        ready = first.ready()
        twin = spawn("twin", port, None)
        assert twin.proc.wait(DEADLINE) == 2
        assert wait_until(lambda: len(twin.stderr) == 1, 5), twin.stderr
        assert f"in use by dstate node 'x' (pid {first.proc.pid})" in twin.stderr[0]

        # The node process and its gateway die; the admin and logger stay on the port.
        gateway = listener_pids(ready["gateway_port"])
        assert len(gateway) == 1
        first.proc.kill()
        os.kill(gateway[0], signal.SIGKILL)
        first.proc.wait(DEADLINE)
        assert port_open(port)

        second = spawn("x", port, None)
        second.ready()
        # stderr has its own reader thread: the line may arrive just after "ready".
        stale = "stopped the stale actor system of node 'x'"
        assert wait_until(lambda: any(stale in s for s in second.stderr), 5), second.stderr
        assert not any(pid_alive(pid) for pid in ready["pids"])
        assert second.close_stdin() == 0

    def test_bad_input_is_one_line_exit_status_2_and_no_process(self, spawn: Spawn) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            cases = [
                (spawn("bad-port", taken, None), f"admin port {taken} is in use"),
                (
                    spawn("bad-leader", free_port(), free_port(), extra=("--join-timeout", "0.3")),
                    "is not reachable",
                ),
                (
                    spawn("bad-state", free_port(), None, states=["no_such_module:Counter"]),
                    "cannot import module 'no_such_module'",
                ),
            ]
            for node, want in cases:
                assert node.proc.wait(DEADLINE) == 2, node.describe()
                assert node.stderr_closed.wait(5)
                assert len(node.stderr) == 1, node.stderr
                assert node.stderr[0].startswith("python -m dstate_thespian node: error: ")
                assert want in node.stderr[0], node.stderr[0]
                assert node.ready_event is None
                assert not orphans(f"--node-id {node.node_id} ")


def caught_signals(pid: int) -> set[int]:
    """The signals ``pid`` has a handler for (``SigCgt`` in ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    return {signum for signum in range(1, 65) if mask & (1 << (signum - 1))}


class TestSignals:
    def test_sigterm_while_joining_stops_cleanly(self, spawn: Spawn, run_dir: Path) -> None:
        # A "leader" that accepts connections but never admits anyone: the node stays in
        # its start, waiting to be admitted, with its actor system running.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = free_port()
            node = spawn("early", port, silent.getsockname()[1], extra=("--join-timeout", "60"))
            record = RunRecord.path(run_dir, port)  # written once the actor system runs
            assert wait_until(record.exists, DEADLINE), node.describe()
            found = RunRecord.read(record)
            assert found is not None and found.system
            # The actor system was forked after the node's handlers were set, without them.
            admin = [
                pid for pid in found.system if (stat(pid) or ("", 0, 0))[1] not in found.system
            ]
            assert len(admin) == 1
            assert not caught_signals(admin[0]) & {signal.SIGTERM, signal.SIGHUP}
            stopped_at = time.monotonic()
            assert node.stop(signal.SIGTERM) == 0, node.describe()
            assert time.monotonic() - stopped_at < DEADLINE  # not the 60 s join timeout
        assert node.ready_event is None
        assert [e["event"] for e in node.events] == ["stopping", "stopped"]
        assert node.events[0]["reason"] == "SIGTERM"
        assert wait_until(
            lambda: not any(pid_alive(pid, at) for pid, at in found.system.items()), DEADLINE
        )
        assert not record.exists()
        assert not orphans(f"--node-id {node.node_id} ")


class TestUntrustedInput:
    def test_frames_without_the_secret_or_from_a_non_member_are_dropped_and_counted(
        self, spawn: Spawn, tmp_path: Path
    ) -> None:
        secret = tmp_path / "secret"
        secret.write_bytes(b"s" * 32 + b"\n")
        secret.chmod(0o600)
        signed = ("--cluster-secret-file", str(secret))
        a, b = start_cluster(spawn, ["a", "b"], extra={"a": signed, "b": signed})
        a.request("mutate", state=PUSH, fn="increment", args=[1])
        assert wait_until(lambda: all_see([a, b], PUSH, "value", {"a": 1, "b": 0}), 10)

        # A member of the Thespian convention without the secret: its frames fail the HMAC.
        mallory = ThespianRuntime(
            "mallory", convention_address=f"127.0.0.1:{a.admin_port}", host="127.0.0.1"
        )
        try:
            node = DStateNode(mallory, cluster_secret=b"not the secret")
            node.register(TestState).mutate(TestState.increment(99))
            assert wait_until(
                lambda: all(
                    n.request("status")["node_drops"].get("unauthenticated", 0) >= 1 for n in (a, b)
                ),
                DEADLINE,
            )
            node.shutdown()
        finally:
            mallory.shutdown()
        assert not mallory.alive_pids()

        # A Thespian system outside the convention: dropped before dstate decodes anything.
        ghost_port = free_port()
        ghost = start_system("multiprocTCPBase", {"Admin Port": ghost_port})
        try:
            parcel = Parcel("ghost", "1", "a", ParcelKind.CAST, "dstate.inbox", b"\x00" * 64)
            ghost.tell(tcp_address("127.0.0.1", a.ready()["gateway_port"]), parcel)
            assert wait_until(
                lambda: a.request("status")["runtime_drops"].get("not a member", 0) >= 1,
                DEADLINE,
            )
        finally:
            ghost.shutdown()
        assert wait_until(lambda: not port_open(ghost_port), DEADLINE)
        assert all_see([a, b], PUSH, "value", {"a": 1, "b": 0})
