"""``TcpNetwork`` on 127.0.0.1: arguments, joining, keys, hostile input, leaving, conformance.

Every node here is a ``PykkaRuntime`` over its own ``TcpNetwork`` in this one
process, talking over real loopback sockets. Nothing sleeps hoping: a wait
polls for its condition with a deadline, and "nothing happened" is shown by a
later marker (a replicated mutation) getting through, never by a pause.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import zmq

from dstate_core import DStateNode
from dstate_core.net import MIN_SECRET_BYTES, JoinRefusedError, TcpNetwork
from dstate_core.runtime import ActorRuntime, ClusterEvent, NodeJoined, NodeLeft
from dstate_core.testing import TestState
from dstate_core.testing.conformance import RuntimeConformanceSuite, RuntimeHarness
from dstate_pykka import PykkaRuntime
from tests.threads import no_thread_outlives
from tests.waiting import wait_until as _wait_until

SECRET = b"s" * MIN_SECRET_BYTES
OTHER_SECRET = b"o" * MIN_SECRET_BYTES
#: How long something that should happen may take (it usually takes milliseconds).
DEADLINE = 10.0
#: How long the threads of closed networks and runtimes may take to end.
THREADS_DEADLINE = 5.0


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test() -> Iterator[None]:
    with no_thread_outlives(THREADS_DEADLINE):
        yield


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (see ``tests.waiting``)."""
    return _wait_until(predicate, timeout)


