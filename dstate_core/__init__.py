"""dstate: replicated, sharded application state for actor-based services.

Each node owns one shard of every registered state and reads every other
node's shard from local memory; the library keeps those views fresh.
"""

from .model._clock import Clock, SystemClock
from .model._config import (
    ChangeFeedConfig,
    PushMode,
    StateConfig,
    SyncStrategy,
    VersionMismatchPolicy,
)
from .model._diagnostics import (
    HealthStatus,
    PeerSyncStatus,
    StateHealth,
    StateSyncMetrics,
    SystemHealth,
)
from .model._errors import (
    ActorSendError,
    DeserializeError,
    DStateError,
    DuplicateNameError,
    ForeignRecordError,
    MutationError,
    NewerRecordError,
    NodeShutdownError,
    PersistError,
    QueryError,
    QueryTimeoutError,
    RegistryError,
    StalePeerError,
    StateNotRegisteredError,
    TypeMismatchError,
)
from .model._generation import Generation, StateObject, StateViewObject
from .model._persistence import StatePersistence
from .model._state import DeltaDistributedState, DistributedState
from .model._urgency import SyncUrgency
from .persistence._file import FilePersistence
from .persistence._incarnations import IncarnationFile
from .persistence._sqlite import SqlitePersistence
from .runtime._protocol import (
    ActorAskTimeout,
    ActorRef,
    ActorRuntime,
    ClusterEvent,
    ClusterEvents,
    Handler,
    NodeJoined,
    NodeLeft,
    PendingReply,
    SubscriptionId,
    TimerHandle,
)
from .shell._node import DStateNode
from .shell._shard import Projection, Shard, Subscription, ViewCallback
from .wire._codec import DecodeReason, WireDecodeError

__all__ = [
    "ActorAskTimeout",
    "ActorRef",
    "ActorRuntime",
    "ActorSendError",
    "ChangeFeedConfig",
    "Clock",
    "ClusterEvent",
    "ClusterEvents",
    "DStateError",
    "DStateNode",
    "DecodeReason",
    "DeltaDistributedState",
    "DeserializeError",
    "DistributedState",
    "DuplicateNameError",
    "FilePersistence",
    "ForeignRecordError",
    "Generation",
    "Handler",
    "HealthStatus",
    "IncarnationFile",
    "MutationError",
    "NewerRecordError",
    "NodeJoined",
    "NodeLeft",
    "NodeShutdownError",
    "PeerSyncStatus",
    "PendingReply",
    "PersistError",
    "Projection",
    "PushMode",
    "QueryError",
    "QueryTimeoutError",
    "RegistryError",
    "Shard",
    "SqlitePersistence",
    "StalePeerError",
    "StateConfig",
    "StateHealth",
    "StateNotRegisteredError",
    "StateObject",
    "StatePersistence",
    "StateSyncMetrics",
    "StateViewObject",
    "Subscription",
    "SubscriptionId",
    "SyncStrategy",
    "SyncUrgency",
    "SystemClock",
    "SystemHealth",
    "TimerHandle",
    "TypeMismatchError",
    "VersionMismatchPolicy",
    "ViewCallback",
    "WireDecodeError",
]
