"""What a shard needs of its node: the port a :class:`~dstate_core.shell.DStateNode` fills."""

from __future__ import annotations

from typing import Protocol

from ..model._clock import Clock
from ..runtime._protocol import ActorRuntime
from ..wire._messages import ChangeNotification

__all__ = ["ShardHost"]


class ShardHost(Protocol):
    """What a shard needs of its node (a :class:`~dstate_core.shell.DStateNode`)."""

    @property
    def node_id(self) -> str:
        """The node's id."""
        ...

    @property
    def runtime(self) -> ActorRuntime:
        """The runtime the shard's actors run on."""
        ...

    @property
    def clock(self) -> Clock:
        """The node's clock."""
        ...

    def _broadcast(self, data: bytes) -> None:
        """Send bytes to every peer's inbox."""
        ...

    def _send_to(self, node_id: str, data: bytes) -> None:
        """Send bytes to one peer's inbox."""
        ...

    def _announce(self, note: ChangeNotification) -> None:
        """Hand a change notification to the node's change feed."""
        ...

    def _feed_batches_for(self, state_name: str) -> int:
        """How many feed batches carried ``state_name``."""
        ...
