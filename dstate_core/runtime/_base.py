"""The argument checks every runtime makes, written once.

:class:`RuntimeBase` validates a runtime's node id at construction, and the
arguments of ``spawn`` and ``broadcast_group`` before handing them to the
subclass (``_spawn``, ``_broadcast``); after :meth:`RuntimeBase._mark_closed`
every operation that needs a running runtime raises
:class:`~dstate_core.model.NodeShutdownError`, naming what was attempted.
"""

from __future__ import annotations

from typing import Any

from ..model._errors import NodeShutdownError
from ._protocol import ActorRef, Handler

__all__ = ["RuntimeBase", "check_actor_name", "check_bytes", "check_handler", "check_node_id"]


def check_node_id(node_id: object, reserved: tuple[str, ...] = ()) -> str:
    """A runtime's node id: a non-empty ``str`` (and none of ``reserved``).

    Raises:
        ValueError: anything else.
    """
    if not isinstance(node_id, str) or not node_id or node_id in reserved:
        other = f" other than {', '.join(map(repr, reserved))}" if reserved else ""
        raise ValueError(f"node_id must be a non-empty str{other}, got {node_id!r}")
    return node_id


def check_actor_name(name: object) -> str:
    """An actor's name: a non-empty ``str``.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"actor name must be a non-empty str, got {name!r}")
    return name


def check_handler(handler: object) -> None:
    """Raise :class:`TypeError` unless ``handler`` is callable."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {type(handler).__name__}")


def check_bytes(group: str, msg: Any) -> bytes:
    """A message for a group's members on other nodes: it must be ``bytes``.

    Raises:
        TypeError: anything else.
    """
    if not isinstance(msg, bytes):
        raise TypeError(f"broadcast_group({group!r}) needs bytes, got {type(msg).__name__}")
    return msg


class RuntimeBase:
    """The shared front of a runtime: identity, shutdown state, checked arguments.

    Args:
        node_id: unique in the cluster.
        reserved: node ids the runtime cannot take (e.g. a transport's wildcard).

    Raises:
        ValueError: ``node_id`` is empty, not a str, or reserved.

    Concurrency: thread-safe; the shutdown flag is a single attribute write.
    """

    #: Local actors run on threads of this process, so a caller's thread may do a
    #: shard's work itself under the shard's lock (a blocking ``mutate`` then needs no
    #: hand-off to the actor). False for a runtime that runs handlers in its own
    #: order (the deterministic one), where every change goes through the mailbox.
    threaded: bool = False

    def __init__(self, node_id: str, *, reserved: tuple[str, ...] = ()) -> None:
        self._node_id = check_node_id(node_id, reserved)
        self._closed = False

    @property
    def node_id(self) -> str:
        """This node's id, unique in the cluster."""
        return self._node_id

    @property
    def is_shut_down(self) -> bool:
        """True after ``shutdown()`` (or a simulated crash)."""
        return self._closed

    def spawn(self, name: str, handler: Handler) -> ActorRef:
        """Start an actor that runs ``handler`` for each message, one at a time.

        Raises:
            ValueError: ``name`` is empty or used by a running actor of this runtime.
            TypeError: ``handler`` is not callable.
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open(f"spawn actor {name!r}")
        check_actor_name(name)
        check_handler(handler)
        return self._spawn(name, handler)

    def broadcast_group(self, name: str, msg: Any) -> None:
        """Send ``msg`` (bytes) to every member of group ``name`` on other nodes.

        Raises:
            TypeError: ``msg`` is not ``bytes``.
            NodeShutdownError: the runtime was shut down.
        """
        self._check_open(f"broadcast to group {name!r}")
        self._broadcast(name, check_bytes(name, msg))

    def _spawn(self, name: str, handler: Handler) -> ActorRef:
        """Start the actor (arguments checked)."""
        raise NotImplementedError

    def _broadcast(self, name: str, msg: bytes) -> None:
        """Send ``msg`` to the group's members on other nodes (arguments checked)."""
        raise NotImplementedError

    def _mark_closed(self) -> bool:
        """Flag the runtime as shut down; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        return True

    def _check_open(self, what: str) -> None:
        """Raise :class:`NodeShutdownError` saying ``what`` cannot be done once shut down."""
        if self._closed:
            raise NodeShutdownError(f"runtime {self._node_id!r} is shut down; cannot {what}")
