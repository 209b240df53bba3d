"""dstate on Pykka: an :class:`~dstate_core.runtime.ActorRuntime` on Pykka threads.

Build an in-process cluster by giving several runtimes one network::

    network = PykkaNetwork(failure_timeout=5.0)
    runtimes = [PykkaRuntime(node_id, network) for node_id in ("a", "b", "c")]
    ...
    network.close()  # shuts every runtime down

or one node per process, over the network (``docs/network.md``)::

    network = TcpNetwork("a", "10.0.0.1:7100", seeds=["10.0.0.2:7100"], cluster_secret=secret)
    runtime = PykkaRuntime("a", network=network)

``python -m dstate_pykka node`` runs such a node as a process.
"""

from dstate_core.runtime import ScheduledTimer

from ._actor import PykkaActorRef
from ._cluster import PykkaCluster, local_cluster
from ._network import PykkaNetwork
from ._process import PykkaNodeHandle
from ._runtime import PykkaRuntime

__all__ = [
    "PykkaActorRef",
    "PykkaCluster",
    "PykkaNetwork",
    "PykkaNodeHandle",
    "PykkaRuntime",
    "ScheduledTimer",
    "local_cluster",
]
