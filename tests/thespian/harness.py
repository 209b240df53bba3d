"""RuntimeHarness implementations for ThespianRuntime, and process/port checks."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from dstate_core.process import port_open
from dstate_core.runtime._protocol import ActorRuntime
from dstate_thespian import InProcessConvention, ThespianRuntime
from tests.waiting import wait_until as _wait_until


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (see ``tests.waiting``)."""
    return _wait_until(predicate, timeout)


class SimpleHarness:
    """ThespianRuntimes on simpleSystemBase sharing one InProcessConvention."""

    def __init__(self) -> None:
        self.convention = InProcessConvention(failure_timeout=0.5)
        self.runtimes: dict[str, ThespianRuntime] = {}

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        for node_id in node_ids:
            self.runtimes[node_id] = ThespianRuntime(
                node_id, "simpleSystemBase", convention=self.convention
            )
        return [self.runtimes[n] for n in node_ids]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return wait_until(predicate, timeout)

    def remove(self, node_id: str) -> None:
        self.runtimes[node_id].shutdown()

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.shutdown()
        self.convention.close()


class TcpHarness:
    """ThespianRuntimes on multiprocTCPBase: one actor system per node, the first leads."""

    def __init__(self) -> None:
        self.runtimes: dict[str, ThespianRuntime] = {}
        self.leader_port: int | None = None

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        for node_id in node_ids:
            leader = None if self.leader_port is None else f"127.0.0.1:{self.leader_port}"
            runtime = ThespianRuntime(node_id, convention_address=leader, host="127.0.0.1")
            self.runtimes[node_id] = runtime
            if self.leader_port is None:
                self.leader_port = runtime.admin_port
        return [self.runtimes[n] for n in node_ids]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return wait_until(predicate, timeout)

    def remove(self, node_id: str) -> None:
        self.runtimes[node_id].shutdown()

    def close(self) -> None:
        for runtime in reversed(list(self.runtimes.values())):
            runtime.shutdown()
        leftovers = [(rt.node_id, rt.alive_pids()) for rt in self.runtimes.values()]
        assert all(not pids for _, pids in leftovers), leftovers
        ports = [rt.admin_port for rt in self.runtimes.values()]
        assert not any(port_open(p) for p in ports if p is not None), ports


def listening_ports() -> set[int]:
    """TCP ports this process listens on (from /proc: sockets in LISTEN we hold an fd of)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