class Events:
    """A thread-safe cluster-event log with arrival times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[float, ClusterEvent]] = []

    def __call__(self, event: ClusterEvent) -> None:
        with self._lock:
            self._items.append((time.monotonic(), event))

    @property
    def seen(self) -> list[ClusterEvent]:
        with self._lock:
            return [event for _, event in self._items]

    def time_of(self, event: ClusterEvent) -> float:
        with self._lock:
            return next(t for t, e in self._items if e == event)


class Cluster:
    """In-process nodes on loopback; everything it made is closed at the end."""

    def __init__(self) -> None:
        self.networks: list[TcpNetwork] = []
        self.runtimes: list[PykkaRuntime] = []
        self.nodes: list[DStateNode] = []

    def network(
        self,
        node_id: str,
        seeds: Sequence[str] = (),
        secret: bytes | None = SECRET,
        **kwargs: Any,
    ) -> TcpNetwork:
        network = TcpNetwork(node_id, "127.0.0.1:0", seeds, cluster_secret=secret, **kwargs)
        self.networks.append(network)
        return network

    def runtime(
        self,
        node_id: str,
        seeds: Sequence[str] = (),
        secret: bytes | None = SECRET,
        **kwargs: Any,
    ) -> PykkaRuntime:
        """A runtime that joined through ``seeds`` (waiting until it is in)."""
        runtime = PykkaRuntime(node_id, network=self.network(node_id, seeds, secret, **kwargs))
        self.runtimes.append(runtime)
        return runtime

    def member(
        self, node_id: str, seeds: Sequence[str] = (), secret: bytes | None = SECRET, **kwargs: Any
    ) -> DStateNode:
        """A node hosting ``TestState``, registered before it joins (as a node process does)."""
        network = self.network(node_id, seeds, secret, **kwargs)
        runtime = PykkaRuntime(node_id, network=network, join=False)
        self.runtimes.append(runtime)
        node = DStateNode(runtime, cluster_secret=SECRET)
        self.nodes.append(node)
        node.register(TestState)
        assert runtime.join_cluster(DEADLINE)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node.shutdown()
        for runtime in self.runtimes:
            runtime.shutdown()
        for network in self.networks:
            network.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    yield made
    made.close()


def net(of: ActorRuntime | DStateNode) -> TcpNetwork:
    """The ``TcpNetwork`` of a runtime (or of a node's runtime)."""
    runtime = of.runtime if isinstance(of, DStateNode) else of
    assert isinstance(runtime, PykkaRuntime)
    network = runtime.network
    assert isinstance(network, TcpNetwork)
    return network


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def address_of(network: TcpNetwork) -> tuple[str, int]:
    host, _, port = network.address.rpartition(":")
    return host, int(port)


def replicates(writer: DStateNode, reader: DStateNode, amount: int) -> bool:
    """A mutation on ``writer`` reaches ``reader``'s view within the deadline."""
    shard = writer.lookup_typed(TestState.NAME, TestState)
    generation = shard.mutate(TestState.increment(amount))
    mine = writer.runtime.node_id
    view = reader.lookup_typed(TestState.NAME, TestState)

    def arrived() -> bool:
        seen = view.snapshot().get(mine)
        return seen is not None and seen.generation == generation

    return wait_until(arrived)


# -- arguments ----------------------------------------------------------------------


class TestArguments:
    def test_no_secret_is_refused_and_the_error_says_what_to_do(self) -> None:
        with pytest.raises(ValueError, match="needs a cluster_secret") as raised:
            TcpNetwork("a", "127.0.0.1:0")
        assert "secrets.token_bytes(32)" in str(raised.value)
        assert "insecure=True" in str(raised.value)

    @pytest.mark.parametrize("listen", ["0.0.0.0:0", "192.0.2.1:7100"])
    def test_insecure_is_refused_off_loopback(self, listen: str) -> None:
        with pytest.raises(ValueError, match="loopback") as raised:
            TcpNetwork("a", listen, insecure=True)
        assert "give a cluster_secret instead" in str(raised.value)

    def test_insecure_on_loopback_works_and_says_so(self) -> None:
        network = TcpNetwork("a", "127.0.0.1:0", insecure=True)
        try:
            assert not network.secure
            assert "insecure" in repr(network)
            assert network.address.startswith("127.0.0.1:")
        finally:
            network.close()

    def test_a_secret_and_insecure_together_are_refused(self) -> None:
        with pytest.raises(ValueError, match="not both"):
            TcpNetwork("a", "127.0.0.1:0", cluster_secret=SECRET, insecure=True)

    def test_a_short_or_non_bytes_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match=f"at least {MIN_SECRET_BYTES} bytes"):
            TcpNetwork("a", "127.0.0.1:0", cluster_secret=b"short")
        with pytest.raises(TypeError, match="must be bytes"):
            TcpNetwork("a", "127.0.0.1:0", cluster_secret="s" * 40)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"listen": "nohost"}, "listen must be 'host:port'"),
            ({"listen": "127.0.0.1:70000"}, "listen must be 'host:port'"),
            ({"listen": ":7100"}, "listen must be 'host:port'"),
            ({"listen": 7100}, "listen must be a 'host:port' string"),
            ({"seeds": ["127.0.0.1"]}, "each seed must be 'host:port'"),
            ({"seeds": ["127.0.0.1:0"]}, "needs a real port"),
            ({"advertise": "0.0.0.0:7100"}, "advertise must be an address peers can reach"),
            ({"advertise": "host"}, "advertise must be 'host:port'"),
            ({"failure_timeout": 0}, "failure_timeout must be seconds"),
            ({"max_message_bytes": 10}, "max_message_bytes"),
            ({"node_id": ""}, "node_id must be"),
            ({"node_id": "*"}, "node_id must be"),
        ],
    )
    def test_bad_arguments_say_what_is_wrong(self, kwargs: dict[str, Any], error: str) -> None:
        args: dict[str, Any] = {"node_id": "a", "listen": "127.0.0.1:0", "cluster_secret": SECRET}
        with pytest.raises(ValueError, match=error):
            TcpNetwork(**{**args, **kwargs})

    def test_seeds_must_be_a_list_not_a_string(self) -> None:
        with pytest.raises(TypeError, match="list of 'host:port' strings"):
            TcpNetwork("a", "127.0.0.1:0", "127.0.0.1:7100", cluster_secret=SECRET)

    def test_a_port_in_use_is_refused_and_nothing_is_left_open(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            fds = open_fds()
            with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}") as raised:
                TcpNetwork("a", f"127.0.0.1:{port}", cluster_secret=SECRET)
            assert "another process using the port" in str(raised.value)
            # The ZeroMQ context and its sockets were closed again (its threads end too:
            # see the autouse fixture).
            assert wait_until(lambda: open_fds() <= fds, 2.0)

    def test_a_runtime_needs_the_network_of_its_own_node_id(self, cluster: Cluster) -> None:
        network = cluster.network("a")
        with pytest.raises(ValueError, match="give both the same node id"):
            PykkaRuntime("b", network=network)


