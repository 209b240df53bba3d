"""A seeded, single-threaded simulation of network membership engines.

:class:`MemberSim` runs one :class:`~dstate_core.net._membership.Membership`
per simulated process on one :class:`TestClock`, with every message on the
wire encoded by :func:`~dstate_core.net._messages.encode_member_msg` and
parsed back by :func:`~dstate_core.net._messages.decode_frame`, so the codec
takes part in every run.

Mechanics:

* Events wait in one heap ordered by ``(due, order, seq)``: deliveries, the
  engines' wake-ups (at :meth:`Membership.next_deadline`) and the ends of
  pauses. :meth:`MemberSim.run` takes them in order and moves the clock from
  event to event only.
* Every message waits a base latency (``uniform(*latency)``), then the
  :class:`~dstate_core.runtime.FaultModel` of the replication simulation
  decides its fate (drop, duplicate, reorder, extra delay) and partitions it
  (checked when sent and again when due, so a new partition loses in-flight
  messages).
* Processes can crash (silent stop), restart (same node id and address, a new
  incarnation that sorts later), pause (like SIGSTOP: no ticks, input queued;
  on resume the queued input is received, then the engine ticks), leave
  cleanly, or be refused (a :class:`JoinRefused` stops them).
* All randomness comes from the seed: the same seed and the same calls
  replay the same run.

Concurrency: single-threaded; not thread-safe.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from ..net._membership import (
    JoinRefused,
    MemberDown,
    Membership,
    MembershipConfig,
    MembershipOutput,
    MemberUp,
    Send,
)
from ..net._messages import MemberMsg, Peer, decode_frame, encode_member_msg
from ..runtime._faults import FaultModel
from ._clock import TestClock

__all__ = ["MemberSim", "SimEvent", "SimProcess", "Traffic", "measure_traffic"]

_DELIVER, _WAKE, _RESUME = 0, 1, 2


@dataclass(eq=False)
class SimProcess:
    """One simulated node process and what happened to it.

    Attributes:
        peer: the process as it started (node id, incarnation, address).
        engine: its membership engine.
        status: ``running``, ``paused``, ``crashed``, ``left`` or ``refused``.
        sent_messages: messages it sent since the last counter reset.
        sent_bytes: encoded bytes it sent since the last counter reset.
        received: messages delivered to it (queued ones once they are received).
    """

    peer: Peer
    engine: Membership
    status: str = "running"
    sent_messages: int = 0
    sent_bytes: int = 0
    received: int = 0
    inbox: list[bytes] = field(default_factory=list)
    wake: float | None = None

    @property
    def node(self) -> str:
        """The node id."""
        return self.peer.node

    @property
    def running(self) -> bool:
        """True while the process runs (not paused, stopped or refused)."""
        return self.status == "running"

    def view(self) -> dict[str, str]:
        """Node id -> incarnation of every member it knows, itself included."""
        return {node: p.inc for node, p in self.engine.members().items()}

    def __repr__(self) -> str:
        return f"<{self.peer.node}#{self.peer.inc} {self.status}>"


@dataclass(frozen=True)
class SimEvent:
    """An output of ``observer``'s engine other than a send, at simulated ``time``."""

    time: float
    observer: SimProcess
    output: MemberUp | MemberDown | JoinRefused


