"""dstate on Pykka: an :class:`~dstate_core.runtime.ActorRuntime` on Pykka threads.

Build an in-process cluster by giving several runtimes one network::

    network = PykkaNetwork(failure_timeout=5.0)
    runtimes = [PykkaRuntime(node_id, network) for node_id in ("a", "b", "c")]
    ...
    network.close()  # shuts every runtime down
"""

from dstate_core.runtime import ScheduledTimer

from ._actor import PykkaActorRef
from ._cluster import PykkaCluster, local_cluster
from ._network import PykkaNetwork
from ._runtime import PykkaRuntime

__all__ = [
    "PykkaActorRef",
    "PykkaCluster",
    "PykkaNetwork",
    "PykkaRuntime",
    "ScheduledTimer",
    "local_cluster",
]