# -- joining --------------------------------------------------------------------------


class TestJoining:
    def test_three_nodes_join_and_see_each_other(self, cluster: Cluster) -> None:
        a = cluster.runtime("a")
        assert net(a).members() == ["a"]
        b = cluster.runtime("b", [net(a).address])
        # A seed may be any member, not only the first.
        c = cluster.runtime("c", [net(b).address])
        ids = ["a", "b", "c"]
        runtimes = [a, b, c]
        assert wait_until(lambda: all(net(rt).members() == ids for rt in runtimes))
        assert wait_until(
            lambda: all(rt.peers == [n for n in ids if n != rt.node_id] for rt in runtimes)
        )
        logs = {rt.node_id: Events() for rt in runtimes}
        for runtime in runtimes:
            runtime.cluster_events.subscribe(logs[runtime.node_id])
        want = {me: {NodeJoined(n) for n in ids if n != me} for me in ids}
        assert wait_until(lambda: all(set(logs[me].seen) == want[me] for me in ids))
        assert all(net(rt).secure for rt in runtimes)

    def test_a_later_node_is_reported_to_every_member(self, cluster: Cluster) -> None:
        a = cluster.runtime("a")
        b = cluster.runtime("b", [net(a).address])
        logs = {rt.node_id: Events() for rt in (a, b)}
        a.cluster_events.subscribe(logs["a"])
        b.cluster_events.subscribe(logs["b"])
        cluster.runtime("late", [net(a).address])
        assert wait_until(lambda: all(NodeJoined("late") in log.seen for log in logs.values()))
        assert all(log.seen.count(NodeJoined("late")) == 1 for log in logs.values())

    def test_nodes_replicate_state_over_the_network(self, cluster: Cluster) -> None:
        node_a = cluster.member("a")
        node_b = cluster.member("b", [net(node_a).address])
        assert replicates(node_a, node_b, 3)
        assert replicates(node_b, node_a, 4)


# -- keys -----------------------------------------------------------------------------


class TestKeys:
    def test_a_node_with_another_secret_learns_nothing_and_is_counted(
        self, cluster: Cluster
    ) -> None:
        node_a = cluster.member("a")
        node_b = cluster.member("b", [net(node_a).address])
        a, b = net(node_a), net(node_b)
        # Joining later (join=False) keeps the runtime to look at after the refusal.
        outsider = cluster.network("mallory", [a.address], OTHER_SECRET)
        mallory = PykkaRuntime("mallory", network=outsider, join=False)
        cluster.runtimes.append(mallory)
        started = time.monotonic()
        with pytest.raises(JoinRefusedError, match="every seed refused this node's key"):
            mallory.join_cluster(DEADLINE)
        assert time.monotonic() - started < DEADLINE / 2  # refused, not timed out
        assert outsider.refused is not None and "--secret-file" in outsider.refused
        assert outsider.members() == ["mallory"]
        assert mallory.peers == []
        rejected = a.counters()["rejected"]
        assert sum(rejected.values()) >= 1, rejected
        assert any("handshake failed" in reason for reason in rejected), rejected
        assert a.members() == b.members() == ["a", "b"]
        assert replicates(node_a, node_b, 1)
        assert sorted(node_b.lookup(TestState.NAME).snapshot()) == ["a", "b"]

    def test_a_refused_key_raises_from_the_runtime_constructor(self, cluster: Cluster) -> None:
        a = net(cluster.runtime("a"))
        fds = open_fds()
        outsider = TcpNetwork("mallory", "127.0.0.1:0", [a.address], cluster_secret=OTHER_SECRET)
        with pytest.raises(JoinRefusedError, match="give it the cluster's secret"):
            PykkaRuntime("mallory", network=outsider, join_timeout=DEADLINE)
        assert a.members() == ["a"]
        # The caller has no runtime to shut down: the refused network closed itself.
        assert wait_until(lambda: open_fds() <= fds, 2.0), (open_fds(), fds)
        outsider.close()  # and closing it again is harmless

    def test_a_node_id_taken_by_a_live_process_is_refused(self, cluster: Cluster) -> None:
        node_a = cluster.member("a")
        node_b = cluster.member("b", [net(node_a).address])
        events = Events()
        node_a.runtime.cluster_events.subscribe(events)
        twin = cluster.network("b", [net(node_a).address])
        with pytest.raises(JoinRefusedError, match="node id 'b' is taken"):
            PykkaRuntime("b", network=twin, join_timeout=DEADLINE)
        assert twin.refused is not None
        assert net(node_a).members() == net(node_b).members() == ["a", "b"]
        assert replicates(node_b, node_a, 2)
        assert NodeLeft("b") not in events.seen


