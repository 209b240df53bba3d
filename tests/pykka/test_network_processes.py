"""Node processes over the network: ``python -m dstate_pykka node`` on 127.0.0.1.

Every node is its own process with its own ``TcpNetwork`` (CURVE with a
cluster secret file unless a test says otherwise), driven through its
stdin/stdout control channel with :class:`PykkaNodeHandle`. Nothing sleeps
hoping: every wait polls for its condition with a deadline, and times are
measured against the nodes' own event times (the host's monotonic clock). After
each test nothing it started may still run or listen.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from dstate_core.process import free_port
from dstate_pykka._process import PykkaNodeHandle
from tests.pykka.node_processes import (
    DEADLINE,
    DETECTION_SLACK,
    FAILURE_TIMEOUT,
    FEED,
    LONG_FAILURE_TIMEOUT,
    NODE_COMMAND,
    PUSH,
    REPO,
    STATES,
    Spawn,
    generations,
    joined,
    left,
    mutate,
    one_line_error,
    start_cluster,
    values,
    wait_full,
    wait_seen,
    wait_until,
    write_secret,
)


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
