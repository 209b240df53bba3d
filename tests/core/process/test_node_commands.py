"""Both node command lines: ``--persistence sqlite``, ``@periodic`` and ``--metrics-port``
on real node processes (one implementation in ``dstate_core.process``)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dstate_core.process import NodeHandle, free_port

STATE = "dstate_core.testing:TestState@periodic"


def start_pykka(node_id: str, options: list[str]) -> NodeHandle:
    from dstate_pykka import PykkaNodeHandle

    return PykkaNodeHandle.start(node_id, states=[STATE], options=options)


def start_thespian(node_id: str, options: list[str]) -> NodeHandle:
    from dstate_thespian import NodeHandle as ThespianNodeHandle

    return ThespianNodeHandle.start(node_id, free_port(), states=[STATE], options=options)


STARTERS: dict[str, Callable[[str, list[str]], NodeHandle]] = {
    "pykka": start_pykka,
    "thespian": start_thespian,
}


@pytest.mark.parametrize("runtime", sorted(STARTERS))
def test_sqlite_persistence_periodic_sync_and_metrics(runtime: str, tmp_path: Path) -> None:
    start = STARTERS[runtime]
    port = free_port()
    options = ["--data-dir", str(tmp_path), "--persistence", "sqlite"]
    with start("a", [*options, "--metrics-port", str(port)]) as node:
        ready: Any = node.ready()
        for _ in range(3):
            generation = node.request("mutate", state="test_state", fn="increment", args=[2])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        assert 'dstate_mutations_total{node="a",state="test_state"} 3.0' in text
        assert ready["states"]["test_state"][1] == 0
    assert list(tmp_path.glob("*.sqlite*")) or list(tmp_path.glob("*.db")), list(tmp_path.iterdir())

    with start("a", options) as again:  # the same data directory: the shard resumes
        resumed: Any = again.ready()
        assert resumed["states"]["test_state"] == generation["generation"]
        view = again.request("views", state="test_state")["views"]["a"]
        assert view["value"]["value"] == 6
