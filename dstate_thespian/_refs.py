"""``ThespianActorRef``: a handle to a local thread actor or to an actor on another node (SPEC §8).

A local ref wraps the :class:`~dstate_core.runtime._threaded.ThreadedActor` in this
process and carries any object. A remote ref is only ``(node, name)`` as seen
from one runtime (its *origin*): its messages must be ``bytes`` and travel as
parcels through the origin's gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dstate_core.model import DStateError
from dstate_core.runtime import ThreadedActor

if TYPE_CHECKING:
    from ._runtime import ThespianRuntime

__all__ = ["RemoteAskError", "ThespianActorRef"]


class RemoteAskError(DStateError):
    """An ask to an actor on another node failed there (the reason is in the message)."""


class ThespianActorRef:
    """A handle to one actor, as seen from the runtime ``origin``.

    Refs to the same local actor compare equal; remote refs compare by
    ``(node_id, name)``.

    Concurrency: thread-safe; ``send`` never blocks, ``ask`` blocks the caller.
    """

    __slots__ = ("_actor", "_name", "_node", "_origin")

    def __init__(
        self, origin: ThespianRuntime, node_id: str, name: str, actor: ThreadedActor | None
    ) -> None:
        self._origin = origin
        self._node = node_id
        self._name = name
        self._actor = actor

    @property
    def node_id(self) -> str:
        """The node that hosts the actor."""
        return self._node

    @property
    def name(self) -> str:
        """The name the actor was spawned with."""
        return self._name

    @property
    def is_local(self) -> bool:
        """True when the actor runs in the origin runtime's process."""
        return self._actor is not None

    @property
    def alive(self) -> bool:
        """A local actor: not stopped. A remote one: its node is joined as seen from the origin."""
        if self._actor is not None:
            return self._actor.alive
        return self._origin._is_joined(self._node)

    def check_message(self, msg: Any) -> None:
        """Raise :class:`TypeError` if ``msg`` would cross nodes and is not ``bytes``."""
        if self._actor is None and not isinstance(msg, bytes):
            raise TypeError(
                f"a message to actor {self._name!r} on node {self._node!r} from node "
                f"{self._origin.node_id!r} crosses nodes and must be bytes, "
                f"not {type(msg).__name__}"
            )

    def send(self, msg: Any) -> None:
        """Fire and forget; a cross-node message is lost silently if the peer is unreachable.

        Raises:
            ActorSendError: a local actor is stopped.
            TypeError: a non-``bytes`` message to an actor on another node.
            NodeShutdownError: a cross-node send from a runtime that was shut down.
        """
        if self._actor is not None:
            self._actor.tell(msg)
            return
        self.check_message(msg)
        self._origin._send_remote(self._node, self._name, msg)

    def ask(self, msg: Any, timeout: float) -> Any:
        """Send and wait for the reply (a :class:`PendingReply` is awaited too).

        A remote actor's reply must be ``bytes``; a failure there raises
        :class:`RemoteAskError` here.

        Raises:
            ActorAskTimeout: no reply within ``timeout`` seconds (also when the
                request or its reply is lost on the way).
            ActorSendError: a local actor is stopped (or stops before replying).
            TypeError: a non-``bytes`` message to an actor on another node.
            NodeShutdownError: a cross-node ask from a runtime that was shut down.
            RuntimeError: an actor asked itself.
            Exception: whatever a local handler raised.
        """
        if self._actor is not None:
            return self._actor.ask(msg, timeout)
        self.check_message(msg)
        return self._origin._ask_remote(self._node, self._name, msg, timeout)

    def stop(self) -> None:
        """Stop a local actor and remove it from its groups; idempotent.

        Raises:
            ValueError: the actor runs on another node (stop it there).
        """
        if self._actor is None:
            raise ValueError(f"cannot stop actor {self._name!r} on node {self._node!r} from here")
        self._origin._stop_actor(self._actor)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ThespianActorRef):
            return NotImplemented
        if self._actor is not None or other._actor is not None:
            return self._actor is other._actor
        return (self._node, self._name) == (other._node, other._name)

    def __hash__(self) -> int:
        return hash((self._node, self._name))

    def __repr__(self) -> str:
        where = "local" if self._actor is not None else f"from {self._origin.node_id!r}"
        return f"<ThespianActorRef {self._name!r}@{self._node!r} {where}>"
