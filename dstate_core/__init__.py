"""dstate: replicated, sharded application state for actor-based services.

Each node owns one shard of every registered state and reads every other
node's shard from local memory; the library keeps those views fresh.
"""

from ._clock import Clock, SystemClock
from ._config import (
    ChangeFeedConfig,
    PushMode,
    StateConfig,
    SyncStrategy,
    VersionMismatchPolicy,
)
from ._diagnostics import (
    HealthStatus,
    PeerSyncStatus,
    StateHealth,
    StateSyncMetrics,
    SystemHealth,
)
from ._errors import (
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
from ._file_persistence import FilePersistence
from ._generation import Generation, StateObject, StateViewObject
from ._incarnation_store import IncarnationFile
from ._node import DStateNode
from ._persistence import StatePersistence
from ._runtime import (
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
from ._shard import Projection, Shard, Subscription, ViewCallback
from ._sqlite_persistence import SqlitePersistence
from ._state import DeltaDistributedState, DistributedState
from ._urgency import SyncUrgency
from ._wire import DecodeReason, WireDecodeError

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
