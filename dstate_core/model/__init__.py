"""The state model: what users subclass and configure, and what every layer shares.

State types (:class:`DistributedState`, :class:`DeltaDistributedState`), their
versions (:class:`Generation`) and envelopes (:class:`StateObject`,
:class:`StateViewObject`), sync urgency, configuration, the time port
(:class:`Clock`), the error hierarchy and the diagnostics records. Nothing here
does I/O or knows about actors.
"""

from ._clock import Clock, SystemClock
from ._config import (
    ChangeFeedConfig,
    PushMode,
    StateConfig,
    SyncStrategy,
    VersionMismatchPolicy,
)
from ._copy import copy_model
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
from ._generation import Generation, IncarnationSource, StateObject, StateViewObject
from ._persistence import StatePersistence
from ._state import DeltaDistributedState, DistributedState, validate_state_type
from ._urgency import SyncUrgency

__all__ = [
    "ActorSendError",
    "ChangeFeedConfig",
    "Clock",
    "DStateError",
    "DeltaDistributedState",
    "DeserializeError",
    "DistributedState",
    "DuplicateNameError",
    "ForeignRecordError",
    "Generation",
    "HealthStatus",
    "IncarnationSource",
    "MutationError",
    "NewerRecordError",
    "NodeShutdownError",
    "PeerSyncStatus",
    "PersistError",
    "PushMode",
    "QueryError",
    "QueryTimeoutError",
    "RegistryError",
    "StalePeerError",
    "StateConfig",
    "StateHealth",
    "StateNotRegisteredError",
    "StateObject",
    "StatePersistence",
    "StateSyncMetrics",
    "StateViewObject",
    "SyncStrategy",
    "SyncUrgency",
    "SystemClock",
    "SystemHealth",
    "TypeMismatchError",
    "VersionMismatchPolicy",
    "copy_model",
    "validate_state_type",
]
