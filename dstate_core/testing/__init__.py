"""Test kit: deterministic clock, runtime and cluster, persistence doubles, sample states.

``local_cluster`` here is fully deterministic: one :class:`TestClock`, a seeded
in-memory network, and explicit driving (``run_until_idle``, ``advance``).
"""

from ._clock import TestClock
from ._cluster import DeterministicCluster, local_cluster
from ._cluster_base import ClusterNetwork, LocalClusterBase
from ._persistence import FailingPersistence, InMemoryPersistence
from ._runtime import TestRuntime
from ._simnet import SimNetwork
from ._states import (
    TestDeltaChange,
    TestDeltaDelta,
    TestDeltaState,
    TestDeltaView,
    TestState,
    UrgentDeltaState,
)

__all__ = [
    "ClusterNetwork",
    "DeterministicCluster",
    "FailingPersistence",
    "InMemoryPersistence",
    "LocalClusterBase",
    "SimNetwork",
    "TestClock",
    "TestDeltaChange",
    "TestDeltaDelta",
    "TestDeltaState",
    "TestDeltaView",
    "TestRuntime",
    "TestState",
    "UrgentDeltaState",
    "local_cluster",
]
