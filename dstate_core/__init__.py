"""dstate: replicated, sharded application state for actor-based services."""

from ._clock import Clock, SystemClock
from ._config import (
    ChangeFeedConfig,
    PushMode,
    StateConfig,
    SyncStrategy,
    VersionMismatchPolicy,
)
from ._errors import (
    ActorSendError,
    DeserializeError,
    DStateError,
    DuplicateNameError,
    MutationError,
    NodeShutdownError,
    PersistError,
    QueryError,
    QueryTimeoutError,
    RegistryError,
    StalePeerError,
    StateNotRegisteredError,
    TypeMismatchError,
)
from ._generation import Generation, StateObject, StateViewObject
from ._persistence import StatePersistence
from ._state import DeltaDistributedState, DistributedState
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
    "Generation",
    "MutationError",
    "NodeShutdownError",
    "PersistError",
    "PushMode",
    "QueryError",
    "QueryTimeoutError",
    "RegistryError",
    "StalePeerError",
    "StateConfig",
    "StateNotRegisteredError",
    "StateObject",
    "StatePersistence",
    "StateViewObject",
    "SyncStrategy",
    "SyncUrgency",
    "SystemClock",
    "TypeMismatchError",
    "VersionMismatchPolicy",
]