class MemberSim:
    """Membership engines on a simulated network with seeded faults.

    Args:
        seed: seeds every random choice (the network's and each engine's).
        config: the engines' configuration.
        latency: each message's base one-way delay is ``uniform(*latency)`` seconds.

    Example::

        sim = MemberSim(seed=3)
        sim.spawn("a")
        sim.spawn("b", seeds=["a"])
        sim.run(2.0)
        assert sim.converged()
    """

    def __init__(
        self,
        seed: int = 0,
        config: MembershipConfig | None = None,
        latency: tuple[float, float] = (0.0005, 0.002),
    ) -> None:
        self.seed = seed
        self.config = config or MembershipConfig()
        self.clock = TestClock()
        self.rng = random.Random(seed)
        #: Partitions and link faults, keyed by node id (see ``FaultModel``).
        self.faults = FaultModel(rng=self.rng)
        self.latency = latency
        #: Every process ever spawned, in order.
        self.processes: list[SimProcess] = []
        #: Every non-send output of every engine, in order.
        self.events: list[SimEvent] = []
        #: Wake-ups where the engine's next deadline was not in the future (a busy loop).
        self.stalls = 0
        self._at: dict[str, SimProcess] = {}
        self._latest: dict[str, SimProcess] = {}
        self._heap: list[tuple[float, int, int, int, object]] = []
        self._seq = 0
        self._incarnations = 0
        self._ports = 0

    # -- processes ------------------------------------------------------------------

    def address(self, node: str) -> str:
        """The address of ``node``'s latest process."""
        return self._latest[node].peer.addr

    def process(self, node: str) -> SimProcess:
        """The latest process started with node id ``node``."""
        return self._latest[node]

    def running(self) -> list[SimProcess]:
        """The running processes (paused ones excluded)."""
        return [p for p in self._at.values() if p.running]

    def spawn(self, node: str, seeds: Iterable[str] = (), *, addr: str | None = None) -> SimProcess:
        """Start a process for ``node`` that joins through the node ids ``seeds``.

        Args:
            node: its node id.
            seeds: node ids whose latest processes' addresses it joins through.
            addr: its address (default: a fresh one, or its predecessor's on restart).

        Returns:
            The process, started at the current time.
        """
        if addr is None:
            self._ports += 1
            addr = f"10.{self._ports // 250}.{self._ports % 250}.1:7100"
        self._incarnations += 1
        peer = Peer(node, f"{self._incarnations:012d}", 0, addr)
        seed_addrs = [self.address(s) for s in seeds]
        engine = Membership(
            peer,
            seed_addrs,
            self.config,
            self.clock,
            random.Random(f"{self.seed}/{node}/{peer.inc}"),
        )
        proc = SimProcess(peer, engine)
        self.processes.append(proc)
        self._at[addr] = proc
        self._latest[node] = proc
        self._dispatch(proc, engine.start())
        return proc

    def crash(self, node: str) -> SimProcess:
        """Stop ``node``'s latest process silently (kill -9)."""
        proc = self._latest[node]
        proc.status = "crashed"
        return proc

    def restart(self, node: str, seeds: Iterable[str] = ()) -> SimProcess:
        """Crash ``node``'s latest process if needed and start a new incarnation at its address."""
        old = self._latest[node]
        if old.status in ("running", "paused"):
            old.status = "crashed"
        return self.spawn(node, seeds, addr=old.peer.addr)

    def leave(self, node: str) -> SimProcess:
        """Shut ``node``'s latest process down cleanly (its goodbyes go out)."""
        proc = self._latest[node]
        self._dispatch(proc, proc.engine.leave())
        proc.status = "left"
        return proc

    def pause(self, node: str, seconds: float) -> SimProcess:
        """Freeze ``node``'s latest process for ``seconds`` (SIGSTOP, then SIGCONT)."""
        proc = self._latest[node]
        proc.status = "paused"
        self._push(self.clock.now() + seconds, _RESUME, proc)
        return proc

    # -- the network ----------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between groups of node ids (see ``FaultModel.partition``)."""
        self.faults.partition(*groups)

    def heal(self) -> None:
        """Remove the partition."""
        self.faults.heal()

    def set_faults(
        self, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0, delay: float = 0.0
    ) -> None:
        """Fault every link (probabilities, and ``delay`` an extra maximum in seconds)."""
        self.faults.set_faults(drop, duplicate, reorder, delay)

    def clear_faults(self) -> None:
        """A perfect network again (base latency only)."""
        self.faults.clear_faults()

    def inject(self, addr: str, msg: MemberMsg, delay: float = 0.0) -> None:
        """Deliver ``msg`` (a forged or replayed one, say) to ``addr`` after ``delay``.

        It bypasses faults and partitions but still goes through the codec.
        """
        self._push(self.clock.now() + delay, _DELIVER, (addr, encode_member_msg(msg), None))

    def reset_counters(self) -> None:
        """Zero every process's sent and received counters."""
        for proc in self.processes:
            proc.sent_messages = proc.sent_bytes = proc.received = 0

    # -- driving --------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        """Process every event due in the next ``seconds`` simulated seconds."""
        self._run_to(self.clock.now() + seconds)

    def run_until(self, done: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
        """Run until ``done()`` holds (checked every ``step``); False after ``timeout``."""
        end = self.clock.now() + timeout
        while not done():
            if self.clock.now() >= end:
                return False
            self._run_to(min(end, self.clock.now() + step))
        return True

    def _run_to(self, end: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= end:
            due, _, _, kind, item = heapq.heappop(heap)
            if due > self.clock.now():
                self.clock.set(due)
            if kind == _DELIVER:
                self._deliver(*cast(tuple[str, bytes, str | None], item))
            elif kind == _WAKE:
                proc: SimProcess = item  # type: ignore[assignment]
                if proc.running and proc.wake == due:
                    proc.wake = None
                    self._dispatch(proc, proc.engine.tick(), ticked=True)
            else:
                self._resume(item)  # type: ignore[arg-type]
        if end > self.clock.now():
            self.clock.set(end)

    def _push(self, due: float, kind: int, item: object, later: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq + later, self._seq, kind, item))

    def _resume(self, proc: SimProcess) -> None:
        if proc.status != "paused":
            return
        proc.status = "running"
        queued, proc.inbox = proc.inbox, []
        for data in queued:
            if not proc.running:
                return
            self._receive(proc, data)
        if proc.running:
            self._dispatch(proc, proc.engine.tick(), ticked=True)

    def _deliver(self, addr: str, data: bytes, src: str | None) -> None:
        proc = self._at.get(addr)
        if proc is None or proc.status not in ("running", "paused"):
            return
        if src is not None and self.faults.blocked(src, proc.node):
            return
        if proc.status == "paused":
            proc.inbox.append(data)
        else:
            self._receive(proc, data)

    def _receive(self, proc: SimProcess, data: bytes) -> None:
        msg = decode_frame(data)
        if not isinstance(msg, MemberMsg):
            raise AssertionError(f"a membership frame decoded as {type(msg).__name__}")
        proc.received += 1
        self._dispatch(proc, proc.engine.receive(msg))

    def _dispatch(
        self, proc: SimProcess, outputs: Sequence[MembershipOutput], ticked: bool = False
    ) -> None:
        now = self.clock.now()
        lo, hi = self.latency
        for out in outputs:
            if isinstance(out, Send):
                data = encode_member_msg(out.msg)
                proc.sent_messages += 1
                proc.sent_bytes += len(data)
                dst = self._at.get(out.addr)
                if dst is None or self.faults.blocked(proc.node, dst.node):
                    continue
                for delay, later in self.faults.plan(proc.node, dst.node):
                    due = now + self.rng.uniform(lo, hi) + delay
                    self._push(due, _DELIVER, (out.addr, data, proc.node), later)
            else:
                self.events.append(SimEvent(now, proc, out))
                if isinstance(out, JoinRefused):
                    proc.status = "refused"
        if proc.running:
            self._schedule(proc, ticked)

    def _schedule(self, proc: SimProcess, ticked: bool) -> None:
        now = self.clock.now()
        due = proc.engine.next_deadline()
        if due <= now and ticked:  # tick() left work due now: a shell would spin
            self.stalls += 1
            due = now + 0.001
        due = max(due, now)
        if proc.wake is None or due < proc.wake or proc.wake < now:
            proc.wake = due
            self._push(due, _WAKE, proc)

    # -- inspection -----------------------------------------------------------------

    def expected(self) -> dict[str, str]:
        """Node id -> incarnation of every running or paused process (the true membership)."""
        return {p.node: p.peer.inc for p in self._at.values() if p.status in ("running", "paused")}

    def converged(self, processes: Iterable[SimProcess] | None = None) -> bool:
        """True if every running process (or each of ``processes``) knows exactly the
        running and paused ones, with their current incarnations."""
        truth = self.expected()
        chosen = self.running() if processes is None else processes
        return all(p.view() == truth for p in chosen)

    def downs(self, peer: Peer, since: float = 0.0) -> dict[str, float]:
        """Observer node id -> the first time it reported ``peer``'s process down."""
        return self._first_reports(MemberDown, peer, since)

    def ups(self, peer: Peer, since: float = 0.0) -> dict[str, float]:
        """Observer node id -> the first time it reported ``peer``'s process up."""
        return self._first_reports(MemberUp, peer, since)

    def _first_reports(
        self, kind: type[MemberUp] | type[MemberDown], peer: Peer, since: float
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        for ev in self.events:
            output = ev.output
            if ev.time >= since and isinstance(output, kind) and output.peer.same_process(peer):
                out.setdefault(ev.observer.node, ev.time)
        return out

    def replayed_views(self) -> dict[SimProcess, dict[str, str]]:
        """Each process's view rebuilt from its MemberUp/MemberDown outputs alone.

        Raises:
            AssertionError: an output stream contradicts itself (an up for a member
                already up, a down for a process that is not the member).
        """
        views: dict[SimProcess, dict[str, str]] = {}
        for ev in self.events:
            view = views.setdefault(ev.observer, {})
            out = ev.output
            if isinstance(out, MemberUp):
                if out.peer.node in view:
                    raise AssertionError(f"{ev.observer}: MemberUp {out.peer} while up: {ev}")
                view[out.peer.node] = out.peer.inc
            elif isinstance(out, MemberDown):
                if view.get(out.peer.node) != out.peer.inc:
                    raise AssertionError(f"{ev.observer}: MemberDown {out.peer} not up: {ev}")
                del view[out.peer.node]
        return views

    def check_outputs(self) -> None:
        """Each running process's outputs add up to its engine's view.

        Raises:
            AssertionError: they do not (or an output stream contradicts itself).
        """
        views = self.replayed_views()
        for proc in self.running():
            own = {n: i for n, i in proc.view().items() if n != proc.node}
            if views.get(proc, {}) != own:
                raise AssertionError(f"{proc}: outputs say {views.get(proc)}, engine says {own}")


# -- traffic --------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """Steady-state membership traffic of one simulated cluster.

    Attributes:
        nodes: the cluster size.
        seconds: the simulated seconds measured (after every node had joined).
        bytes_per_node: encoded bytes sent per second per node (mean).
        msgs_per_node: messages sent per second per node (mean).
        max_bytes_per_node: the busiest node's bytes per second.
        join_seconds: simulated seconds until every node knew every other.
        wall_seconds: real seconds the whole run took.
    """

    nodes: int
    seconds: float
    bytes_per_node: float
    msgs_per_node: float
    max_bytes_per_node: float
    join_seconds: float
    wall_seconds: float


def measure_traffic(
    nodes: int,
    seconds: float = 10.0,
    seed: int = 0,
    config: MembershipConfig | None = None,
    quiet: bool = True,
) -> Traffic:
    """Join ``nodes`` processes, then measure ``seconds`` of steady-state traffic.

    The processes start 5 ms apart, each joining through a random earlier one.
    With ``quiet``, the window starts once every rumour of the join has been
    passed on its full number of times (no engine has one queued); without,
    two failure timeouts after full membership.

    Raises:
        RuntimeError: the cluster did not converge within 60 simulated seconds.
    """
    started = time.perf_counter()
    sim = MemberSim(seed, config)
    ids = [f"n{i:04d}" for i in range(nodes)]
    for i, node in enumerate(ids):
        sim.spawn(node, [sim.rng.choice(ids[:i])] if i else [])
        sim.run(0.005)
    if not sim.run_until(sim.converged, 60.0, step=0.25):
        raise RuntimeError(f"{nodes} nodes did not converge in 60 simulated seconds")
    joined = sim.clock.now()
    sim.run(2 * sim.config.failure_timeout)
    if quiet and not sim.run_until(
        lambda: not any(len(p.engine._gossip) for p in sim.running()), 600.0, step=1.0
    ):
        raise RuntimeError(f"{nodes} nodes still pass rumours on after 600 simulated seconds")
    sim.reset_counters()
    sim.run(seconds)
    if not sim.converged():
        raise RuntimeError(f"{nodes} nodes lost members in steady state")
    per_node = [p.sent_bytes / seconds for p in sim.running()]
    return Traffic(
        nodes=nodes,
        seconds=seconds,
        bytes_per_node=sum(per_node) / nodes,
        msgs_per_node=sum(p.sent_messages for p in sim.running()) / seconds / nodes,
        max_bytes_per_node=max(per_node),
        join_seconds=joined,
        wall_seconds=time.perf_counter() - started,
    )
