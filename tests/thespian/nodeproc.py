"""Helpers for tests that run ``python -m dstate_thespian node`` processes (see NodeHandle)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dstate_core.process import cmdline, pid_alive
from dstate_thespian import NodeHandle
from tests.waiting import wait_until as _wait_until

REPO = Path(__file__).resolve().parents[2]


def orphans(marker: str) -> list[int]:
    """Running processes whose command line contains ``marker`` (forked actor systems keep it)."""
    found = []
    for entry in os.listdir("/proc"):
        pid = int(entry) if entry.isdigit() else 0
        if pid and pid != os.getpid() and marker in cmdline(pid) and pid_alive(pid):
            found.append(pid)
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (see ``tests.waiting``)."""
    return _wait_until(predicate, timeout, period)


def settle(nodes: Iterable[NodeHandle], timeout: float = 15.0) -> list[str]:
    """Wait until nothing of ``nodes`` runs or listens; what is left after ``timeout``."""
    nodes = list(nodes)
    left: list[str] = []

    def gone() -> bool:
        left[:] = [f"{n.node_id}: {item}" for n in nodes for item in n.leftovers()]
        return not left

    wait_until(gone, timeout, 0.05)
    return left


def values(node: NodeHandle, state: str, field: str, query: bool = False) -> dict[str, object]:
    """``{node: view.value[field]}`` of every view (``query``: pulled first if stale or pending)."""
    if query:
        reply = node.request("query", state=state, max_staleness=60.0, on_stale="return")
    else:
        reply = node.request("views", state=state)
    return {peer: view["value"][field] for peer, view in reply["views"].items()}


def generations(node: NodeHandle, state: str) -> dict[str, list[int]]:
    """``{node: [incarnation, age]}`` of every view."""
    views = node.request("views", state=state)["views"]
    return {peer: view["generation"] for peer, view in views.items()}
