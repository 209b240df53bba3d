"""``python -m dstate_core status`` against real node processes on 127.0.0.1.

The command is run as a process, as an operator would; the nodes are
``python -m dstate_pykka node`` processes (``tests.pykka.node_processes``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.pykka.node_processes import (
    DEADLINE,
    PUSH,
    REPO,
    Spawn,
    mutate,
    start_cluster,
    wait_seen,
    wait_until,
    write_secret,
)

STATUS = (sys.executable, "-m", "dstate_core", "status")
ERROR = "python -m dstate_core status: error: "


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STATUS, *args], capture_output=True, text=True, timeout=DEADLINE, cwd=REPO
    )


def status_json(seed: str, secret_file: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = status("--seed", seed, "--secret-file", str(secret_file), "--json", *extra)
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_healthy_cluster_is_reported_and_exits_0(spawn: Spawn, secret_file: Path) -> None:
    nodes = start_cluster(spawn, ["a", "b", "c"])
    generation = mutate(nodes[0], 5)
    wait_seen(nodes, "a", generation)

    code, report = status_json(nodes[1].address, secret_file)

    assert code == 0, report
    assert report["healthy"] is True
    members = {m["node"]: m for m in report["members"]}
    assert sorted(members) == ["a", "b", "c"]
    assert members["a"]["address"] == nodes[0].address
    for member in members.values():
        assert member["answered"] and member["ready"] and member["healthy"]
        by_state = {s["name"]: s for s in member["states"]}
        assert sorted(by_state) == ["test_delta_state", "test_state"]
        assert all(s["health"] == "HEALTHY" for s in by_state.values())
    pushed = {s["name"]: s for s in members["a"]["states"]}[PUSH]
    assert pushed["generation"] == f"{generation[0]}:{generation[1]}"
    assert pushed["lag"] == 0

    # The observer joined nobody's views.
    for node in nodes:
        assert sorted(node.request("status")["members"]) == ["a", "b", "c"]


def test_the_table_names_every_member_and_state(spawn: Spawn, secret_file: Path) -> None:
    nodes = start_cluster(spawn, ["a", "b"])

    done = status("--seed", nodes[0].address, "--secret-file", str(secret_file))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NODE", "ADDRESS", "READY", "STATE", "GENERATION", "LAG", "HEALTH"]
    rows = [line.split() for line in lines[1:-1]]
    assert sorted((r[0], r[3], r[-1]) for r in rows) == [
        ("a", "test_delta_state", "HEALTHY"),
        ("a", "test_state", "HEALTHY"),
        ("b", "test_delta_state", "HEALTHY"),
        ("b", "test_state", "HEALTHY"),
    ]
    assert lines[-1] == "2 members, all healthy"


def test_a_member_that_does_not_answer_makes_it_exit_1(spawn: Spawn, secret_file: Path) -> None:
    nodes = start_cluster(spawn, ["a", "b"], extra={"b": ("--failure-timeout", "30")})
    os.kill(nodes[0].proc.pid, signal.SIGSTOP)  # a stays a member of b for 30 s
    try:
        code, report = status_json(nodes[1].address, secret_file, "--timeout", "0.5")
    finally:
        os.kill(nodes[0].proc.pid, signal.SIGCONT)

    assert code == 1
    members = {m["node"]: m for m in report["members"]}
    assert members["a"]["answered"] is False
    assert "no answer within 0.5 s" in members["a"]["error"]
    assert members["b"]["answered"] is True


def test_a_wrong_secret_or_no_node_exits_2_in_one_line(
    spawn: Spawn, secret_file: Path, tmp_path: Path
) -> None:
    (node,) = start_cluster(spawn, ["a"])
    wrong = write_secret(tmp_path / "other.secret")

    refused = status("--seed", node.address, "--secret-file", str(wrong), "--timeout", "2")
    nobody = status("--seed", "127.0.0.1:9", "--secret-file", str(secret_file), "--timeout", "0.3")

    assert refused.returncode == 2
    assert refused.stderr.startswith(ERROR) and refused.stderr.count("\n") == 1
    assert "cluster secret or certificates are not these" in refused.stderr
    assert nobody.returncode == 2
    assert "no answer within 0.3 s" in nobody.stderr and nobody.stderr.count("\n") == 1
    assert wait_until(lambda: node.request("status")["members"] == ["a"], DEADLINE)


def test_usage_errors_exit_2(secret_file: Path, tmp_path: Path) -> None:
    loose = write_secret(tmp_path / "loose.secret", mode=0o644)
    cases = {
        "--secret-file": status("--seed", "127.0.0.1:7100"),
        "must be 'host:port'": status("--seed", "nowhere", "--insecure"),
        "chmod 600": status("--seed", "127.0.0.1:7100", "--secret-file", str(loose)),
        "--timeout must be": status("--seed", "127.0.0.1:7100", "--insecure", "--timeout", "0"),
    }
    for expected, done in cases.items():
        assert done.returncode == 2, (expected, done)
        assert expected in done.stderr, (expected, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
