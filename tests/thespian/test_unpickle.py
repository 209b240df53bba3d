"""Thespian's TCP ports refuse pickles that would run code (``dstate_thespian._unpickle``).

The unit tests check the restricted unpickler on its own: what Thespian and
dstate legitimately send loads, anything naming a callable that could run code
is refused. The process test attacks real node processes
(``python -m dstate_thespian node``) on loopback: a code-executing pickle,
framed as Thespian frames its messages, goes to every TCP port that any
process of a node listens on (node process, admin, logger, gateway). Nothing
may run, no process may die, and the cluster must still replicate afterwards.
Every wait polls with a deadline.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import functools
import logging
import os
import pickle
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dstate_core.process import free_port, pid_alive, start_time
from dstate_core.runtime import Parcel, ParcelKind
from dstate_thespian import NodeHandle, _unpickle
from dstate_thespian._gateway import Attach, Batch, Roster, View
from dstate_thespian._thespian import GatewayActor, convention_update, exit_request, tcp_address

from .nodeproc import REPO, orphans, settle, wait_until

#: How long a condition may take (it usually takes milliseconds).
DEADLINE = 15.0
STATES = ("dstate_core.testing:TestState",)


class _Reduce:
    """Pickles as ``func(*args)``: what an attacker's pickle calls on load."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


def evil_pickles(marker: Path) -> dict[str, bytes]:
    """Pickles that each create ``marker`` when plain ``pickle.loads`` reads them."""
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": pickle.dumps(_Reduce(os.system, f"touch {marker}")),
        "subprocess.call": pickle.dumps(_Reduce(subprocess.call, ["touch", str(marker)])),
        "builtins.exec": pickle.dumps(_Reduce(builtins.exec, touch)),
        "builtins.eval": pickle.dumps(_Reduce(builtins.eval, touch)),
        "functools.partial": pickle.dumps(_Reduce(functools.partial(os.system, f"touch {marker}"))),
        # hidden inside a legitimate-looking Thespian envelope
        "envelope": pickle.dumps(
            (tcp_address("127.0.0.1", 1), _Reduce(os.system, f"touch {marker}"))
        ),
    }


def frame(payload: bytes) -> bytes:
    """A message as Thespian's TCP transport frames it (``toSendBuffer``)."""
    return b"%d>" % len(payload) + payload


# -- the unpickler on its own -------------------------------------------------------------


def test_installed_on_thespians_tcp_transport() -> None:
    from thespian.system.transport import TCPTransport  # type: ignore[import-untyped]

    assert _unpickle.installed()
    assert TCPTransport.serializer.loads is _unpickle.restricted_loads
    assert TCPTransport.serializer.dumps is pickle.dumps


def test_the_attack_pickles_are_live(tmp_path: Path) -> None:
    """Sanity: plain pickle runs them (in a child, so this process stays clean)."""
    marker = tmp_path / "ran"
    for name, payload in evil_pickles(marker).items():
        code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
        subprocess.run([sys.executable, "-c", code], input=payload, check=False, timeout=30)
        assert marker.exists(), name
        marker.unlink()


def test_code_executing_pickles_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    before = _unpickle.refused_count()
    for name, payload in evil_pickles(marker).items():
        with pytest.raises(_unpickle.RefusedPickle):
            _unpickle.restricted_loads(payload)
        assert not marker.exists(), name
    assert _unpickle.refused_count() == before + len(evil_pickles(marker))


@pytest.mark.parametrize(
    "thing",
    [getattr, setattr, __import__, open, compile, globals, vars, object, type, Path.write_text],
    ids=lambda f: getattr(f, "__qualname__", str(f)),
)
def test_no_other_callable_loads(thing: Any) -> None:
    with pytest.raises(_unpickle.RefusedPickle):
        _unpickle.restricted_loads(pickle.dumps(thing))


def test_actor_creation_only_of_the_gateway() -> None:
    from thespian.system.messages.admin import PendingActor  # type: ignore[import-untyped]

    gateway = f"{GatewayActor.__module__}.{GatewayActor.__name__}"
    assert gateway == _unpickle.GATEWAY_CLASS
    ok = PendingActor(gateway, None, 1, None, None)
    assert _unpickle.restricted_loads(pickle.dumps((None, ok)))[1].actorClassName == gateway
    for name, source in [("antigravity.Foo", None), ("os.system", None), (gateway, "hash")]:
        bad = PendingActor(name, None, 1, None, None, sourceHash=source)
        with pytest.raises(_unpickle.RefusedPickle):
            _unpickle.restricted_loads(pickle.dumps((None, bad)))


def test_what_thespian_and_dstate_send_still_loads() -> None:
    from thespian.actors import ChildActorExited, WakeupMessage  # type: ignore[import-untyped]

    address = tcp_address("127.0.0.1", 19000)
    parcel = Parcel("a", "inc", "b", ParcelKind.SEND, "dstate.inbox", b"\x00frame", "r1")
    record = logging.LogRecord("x", logging.WARNING, "f.py", 1, "hello %s", None, None)
    messages: list[Any] = [
        (address, convention_update(address, {"dstate.node": "a", "Admin Port": 19000}, True)),
        (address, exit_request()),
        (address, ChildActorExited(address)),
        (address, WakeupMessage(datetime.timedelta(seconds=0.5), "dstate.watch")),
        (address, parcel),
        (address, Batch((parcel, parcel))),
        (address, Attach("a", "inc", relay=True, watch_pid=1, watch_started=2)),
        (address, Roster("a", "inc", (("a", "inc", address),))),
        (address, View((("b", "inc"),), complete=False)),
        (address, {"set": {1, 2}, "frozen": frozenset({3}), "raw": bytearray(b"x"), "c": 1j}),
        (address, record),
    ]
    for message in messages:
        loaded = _unpickle.restricted_loads(pickle.dumps(message))
        assert type(loaded[1]) is type(message[1])
    assert _unpickle.restricted_loads(pickle.dumps((address, parcel)))[1] == parcel


