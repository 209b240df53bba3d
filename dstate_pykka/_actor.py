"""Actors and refs of the Pykka runtime (``docs/architecture.md#runtimes``).

Each spawned actor is a :class:`pykka.ThreadingActor` (one thread, one mailbox)
wrapping the user's handler. The wrapper catches everything the handler raises,
so a failure is logged and the actor lives on; an ``ask`` gets the exception
back and re-raises it in the caller. Pykka itself would stop an actor whose
``on_receive`` raises for a ``tell``, and call ``ActorRegistry.stop_all()`` on a
``BaseException`` — which would stop every runtime in the process.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import pykka

from dstate_core.model import ActorSendError
from dstate_core.runtime import (
    ActorAskTimeout,
    Handler,
    NodeLog,
    PendingReply,
    check_positive_seconds,
)

__all__ = ["CellHost", "PykkaActorRef"]


class _Tell:
    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg


class _Ask:
    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg


class _Raised:
    """An ask's reply that carries the handler's exception back to the caller."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class CellHost(Protocol):
    """What an actor and its refs need of a runtime (a :class:`~._runtime.PykkaRuntime`)."""

    @property
    def node_id(self) -> str:
        """The runtime's node id."""
        ...

    def forget(self, cell: _Cell) -> None:
        """Drop a stopping actor from the runtime's names and groups."""
        ...

    def route(self, cell: _Cell, msg: bytes) -> bool:
        """Count a cross-node message from this runtime to ``cell``; False if it is lost.

        Raises:
            NodeShutdownError: this runtime was shut down.
        """
        ...

    def undeliverable(self) -> None:
        """A routed message found its target stopped at the mailbox."""
        ...


