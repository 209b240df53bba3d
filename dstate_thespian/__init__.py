"""dstate on Thespian: an ``ActorRuntime`` whose nodes span processes and hosts.

A node's shards run as thread actors in its own process (so fast-path queries
read local memory); the traffic between nodes crosses Thespian through one
gateway actor per node, and membership comes from a Thespian convention::

    leader = ThespianRuntime("a", admin_port=1900, host="127.0.0.1")
    member = ThespianRuntime("b", admin_port=1901, host="127.0.0.1",
                             convention_address="127.0.0.1:1900")
    ...
    member.shutdown(); leader.shutdown()

To run a node as its own process, hosting state classes you name and taking
JSON commands on stdin, use ``python -m dstate_thespian node --help``;
:class:`NodeHandle` starts and drives such processes from Python
(``docs/thespian.md``).

Importing this package sets Thespian's convention timing (see
:data:`CONVENTION_TIMING`) unless the environment already does: a killed
member or leader is then reported within about 6 s.

Thespian unpickles every message its TCP ports receive and listens on every
interface (``host`` only sets the address it advertises). Importing this
package makes that unpickling restricted, so no frame can run code (in every
process Thespian forks from here), but Thespian's own messages stay
unauthenticated: run its actor systems on a network only cluster members can
reach (``docs/security.md``).
"""

from dstate_core.process import NodeHandleError
from dstate_core.runtime import RemoteAskError, ScheduledTimer

from ._actor_system import stop_system
from ._cluster import ThespianCluster, local_cluster
from ._in_process import InProcessConvention
from ._process import NodeHandle
from ._runtime import SYSTEM_BASES, ThespianActorRef, ThespianRuntime
from ._thespian import CONVENTION_TIMING

__all__ = [
    "CONVENTION_TIMING",
    "SYSTEM_BASES",
    "InProcessConvention",
    "NodeHandle",
    "NodeHandleError",
    "RemoteAskError",
    "ScheduledTimer",
    "ThespianActorRef",
    "ThespianCluster",
    "ThespianRuntime",
    "local_cluster",
    "stop_system",
]
