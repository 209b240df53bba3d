"""Per-node certificate files: each node's own key, and no node speaking for another."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth

from dstate_core.net import JoinRefusedError, TcpNetwork
from dstate_core.net._messages import MEMBERSHIP
from dstate_pykka import PykkaRuntime
from tests.threads import no_thread_outlives
from tests.waiting import wait_until as _wait_until

DEADLINE = 10.0


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test() -> Iterator[None]:
    with no_thread_outlives(5.0):
        yield


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (see ``tests.waiting``)."""
    return _wait_until(predicate, timeout)


def make_certificates(root: Path, *names: str) -> Path:
    """A directory with the server pair and a pair per name (secret files chmod 600)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("server", *names):
        zmq.auth.create_certificates(root, name)
        (root / f"{name}.key_secret").chmod(0o600)
    return root


def host_directory(shared: Path, host: Path, node: str, admitted: tuple[str, ...]) -> Path:
    """What one host holds: the server pair, its own pair, and the admitted public keys."""
    host.mkdir()
    for name in ("server", node):
        shutil.copy(shared / f"{name}.key_secret", host / f"{name}.key_secret")
        (host / f"{name}.key_secret").chmod(0o600)
    for name in admitted:
        shutil.copy(shared / f"{name}.key", host / f"{name}.key")
    return host


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return make_certificates(tmp_path / "all", "a", "b", "c")


def test_nodes_with_certificates_join_and_see_each_other(certs: Path) -> None:
    a = PykkaRuntime("a", network=TcpNetwork("a", certificates=certs))
    net_a = a.network
    assert isinstance(net_a, TcpNetwork)
    b = PykkaRuntime("b", network=TcpNetwork("b", seeds=[net_a.address], certificates=certs))
    try:
        assert wait_until(lambda: a.peers == ["b"] and b.peers == ["a"])
        assert net_a.secure
    finally:
        b.shutdown()
        a.shutdown()


def test_a_key_the_cluster_does_not_list_is_refused(tmp_path: Path, certs: Path) -> None:
    # a admits only a and b; c holds a valid pair and the server key, but its public key
    # is not in a's directory.
    host_a = host_directory(certs, tmp_path / "host-a", "a", ("a", "b"))
    a = PykkaRuntime("a", network=TcpNetwork("a", certificates=host_a))
    net_a = a.network
    assert isinstance(net_a, TcpNetwork)
    try:
        with pytest.raises(JoinRefusedError, match="refused this node's key"):
            PykkaRuntime("c", network=TcpNetwork("c", seeds=[net_a.address], certificates=certs))
        assert net_a.members() == ["a"]
        assert any("unknown key" in reason for reason in net_a.counters()["rejected"])
    finally:
        a.shutdown()


def test_a_node_cannot_speak_for_another(certs: Path) -> None:
    a = PykkaRuntime("a", network=TcpNetwork("a", certificates=certs))
    net_a = a.network
    assert isinstance(net_a, TcpNetwork)
    client = zmq.auth.load_certificate(certs / "b.key_secret")
    server, _ = zmq.auth.load_certificate(certs / "server.key")
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.curve_serverkey = server
    dealer.curve_publickey, dealer.curve_secretkey = client
    dealer.connect(f"tcp://{net_a.address}")
    # b's key, a join that claims to come from c.
    forged = msgpack.packb(
        [MEMBERSHIP, "join", ["c", "9", 0, "127.0.0.1:9"], 0, None, [], [], "", False]
    )
    try:
        dealer.send(forged)
        assert wait_until(lambda: "b" in net_a.counters()["rejected_by_peer"])
        assert "claims to be node 'c'" in net_a.counters()["rejected"]
        assert net_a.members() == ["a"]
    finally:
        dealer.close()
        ctx.term()
        a.shutdown()


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("server.key_secret", "server key pair"),
        ("a.key_secret", "node 'a'"),
        ("a.key", "must hold node 'a'"),
    ],
)
def test_a_missing_certificate_file_is_named(certs: Path, remove: str, message: str) -> None:
    (certs / remove).unlink()
    with pytest.raises(ValueError, match=message):
        TcpNetwork("a", certificates=certs)


def test_a_readable_secret_key_file_is_refused_with_the_chmod(certs: Path) -> None:
    (certs / "a.key_secret").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        TcpNetwork("a", certificates=certs)


def test_certificates_and_a_secret_are_exclusive(certs: Path) -> None:
    with pytest.raises(ValueError, match="one of cluster_secret, certificates"):
        TcpNetwork("a", cluster_secret=b"s" * 32, certificates=certs)


def test_node_processes_join_with_certificates(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from dstate_pykka import PykkaNodeHandle

    certs = make_certificates(tmp_path / "all", "a", "b", "status")
    state = "dstate_core.testing:TestState"
    options = ("--certificates", str(certs))
    # secret_file=None would add --insecure: pass the certificates only.
    with PykkaNodeHandle.launch([*_node_command("a", state), *options], "a") as a:
        seed = a.address
        with PykkaNodeHandle.launch(
            [*_node_command("b", state), "--seed", seed, *options], "b"
        ) as b:
            b.ready()
            assert wait_until(lambda: b.request("status")["members"] == ["a", "b"])
            assert wait_until(lambda: a.request("status")["peers"] == ["b"])
            # An observer with a key pair of its own, which the nodes admit.
            status = [sys.executable, "-m", "dstate_core", "status", "--seed", seed, "--json"]
            done = subprocess.run(
                [*status, "--certificates", str(certs)], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            assert [m["node"] for m in json.loads(done.stdout)["members"]] == ["a", "b"]
            as_node = subprocess.run(
                [*status, "--certificates", str(certs), "--key", "a", "--timeout", "1"],
                capture_output=True,
                text=True,
            )
            assert as_node.returncode == 0  # a node's own key pair works too
            missing = subprocess.run(
                [*status, "--certificates", str(certs), "--key", "nobody"],
                capture_output=True,
                text=True,
            )
            assert missing.returncode == 2
            assert "nobody" in missing.stderr and missing.stderr.count("\n") == 1
            assert b.request("status")["members"] == ["a", "b"]


def _node_command(node: str, state: str) -> list[str]:
    import sys

    return [
        sys.executable,
        "-m",
        "dstate_pykka",
        "node",
        "--node-id",
        node,
        "--listen",
        "127.0.0.1:0",
        "--state",
        state,
        "--exit-on-eof",
    ]