# -- hostile input ----------------------------------------------------------------------


class FileMaker:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


#: A ZMTP 3.0 greeting cut short: the signature and version, then nothing.
TRUNCATED_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00CURVE"


def rejections(network: TcpNetwork) -> int:
    """Connections and frames ``network`` rejected so far, for any reason."""
    return int(sum(network.counters()["rejected"].values()))


def more_rejections(network: TcpNetwork, than: int) -> Callable[[], bool]:
    return lambda: rejections(network) > than


def server_reaction(raw: socket.socket) -> str:
    """How the node answered what was sent on ``raw``: it hung up (``"closed"``), or sent
    its whole ZMTP greeting and waits for the rest of a handshake (``"greeted"``)."""
    got = b""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            data = raw.recv(4096)
        except ConnectionResetError:
            return "closed"
        if not data:
            return "closed"
        got += data
        if len(got) >= 64:
            assert got.startswith(b"\xff"), got
            return "greeted"
    raise AssertionError(f"the node neither hung up nor greeted within {DEADLINE} s: {got!r}")


class TestHostileInput:
    @pytest.fixture
    def pair(self, cluster: Cluster) -> tuple[DStateNode, DStateNode]:
        node_a = cluster.member("a")
        node_b = cluster.member("b", [net(node_a).address])
        assert replicates(node_a, node_b, 1)
        return node_a, node_b

    def _still_fine(self, node_a: DStateNode, node_b: DStateNode, amount: int) -> None:
        for node in (node_a, node_b):
            assert net(node).members() == ["a", "b"]
        assert replicates(node_b, node_a, amount)
        assert replicates(node_a, node_b, amount)

    def test_garbage_a_truncated_greeting_and_a_pickle_on_the_port_change_nothing(
        self, pair: tuple[DStateNode, DStateNode], tmp_path: Path
    ) -> None:
        node_a, node_b = pair
        network = net(node_a)
        made = tmp_path / "pwned"
        payload = pickle.dumps(FileMaker(made))
        assert made.name.encode() in payload
        inputs = [
            os.urandom(4096),
            TRUNCATED_GREETING,
            payload,
            b"%d>" % len(payload) + payload,  # Thespian's framing, as in the issue
            b"\xff" + b"\x00" * 8 + b"\x7f" + payload,  # a pickle right after a signature
        ]
        for n, data in enumerate(inputs, start=2):
            rejected = sum(network.counters()["rejected"].values())
            with socket.create_connection(address_of(network), timeout=DEADLINE) as raw:
                raw.sendall(data)
                answer = server_reaction(raw)
            if answer == "greeted":
                # It took the bytes for the start of a handshake: once we hang up, the
                # failed handshake is counted.
                assert wait_until(more_rejections(network, rejected)), network.counters()
            # Judged (dropped at once, or counted): the next mutation still gets through.
            self._still_fine(node_a, node_b, n)
        # A connection that sends half a greeting and then waits, while the cluster works.
        with socket.create_connection(address_of(network), timeout=DEADLINE) as stalled:
            stalled.sendall(TRUNCATED_GREETING[:5])
            self._still_fine(node_a, node_b, 10)
        assert not made.exists()
        # Nothing reached a node's inbox or a runtime's parcel handling either.
        dropped = [(dict(n.dropped_messages), net(n).counters()) for n in (node_a, node_b)]
        assert all(node_drops == {} for node_drops, _ in dropped), dropped
        assert all(isinstance(n.runtime, PykkaRuntime) and n.runtime.drops == {} for n in pair), (
            dropped
        )

    def test_an_insecure_node_rejects_a_pickle_in_a_well_formed_frame(
        self, cluster: Cluster, tmp_path: Path
    ) -> None:
        # Without CURVE anyone on loopback completes the handshake: the frame itself reaches
        # the decoder, which takes msgpack only.
        node_a = cluster.member("a", secret=None, insecure=True)
        node_b = cluster.member("b", [net(node_a).address], secret=None, insecure=True)
        network = net(node_a)
        made = tmp_path / "pwned"
        payload = pickle.dumps(FileMaker(made))
        context = zmq.Context()
        try:
            dealer = context.socket(zmq.DEALER)
            dealer.linger = 0
            dealer.connect(f"tcp://{network.address}")
            dealer.send(payload)
            dealer.send_multipart([b"two", payload])
            dealer.send(b"\x93\x01\x02")  # msgpack, but not a frame

            def counted() -> bool:
                rejected = network.counters()["rejected"]
                return int(sum(v for k, v in rejected.items() if "malformed frame" in k)) >= 3

            assert wait_until(counted), network.counters()
            dealer.close()
        finally:
            context.term()
        assert not made.exists()
        assert network.members() == ["a", "b"]
        assert replicates(node_a, node_b, 5)

    def test_a_client_without_curve_cannot_reach_a_secure_node(
        self, pair: tuple[DStateNode, DStateNode], tmp_path: Path
    ) -> None:
        node_a, node_b = pair
        network = net(node_a)
        made = tmp_path / "pwned"
        context = zmq.Context()
        try:
            dealer = context.socket(zmq.DEALER)
            dealer.linger = 0
            dealer.connect(f"tcp://{network.address}")
            dealer.send(pickle.dumps(FileMaker(made)), zmq.NOBLOCK)
            assert wait_until(lambda: rejections(network) >= 1), network.counters()
            dealer.close()
        finally:
            context.term()
        assert not made.exists()
        self._still_fine(node_a, node_b, 6)


