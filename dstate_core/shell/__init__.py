"""The shells: a node and its shards, carrying the engine's actions out on a runtime.

:class:`DStateNode` owns a node's actors (its network inbox, its change-feed
actor, one actor per registered state) on any
:class:`~dstate_core.runtime.ActorRuntime`; :class:`Shard` is the handle users
hold. They persist before they publish, send what the engine asks, run its
timers and call subscribers; the replication decisions are the engine's.
"""

from ._inbox import InboundRouter
from ._node import INBOX_GROUP, DStateNode
from ._shard import Projection, Shard, Subscription, ViewCallback

__all__ = [
    "INBOX_GROUP",
    "DStateNode",
    "InboundRouter",
    "Projection",
    "Shard",
    "Subscription",
    "ViewCallback",
]
