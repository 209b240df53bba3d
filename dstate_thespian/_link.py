"""How a node process talks to its own gateway (``docs/architecture.md#runtimes``).

A *link* owns two directions (parcels queued meanwhile travel as one :class:`Batch`):

* inbound: a receiver thread attaches to the gateway (the gateway then sends
  everything for this node to that thread's endpoint) and loops on
  ``listen()``, handing each message to the runtime;
* outbound: :meth:`post` queues a message for the gateway without blocking.

Thespian hands one ``ActorSystem`` handle's replies to whichever thread asks,
so each thread gets its own ``private()`` endpoint. On multiprocTCPBase a
``tell`` blocks until the bytes are written, so a sender thread does them; on
simpleSystemBase a private ``tell`` only queues and the convention's pump
thread (:mod:`dstate_thespian._in_process`) runs the actors.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dstate_core.runtime import NodeLog

from ._gateway import Attached, Batch, Parcel

if TYPE_CHECKING:
    from ._in_process import InProcessConvention

__all__ = ["Link", "SimpleLink", "TcpLink"]

#: How long one ``listen()`` waits before checking whether the link is closing.
POLL_SECONDS = 0.1
#: At most this many queued parcels travel to the gateway as one :class:`Batch`.
MAX_BATCH = 256

_STOP = object()


class Link:
    """The receiver side shared by both links; subclasses say how to reach the gateway.

    Args:
        gateway: the gateway's Thespian address.
        attach: the first message the receiver sends (an :class:`Attach`).
        on_message: called on the receiver thread with each inbound message.
        name: the node id (thread names).

    Concurrency: ``post`` is thread-safe and never blocks; ``on_message`` runs
    on the single receiver thread, in arrival order.
    """

    def __init__(
        self, gateway: Any, attach: Any, on_message: Callable[[Any], None], name: str
    ) -> None:
        self._gateway = gateway
        self._attach = attach
        self._on_message = on_message
        self._name = name
        self._log = NodeLog("dstate.thespian", name)
        self._stop = threading.Event()
        self._you: Any = None
        self.send_failures = 0
        self._receiver = threading.Thread(
            target=self._receive_loop, name=f"dstate-thespian-rx-{name}", daemon=True
        )

    def start(self) -> None:
        """Start the threads (the receiver attaches at once)."""
        self._receiver.start()

    def post(self, msg: Any) -> None:
        """Send ``msg`` to the gateway, in order with this link's other posts."""
        raise NotImplementedError

    def close(self, wait: float) -> None:
        """Stop the threads (waits at most ``wait`` seconds); messages not sent are dropped."""
        self._stop.set()
        if self._receiver.is_alive() and self._receiver is not threading.current_thread():
            self._receiver.join(wait)

    def _open(self) -> tuple[Any, Callable[[], None]]:
        """A private endpoint for the receiver, and how to close it."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _opened(self, purpose: str) -> Iterator[Any]:
        """A private endpoint for ``purpose``, closed afterwards; None if it cannot open."""
        try:
            endpoint, close = self._open()
        except Exception:
            self._log.exception("cannot open a Thespian endpoint to %s", purpose)
            yield None
            return
        try:
            yield endpoint
        finally:
            try:
                close()
            except Exception:
                self._log.debug("closing the endpoint failed", exc_info=True)

    def _receive_loop(self) -> None:
        with self._opened("receive") as endpoint:
            if endpoint is not None:
                self._receive(endpoint)

    def _receive(self, endpoint: Any) -> None:
        self._tell(endpoint, self._attach)
        while not self._stop.is_set():
            try:
                msg = endpoint.listen(POLL_SECONDS)
            except Exception:
                self._log.exception("listening to its gateway failed")
                self._stop.wait(POLL_SECONDS)
                continue
            if isinstance(msg, Attached):
                self._you = msg.you
            if msg is not None and not self._stop.is_set():
                try:
                    self._on_message(msg)
                except Exception:
                    self._log.exception("an inbound message failed")

    def _tell(self, endpoint: Any, msg: Any) -> None:
        try:
            endpoint.tell(self._gateway, msg)
        except Exception as exc:
            self.send_failures += 1
            self._log.warning("a message to its gateway was lost: %s", exc)


class TcpLink(Link):
    """A link on a multiproc base: a receiver and a sender thread, each with a private endpoint."""

    def __init__(
        self,
        system: Any,
        gateway: Any,
        attach: Any,
        on_message: Callable[[Any], None],
        name: str,
    ) -> None:
        super().__init__(gateway, attach, on_message, name)
        self._system = system
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sender = threading.Thread(
            target=self._send_loop, name=f"dstate-thespian-tx-{name}", daemon=True
        )

    def start(self) -> None:
        """Start both threads."""
        super().start()
        self._sender.start()

    def post(self, msg: Any) -> None:
        """Queue ``msg`` for the sender thread."""
        self._queue.put(msg)

    def close(self, wait: float) -> None:
        """Stop both threads; queued messages are dropped."""
        self._queue.put(_STOP)
        super().close(wait)
        if self._sender.is_alive() and self._sender is not threading.current_thread():
            self._sender.join(wait)

    def _open(self) -> tuple[Any, Callable[[], None]]:
        manager = self._system.private()
        endpoint = manager.__enter__()
        return endpoint, lambda: manager.__exit__(None, None, None)

    def _send_loop(self) -> None:
        with self._opened("send") as endpoint:
            if endpoint is not None:
                self._send(endpoint)

    def _send(self, endpoint: Any) -> None:
        while True:
            msg = self._queue.get()
            batch = [msg]
            while msg is not _STOP and len(batch) < MAX_BATCH:
                try:
                    msg = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(msg)
            if msg is _STOP:
                batch.pop()
            if self._stop.is_set():
                return
            if len(batch) > 1 and all(isinstance(m, Parcel) for m in batch):
                self._tell(endpoint, Batch(tuple(batch)))
            else:
                for item in batch:
                    self._tell(endpoint, item)
            if msg is _STOP:
                return


class SimpleLink(Link):
    """A link on simpleSystemBase: posts queue into the shared system and wake its pump."""

    def __init__(
        self,
        convention: InProcessConvention,
        gateway: Any,
        attach: Any,
        on_message: Callable[[Any], None],
        name: str,
    ) -> None:
        super().__init__(gateway, attach, on_message, name)
        self._convention = convention
        self._endpoint, self._close_endpoint = convention.open_endpoint()

    def post(self, msg: Any) -> None:
        """Queue ``msg`` in the simple system and wake its pump."""
        if not self._stop.is_set():
            self._tell(self._endpoint, msg)

    def close(self, wait: float) -> None:
        """Stop the receiver (a private ``listen`` there only returns on a message: poke it)."""
        self._stop.set()
        if self._you is not None:
            self._convention.poke(self._you)
        super().close(wait)

    def _open(self) -> tuple[Any, Callable[[], None]]:
        return self._endpoint, self._close_endpoint

    def _tell(self, endpoint: Any, msg: Any) -> None:
        super()._tell(endpoint, msg)
        self._convention.kick()
