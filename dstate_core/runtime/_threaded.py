"""In-process thread actors: one daemon thread and one FIFO queue per actor.

A framework-neutral building block for runtimes whose own actors cannot hold
dstate's engine in the caller's memory (for example because they live in other
processes): the runtime spawns its *local* actors here and uses its framework
only for the traffic between nodes.

* Each :class:`ThreadedActor` handles one message at a time, in the order queued.
* ``ask`` returns the handler's value and awaits a :class:`PendingReply` too; a
  handler's exception is logged, the actor lives on, and ``ask`` re-raises it.
* After ``stop()`` every send raises :class:`ActorSendError`; queued messages are
  discarded and queued asks fail with it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .._logs import AnyLogger, NodeLog
from ..model._errors import ActorSendError
from ._protocol import ActorAskTimeout, Handler, PendingReply, check_positive_seconds

__all__ = ["ActorOwner", "ThreadedActor", "ThreadedActorHost", "ThreadedActorRef"]


class _Ask:
    """A queued ask: the actor resolves ``reply`` with the handler's value (or error)."""

    __slots__ = ("msg", "reply")

    def __init__(self, msg: Any) -> None:
        self.msg = msg
        self.reply = PendingReply()


_STOP = object()


class ThreadedActor:
    """One actor: a daemon thread that runs ``handler`` for each queued message.

    Args:
        name: the actor's name (unique within its host).
        handler: called with each message; its value answers an ``ask``.
        owner: the host's owner (a node id), used in names and log records.
        log: where handler failures are logged.
        on_stop: called once on the actor's thread when it stops (may be ``None``).

    Concurrency: ``tell``, ``ask`` and ``stop`` are thread-safe; ``tell`` never
    blocks; ``ask`` blocks the caller (an actor asking itself gets RuntimeError).
    """

    __slots__ = (
        "_handler",
        "_lock",
        "_log",
        "_on_stop",
        "_queue",
        "_stopped",
        "_thread",
        "name",
        "owner",
    )

    def __init__(
        self,
        name: str,
        handler: Handler,
        owner: str,
        log: AnyLogger,
        on_stop: Callable[[ThreadedActor], None] | None = None,
    ) -> None:
        self.name = name
        self.owner = owner
        self._handler = handler
        self._log = log
        self._on_stop = on_stop
        self._lock = threading.Lock()
        self._stopped = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"dstate-{owner}-{name}", daemon=True
        )
        self._thread.start()

    def describe(self) -> str:
        """``actor 'name' on node 'owner'`` (for messages)."""
        return f"actor {self.name!r} on node {self.owner!r}"

    @property
    def alive(self) -> bool:
        """False once :meth:`stop` was called (or the handler raised a BaseException)."""
        return not self._stopped

    @property
    def on_own_thread(self) -> bool:
        """True when called from this actor's handler thread."""
        return threading.current_thread() is self._thread

    def tell(self, msg: Any) -> None:
        """Queue ``msg``.

        Raises:
            ActorSendError: the actor is stopped.
        """
        self._put(msg)

    def ask(self, msg: Any, timeout: float) -> Any:
        """Queue ``msg`` and wait for the handler's value (a :class:`PendingReply` is awaited).

        Raises:
            ActorAskTimeout: no reply within ``timeout`` seconds.
            ActorSendError: the actor is stopped (or stops before replying).
            RuntimeError: the actor asked itself (that could only time out).
            Exception: whatever the handler raised.
        """
        seconds = check_positive_seconds("timeout", timeout)
        if self.on_own_thread:
            raise RuntimeError(f"{self.describe()} cannot ask itself from its own handler")
        deadline = time.monotonic() + seconds
        request = _Ask(msg)
        self._put(request)
        if not request.reply.wait(seconds):
            raise self._timeout(seconds)
        value = request.reply.result()
        if isinstance(value, PendingReply):
            if not value.wait(max(0.0, deadline - time.monotonic())):
                raise self._timeout(seconds)
            value = value.result()
        return value

    def stop(self) -> None:
        """Stop the actor; idempotent and non-blocking. Queued messages are discarded."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(_STOP)

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end (no-op on its own thread); True if it ended."""
        if self.on_own_thread:
            return False
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _put(self, item: Any) -> None:
        with self._lock:
            if self._stopped:
                raise ActorSendError(f"{self.describe()} is stopped")
            self._queue.put(item)

    def _timeout(self, seconds: float) -> ActorAskTimeout:
        return ActorAskTimeout(f"no reply from {self.describe()} within {seconds:g} s")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if self._stopped:
                if isinstance(item, _Ask):
                    item.reply.fail(ActorSendError(f"{self.describe()} stopped before it replied"))
                break
            self._handle(item)
        self._drain()
        if self._on_stop is not None:
            try:
                self._on_stop(self)
            except Exception:
                self._log.exception("on_stop of %s failed", self.describe())

    def _handle(self, item: Any) -> None:
        is_ask = isinstance(item, _Ask)
        msg = item.msg if is_ask else item
        try:
            value = self._handler(msg)
        except Exception as exc:
            kind = "an ask" if is_ask else "a message"
            self._log.error(
                "handler of %s raised on %s: %r", self.describe(), kind, exc, exc_info=True
            )
            if is_ask:
                item.reply.fail(exc)
            return
        except BaseException as exc:  # SystemExit and the like: stop this actor only
            self._log.error("handler of %s raised %r; stopping it", self.describe(), exc)
            if is_ask:
                item.reply.fail(exc)
            self.stop()
            return
        if is_ask:
            item.reply.resolve(value)

    def _drain(self) -> None:
        """Fail the asks still queued after a stop (plain messages are dropped)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Ask):
                item.reply.fail(ActorSendError(f"{self.describe()} stopped before it replied"))

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<ThreadedActor {self.name!r}@{self.owner!r} {state}>"


class ThreadedActorHost:
    """The running thread actors of one node, by name.

    Args:
        owner: the node id (thread names, log records).
        log: the logger for handler failures (default ``dstate.actors``, naming the node).

    Concurrency: thread-safe. A name is free again once its actor was stopped.
    """

    def __init__(self, owner: str, log: AnyLogger | None = None) -> None:
        self._owner = owner
        self._log = log or NodeLog("dstate.actors", owner)
        self._lock = threading.Lock()
        self._actors: dict[str, ThreadedActor] = {}
        self._closed = False

    def spawn(self, name: str, handler: Handler) -> ThreadedActor:
        """Start an actor called ``name``.

        Raises:
            ValueError: ``name`` is used by a running actor of this host.
            ActorSendError: the host was closed.
        """
        with self._lock:
            if self._closed:
                raise ActorSendError(f"the actors of node {self._owner!r} are shut down")
            if name in self._actors:
                raise ValueError(f"an actor named {name!r} is already running on {self._owner!r}")
            actor = ThreadedActor(name, handler, self._owner, self._log, self._forget)
            self._actors[name] = actor
            return actor

    def get(self, name: str) -> ThreadedActor | None:
        """The running actor called ``name``, if any."""
        with self._lock:
            actor = self._actors.get(name)
        return actor if actor is not None and actor.alive else None

    def names(self) -> list[str]:
        """Names of the running actors, sorted."""
        with self._lock:
            return sorted(name for name, actor in self._actors.items() if actor.alive)

    def stop(self, actor: ThreadedActor) -> None:
        """Stop ``actor`` and free its name at once; idempotent."""
        self._forget(actor)
        actor.stop()

    def close(self, wait: float) -> list[ThreadedActor]:
        """Stop every actor and wait up to ``wait`` seconds in all for their threads.

        Returns the actors whose threads were still busy when the wait ended.
        Idempotent; the calling thread's own actor is never waited for.
        """
        with self._lock:
            self._closed = True
            actors = list(self._actors.values())
            self._actors.clear()
        for actor in actors:
            actor.stop()
        deadline = time.monotonic() + wait
        busy = []
        for actor in actors:
            if actor.on_own_thread:
                continue
            if not actor.join(deadline - time.monotonic()):
                busy.append(actor)
        return busy

    def _forget(self, actor: ThreadedActor) -> None:
        with self._lock:
            if self._actors.get(actor.name) is actor:
                del self._actors[actor.name]


class ActorOwner(Protocol):
    """The runtime that spawned a :class:`ThreadedActor`."""

    def stop_actor(self, actor: ThreadedActor) -> None:
        """Stop ``actor`` and take it out of the runtime's groups; idempotent."""
        ...