class _Cell:
    """One spawned actor: its host runtime, name and Pykka ref."""

    __slots__ = ("name", "pykka_ref", "runtime", "stop_future", "stopped", "thread_ident")

    def __init__(self, runtime: CellHost, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.stopped = threading.Event()
        self.thread_ident: int | None = None
        self.pykka_ref: pykka.ActorRef[Any] | None = None
        self.stop_future: pykka.Future[bool] | None = None

    def describe(self) -> str:
        return f"actor {self.name!r} on node {self.runtime.node_id!r}"

    def put(self, envelope: _Tell | _Ask) -> pykka.Future[Any] | None:
        """Queue ``envelope``; returns the reply future for an ask.

        Raises:
            ActorSendError: the actor is stopped.
        """
        ref = self.pykka_ref
        if self.stopped.is_set() or ref is None:
            raise ActorSendError(f"{self.describe()} is stopped")
        try:
            if isinstance(envelope, _Ask):
                return ref.ask(envelope, block=False)
            ref.tell(envelope)
        except pykka.ActorDeadError:
            raise ActorSendError(f"{self.describe()} is stopped") from None
        return None

    def tell(self, msg: Any) -> None:
        """Queue ``msg`` (a message from another node).

        Raises:
            ActorSendError: the actor is stopped.
        """
        self.put(_Tell(msg))

    def ask(self, msg: Any, timeout: float) -> Any:
        """Queue ``msg`` and wait for the handler's reply (an ask from another node)."""
        return PykkaActorRef(self, self.runtime).ask(msg, timeout)

    def stop(self) -> None:
        """Mark stopped (new sends fail, queued messages are dropped) and stop Pykka's actor."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.pykka_ref is not None:
            self.stop_future = self.pykka_ref.stop(block=False)


class _HandlerActor(pykka.ThreadingActor):
    """Runs ``handler`` for each message; never lets an exception reach Pykka.

    Concurrency: runs on its own daemon thread; a message queued before a stop
    is discarded (an ask among them gets :class:`ActorSendError`).
    """

    use_daemon_thread = True

    def __init__(self, cell: _Cell, handler: Handler) -> None:
        super().__init__()
        self._cell = cell
        self._handler = handler

    def on_start(self) -> None:
        self._cell.thread_ident = threading.get_ident()

    def on_receive(self, message: Any) -> Any:
        cell = self._cell
        is_ask = isinstance(message, _Ask)
        if cell.stopped.is_set():
            return _Raised(ActorSendError(f"{cell.describe()} stopped")) if is_ask else None
        try:
            result = self._handler(message.msg)
        except Exception as exc:
            kind = "an ask" if is_ask else "a message"
            NodeLog("dstate.pykka", cell.runtime.node_id).error(
                "handler of %s raised on %s: %r", cell.describe(), kind, exc, exc_info=True
            )
            return _Raised(exc) if is_ask else None
        except BaseException as exc:  # SystemExit and the like: stop this actor only
            NodeLog("dstate.pykka", cell.runtime.node_id).error(
                "handler of %s raised %r; stopping it", cell.describe(), exc, exc_info=True
            )
            cell.runtime.forget(cell)
            cell.stop()
            return _Raised(exc) if is_ask else None
        return result if is_ask else None


class PykkaActorRef:
    """A handle to one actor, as seen from one runtime (its *origin*).

    A ref whose origin is the actor's own runtime is local and carries any
    object; otherwise messages cross nodes through the :class:`PykkaNetwork`
    and must be ``bytes``. Refs to the same actor compare equal whatever their
    origin.

    Concurrency: thread-safe; ``send`` never blocks, ``ask`` blocks the caller
    (never call it from a handler on the actor it asks).
    """

    __slots__ = ("_cell", "_origin")

    def __init__(self, cell: _Cell, origin: CellHost) -> None:
        self._cell = cell
        self._origin = origin

    @property
    def node_id(self) -> str:
        """The node that hosts the actor."""
        return self._cell.runtime.node_id

    @property
    def name(self) -> str:
        """The name the actor was spawned with."""
        return self._cell.name

    @property
    def is_local(self) -> bool:
        """True when the ref's origin runtime hosts the actor."""
        return self._cell.runtime is self._origin

    @property
    def alive(self) -> bool:
        """False once the actor was stopped (or its node shut down or crashed, or Pykka's
        ``ActorRegistry.stop_all()`` stopped it)."""
        ref = self._cell.pykka_ref
        return not self._cell.stopped.is_set() and (ref is None or ref.is_alive())

    def check_message(self, msg: Any) -> None:
        """Raise :class:`TypeError` if ``msg`` would cross nodes and is not ``bytes``."""
        if not self.is_local and not isinstance(msg, bytes):
            raise TypeError(
                f"a message to {self._cell.describe()} from node {self._origin.node_id!r} "
                f"crosses nodes and must be bytes, not {type(msg).__name__}"
            )

    def send(self, msg: Any) -> None:
        """Fire and forget.

        A cross-node message that meets a partition, a departed node or a
        stopped actor is lost silently, as on a real network.

        Raises:
            ActorSendError: a local actor is stopped.
            TypeError: a non-``bytes`` message to an actor on another node.
            NodeShutdownError: a cross-node send from a runtime that was shut down.
        """
        self.check_message(msg)
        if self.is_local:
            self._cell.put(_Tell(msg))
            return
        if self._origin.route(self._cell, msg):
            try:
                self._cell.put(_Tell(msg))
            except ActorSendError:
                self._origin.undeliverable()

    def ask(self, msg: Any, timeout: float) -> Any:
        """Send and wait for the handler's reply (a :class:`PendingReply` is awaited too).

        Raises:
            ActorAskTimeout: no reply within ``timeout`` seconds (also when a
                cross-node request is lost, e.g. to a partition).
            ActorSendError: a local actor is stopped (or stops before replying).
            TypeError: a non-``bytes`` message to an actor on another node.
            NodeShutdownError: a cross-node ask from a runtime that was shut down.
            RuntimeError: an actor asked itself (that could only time out).
            Exception: whatever the handler raised.
        """
        seconds = check_positive_seconds("timeout", timeout)
        if self._cell.thread_ident == threading.get_ident():
            raise RuntimeError(f"{self._cell.describe()} cannot ask itself from its own handler")
        deadline = time.monotonic() + seconds
        self.check_message(msg)
        future = self._put_ask(msg)
        if future is None:
            self._wait_out(deadline)
            raise self._timeout(seconds)
        try:
            reply = future.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:
            raise self._timeout(seconds) from None
        except pykka.ActorDeadError:
            raise ActorSendError(f"{self._cell.describe()} stopped before it replied") from None
        if isinstance(reply, _Raised):
            raise reply.error
        if isinstance(reply, PendingReply):
            if not reply.wait(max(0.0, deadline - time.monotonic())):
                raise self._timeout(seconds)
            reply = reply.result()
        return reply

    def _put_ask(self, msg: Any) -> pykka.Future[Any] | None:
        """Queue an ask; None when a cross-node request is lost on the way."""
        if self.is_local:
            return self._cell.put(_Ask(msg))
        if not self._origin.route(self._cell, msg):
            return None
        try:
            return self._cell.put(_Ask(msg))
        except ActorSendError:
            self._origin.undeliverable()
            return None

    def stop(self) -> None:
        """Stop the actor and remove it from its groups; idempotent, does not block."""
        self._cell.runtime.forget(self._cell)
        self._cell.stop()

    def _timeout(self, seconds: float) -> ActorAskTimeout:
        return ActorAskTimeout(f"no reply from {self._cell.describe()} within {seconds:g} s")

    @staticmethod
    def _wait_out(deadline: float) -> None:
        """A lost request: the caller only learns of it by timing out."""
        remaining = deadline - time.monotonic()
        if remaining > 0:
            threading.Event().wait(remaining)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PykkaActorRef):
            return NotImplemented
        return self._cell is other._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def __repr__(self) -> str:
        where = "local" if self.is_local else f"from {self._origin.node_id!r}"
        return f"<PykkaActorRef {self._cell.name!r}@{self.node_id!r} {where}>"