# -- real node processes under attack ------------------------------------------------------


def listening_ports(pid: int) -> set[int]:
    """TCP ports ``pid`` holds a listening socket on (from /proc)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def attack(targets: list[tuple[int, bytes]], timeout: float) -> list[bytes]:
    """Send each framed pickle to its port on loopback, all at once; what each got back.

    A connection is done when the peer closes it; the ones still open at
    ``timeout`` (an endpoint of the node process that reads only while its
    thread uses it) count as unanswered.
    """
    sockets = []
    for port, payload in targets:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.sendall(frame(payload))
        sock.setblocking(False)
        sockets.append(sock)
    replies = [b""] * len(sockets)
    open_ = set(range(len(sockets)))
    with selectors.DefaultSelector() as selector:
        for index in open_:
            selector.register(sockets[index], selectors.EVENT_READ, index)
        end = time.monotonic() + timeout
        while open_ and time.monotonic() < end:
            for key, _ in selector.select(max(0.0, end - time.monotonic())):
                index = key.data
                try:
                    chunk = sockets[index].recv(4096)
                except OSError:  # reset: dropped just as well
                    chunk = b""
                replies[index] += chunk
                if not chunk:
                    open_.discard(index)
                    selector.unregister(sockets[index])
    for sock in sockets:
        sock.close()
    return replies


def frames(data: bytes) -> list[Any]:
    """The framed pickles in ``data`` (a Thespian peer's answers), read restrictedly."""
    found = []
    while data:
        size, _, rest = data.partition(b">")
        found.append(_unpickle.restricted_loads(rest[: int(size)]))
        data = rest[int(size) :]
    return found


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[NodeHandle]]:
    """Leader a and member b, joined; stopped afterwards with nothing left behind."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port_a, port_b = free_port(), free_port()
    started: list[NodeHandle] = []
    try:
        for node_id, port in (("a", port_a), ("b", port_b)):
            node = NodeHandle.start(
                node_id,
                port,
                states=STATES,
                convention=port_a,
                options=("--run-dir", str(run_dir)),
                cwd=REPO,
            )
            started.append(node)
            node.ready()
        b = started[1]
        assert b.wait_event(lambda e: e.get("event") == "joined" and e["node"] == "a", DEADLINE)
        yield started
    finally:
        for node in started:
            with contextlib.suppress(Exception):
                node.request("shutdown")
        left = settle(started)
        for node in started:
            node.close()
        stray = orphans(str(run_dir))
        assert not left, f"left behind: {left}"
        assert not stray, f"orphan processes: {stray}"


def test_no_port_of_a_node_runs_a_pickle(nodes: list[NodeHandle], tmp_path: Path) -> None:
    a, b = nodes
    marker = tmp_path / "ran"
    targets: dict[int, str] = {}
    processes: dict[int, int] = {}
    for node in nodes:
        status = node.request("status")
        for pid in {node.proc.pid, *status["pids"]}:
            processes[pid] = start_time(pid)
            for port in listening_ports(pid):
                targets[port] = f"{node.node_id} pid {pid}"
        mine = {p for p, who in targets.items() if who.startswith(f"{node.node_id} ")}
        assert {status["admin_port"], status["gateway_port"]} <= mine, targets
        assert len(mine) >= 3, targets  # admin, gateway, logger, the node process's endpoints

    attacks = [
        (port, name, payload)
        for port in sorted(targets)
        for name, payload in evil_pickles(marker).items()
    ]
    replies = attack([(port, payload) for port, _, payload in attacks], 3.0)
    answered = set()
    for (port, name, _), reply in zip(attacks, replies, strict=True):
        got = frames(reply)
        assert got in ([], ["ACK+DATAERR"]), (targets[port], port, name, got)
        if got:
            answered.add(port)
    # Thespian read (and refused) what reached the admin, logger and gateway processes.
    for node in nodes:
        status = node.request("status")
        assert {status["admin_port"], status["gateway_port"]} <= answered, (answered, targets)

    # Nothing ran anywhere: give any process that might run it time to do so.
    assert not wait_until(marker.exists, 1.0, 0.05), "a pickle ran"
    dead = [pid for pid, started in processes.items() if not pid_alive(pid, started)]
    assert not dead, f"processes died: {dead} of {sorted(processes)}"

    # The cluster still replicates, both ways.
    generation = a.request("mutate", state="test_state", fn="increment", args=[7])["generation"]
    seen = b.request("wait", state="test_state", node="a", age=generation[1], timeout=DEADLINE)
    assert seen["generation"] == generation
    generation = b.request("mutate", state="test_state", fn="increment", args=[3])["generation"]
    seen = a.request("wait", state="test_state", node="b", age=generation[1], timeout=DEADLINE)
    assert seen["generation"] == generation

    # A node process's idle endpoints read what waits for them when they next run (at the
    # latest while stopping): stop both nodes, then look again.
    for node in nodes:
        assert node.request("shutdown")["ok"]
    for node in nodes:
        assert node.proc.wait(DEADLINE) == 0
    assert not marker.exists(), "a pickle ran"
