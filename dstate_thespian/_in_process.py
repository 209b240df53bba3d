"""``InProcessConvention``: a Thespian convention's stand-in for simpleSystemBase runtimes.

simpleSystemBase has no conventions and runs its actors only while some thread
is inside the main handle's ``listen``/``ask``. So runtimes in one process that
join one :class:`InProcessConvention` share one simpleSystemBase actor system,
run by a pump thread, and the convention tells each gateway about the others
with the same ``ActorSystemConventionUpdate`` messages a real convention sends.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dstate_core.model import NodeShutdownError
from dstate_core.runtime import TimerScheduler

from ._gateway import CAP_GATEWAY, CAP_INCARNATION, CAP_NODE
from ._thespian import GatewayActor, convention_update, exit_request, named_address, start_system

__all__ = ["InProcessConvention"]

_log = logging.getLogger("dstate.thespian")

T = TypeVar("T")

#: The pump wakes at least this often (to fire Thespian wakeups).
_IDLE_SECONDS = 0.05


class _Poke:
    """Wakes a receiver blocked in a simpleSystemBase private ``listen``."""


class _Member:
    __slots__ = ("admin", "caps", "gateway", "inc", "node")

    def __init__(self, node: str, inc: str, gateway: Any) -> None:
        self.node = node
        self.inc = inc
        self.gateway = gateway
        self.admin = named_address(f"dstate-sim:{node}:{inc}")
        self.caps = {CAP_NODE: node, CAP_INCARNATION: inc, CAP_GATEWAY: gateway}


class InProcessConvention:
    """One simpleSystemBase actor system shared by the runtimes that join it.

    Args:
        failure_timeout: seconds from :meth:`crash` until the others are told
            the node left (default 5.0).

    Concurrency: thread-safe. Everything that touches the actor system runs on
    the pump thread; :meth:`call` hands work to it and waits.
    """

    def __init__(self, failure_timeout: float = 5.0) -> None:
        if not 0 < failure_timeout < float("inf"):
            raise ValueError(f"failure_timeout must be > 0 seconds, got {failure_timeout!r}")
        self.failure_timeout = float(failure_timeout)
        self._system = start_system("simpleSystemBase", {})
        self._lock = threading.Lock()
        self._members: dict[str, _Member] = {}
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._timers = TimerScheduler("in-process-convention")
        self._kick = threading.Event()
        self._closed = False
        self._pump = threading.Thread(target=self._run, name="dstate-thespian-pump", daemon=True)
        self._pump.start()

    # -- used by runtimes and links -------------------------------------------------

    def kick(self) -> None:
        """Wake the pump: messages are waiting."""
        self._kick.set()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the pump thread and return its value (or raise its exception).

        Raises:
            NodeShutdownError: the convention was closed.
            TimeoutError: the pump did not get to it within ``timeout``.
        """
        if threading.current_thread() is self._pump:
            return fn()
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            done.set()

        with self._lock:
            if self._closed:
                raise NodeShutdownError("this in-process Thespian convention is closed")
            self._calls.put(run)
        self.kick()
        if not done.wait(timeout):
            raise TimeoutError("the simpleSystemBase pump did not answer")
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def open_endpoint(self) -> tuple[Any, Callable[[], None]]:
        """A private endpoint of the shared system, and how to close it."""
        manager = self.call(self._system.private)
        endpoint = self.call(manager.__enter__)

        def close() -> None:
            with contextlib.suppress(NodeShutdownError):
                self.call(lambda: manager.__exit__(None, None, None))

        return endpoint, close

    def poke(self, endpoint: Any) -> None:
        """Send ``endpoint`` a ``None``-like wake-up so a ``listen`` there returns."""
        with contextlib.suppress(NodeShutdownError):
            self.call(lambda: self._system.tell(endpoint, _Poke()))

    def create_gateway(self) -> Any:
        """Start a gateway actor in the shared system; returns its address."""
        return self.call(lambda: self._system.createActor(GatewayActor))

    def join(self, node: str, inc: str, gateway: Any) -> list[str]:
        """Admit a node: it and every member hear about each other. Returns the members."""
        member = _Member(node, inc, gateway)
        with self._lock:
            if node in self._members:
                raise ValueError(f"node {node!r} is already in this convention")
            others = list(self._members.values())
            self._members[node] = member

        def announce() -> None:
            for other in others:
                self._system.tell(other.gateway, convention_update(member.admin, member.caps, True))
                self._system.tell(gateway, convention_update(other.admin, other.caps, True))

        self.call(announce)
        return sorted(other.node for other in others)

    def leave(self, node: str, inc: str, delay: float = 0.0) -> None:
        """Stop the node's gateway; tell the others it left (after ``delay`` seconds)."""
        with self._lock:
            member = self._members.get(node)
            if member is None or member.inc != inc:
                return
            del self._members[node]
            if self._closed:
                return

        def stop() -> None:
            self._system.tell(member.gateway, exit_request())

        def announce() -> None:
            with self._lock:
                others = list(self._members.values())
            for other in others:
                self._system.tell(
                    other.gateway, convention_update(member.admin, member.caps, False)
                )

        self.call(stop)
        if delay > 0:
            self._timers.schedule(delay, None, lambda: self._queue(announce))
        else:
            self.call(announce)

    def _queue(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the pump thread soon (never blocks)."""
        with self._lock:
            if not self._closed:
                self._calls.put(task)
        self.kick()

    def crash(self, node: str, inc: str) -> None:
        """Stop the node's gateway now; the others hear it left after ``failure_timeout``."""
        self.leave(node, inc, self.failure_timeout)

    def close(self) -> None:
        """Stop the pump and the shared system; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._timers.close()
        self.kick()
        if self._pump is not threading.current_thread():
            self._pump.join(2.0)
        try:
            self._system.shutdown()
        except Exception:
            _log.debug("shutting the simpleSystemBase down failed", exc_info=True)

    def __enter__(self) -> InProcessConvention:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pump -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._kick.wait(_IDLE_SECONDS)
            self._kick.clear()
            while True:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                call()
            with self._lock:
                if self._closed:
                    break
            try:
                self._system.listen(None)
            except Exception:
                _log.exception("the simpleSystemBase pump failed")
        while True:  # run what was queued before the close
            try:
                self._calls.get_nowait()()
            except queue.Empty:
                return