class ThreadedActorRef:
    """A handle to a :class:`ThreadedActor` of this node: any message, no wire.

    Args:
        actor: the actor.
        owner: the runtime that spawned it (stopping goes through it).

    Refs to the same actor compare equal. Concurrency: thread-safe; ``send``
    never blocks, ``ask`` blocks the caller.
    """

    __slots__ = ("_actor", "_owner")

    def __init__(self, actor: ThreadedActor, owner: ActorOwner) -> None:
        self._actor = actor
        self._owner = owner

    @property
    def actor(self) -> ThreadedActor:
        """The actor behind this ref."""
        return self._actor

    @property
    def owner(self) -> ActorOwner:
        """The runtime that spawned the actor."""
        return self._owner

    @property
    def node_id(self) -> str:
        """The node that hosts the actor."""
        return self._actor.owner

    @property
    def name(self) -> str:
        """The name the actor was spawned with."""
        return self._actor.name

    @property
    def is_local(self) -> bool:
        """Always True: the actor runs in this process."""
        return True

    @property
    def alive(self) -> bool:
        """False once the actor was stopped."""
        return self._actor.alive

    def check_message(self, msg: Any) -> None:
        """Any message may go to a local actor."""

    def send(self, msg: Any) -> None:
        """Queue ``msg``.

        Raises:
            ActorSendError: the actor is stopped.
        """
        self._actor.tell(msg)

    def ask(self, msg: Any, timeout: float) -> Any:
        """Queue ``msg`` and wait for the reply (see :meth:`ThreadedActor.ask`)."""
        return self._actor.ask(msg, timeout)

    def stop(self) -> None:
        """Stop the actor and take it out of its groups; idempotent."""
        self._owner.stop_actor(self._actor)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ThreadedActorRef):
            return NotImplemented
        return self._actor is other._actor

    def __hash__(self) -> int:
        return hash(id(self._actor))

    def __repr__(self) -> str:
        return f"<ThreadedActorRef {self._actor.name!r}@{self._actor.owner!r} local>"