# -- leaving ----------------------------------------------------------------------------


class TestLeaving:
    def test_a_clean_shutdown_is_node_left_at_once(self, cluster: Cluster) -> None:
        # A long failure timeout: a NodeLeft well before it can only be the goodbye.
        slow = 5.0
        a = cluster.runtime("a", failure_timeout=slow)
        b = cluster.runtime("b", [net(a).address], failure_timeout=slow)
        c = cluster.runtime("c", [net(a).address], failure_timeout=slow)
        logs = {rt.node_id: Events() for rt in (a, b)}
        a.cluster_events.subscribe(logs["a"])
        b.cluster_events.subscribe(logs["b"])
        assert wait_until(lambda: all(NodeJoined("c") in log.seen for log in logs.values()))
        stopped_at = time.monotonic()
        c.shutdown()
        assert wait_until(lambda: all(NodeLeft("c") in log.seen for log in logs.values()), 2.0)
        took = max(log.time_of(NodeLeft("c")) - stopped_at for log in logs.values())
        assert took < 1.0, took
        assert net(a).members() == net(b).members() == ["a", "b"]


# -- the runtime contract ---------------------------------------------------------------


class TcpHarness:
    """A :class:`RuntimeHarness`: ``PykkaRuntime`` s over ``TcpNetwork`` s in this process.

    The first node started founds the cluster; every later one joins through it. ``start``
    adds no wait of its own: a ``PykkaRuntime`` returns once it has joined (the members
    and their actors known), which is all the suite assumes.
    """

    def __init__(self) -> None:
        self.runtimes: dict[str, PykkaRuntime] = {}
        self._seed: str | None = None

    def start(self, node_ids: Sequence[str]) -> list[ActorRuntime]:
        started: list[ActorRuntime] = []
        for node_id in node_ids:
            seeds = [] if self._seed is None else [self._seed]
            network = TcpNetwork(node_id, "127.0.0.1:0", seeds, cluster_secret=SECRET)
            runtime = PykkaRuntime(node_id, network=network, join_timeout=DEADLINE)
            self._seed = self._seed or network.address
            self.runtimes[node_id] = runtime
            started.append(runtime)
        return started

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return wait_until(predicate, timeout)

    def remove(self, node_id: str) -> None:
        self.runtimes.pop(node_id).shutdown()

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.shutdown()


class TestTcpNetworkConformance(RuntimeConformanceSuite):
    TIMEOUT = DEADLINE

    @pytest.fixture
    def harness(self) -> Iterator[RuntimeHarness]:
        h = TcpHarness()
        yield h
        h.close()
