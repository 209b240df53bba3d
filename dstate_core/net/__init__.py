"""Network clusters: node processes on several hosts, over ZeroMQ with CURVE.

:class:`TcpNetwork` is one node process's link to its cluster: it listens on
one port, finds the other members through seeds, notices the ones that stop
(see :mod:`~dstate_core.net._membership`), and carries a runtime's messages,
encrypted and authenticated with keys derived from the cluster secret. Give
it to a runtime (``PykkaRuntime(node_id, network=network)``); see
``docs/network.md``.
"""

from ._keys import curve_keys
from ._membership import MembershipConfig
from ._settings import MIN_SECRET_BYTES
from ._transport import JoinRefusedError, NetworkSink, TcpNetwork

__all__ = [
    "MIN_SECRET_BYTES",
    "JoinRefusedError",
    "MembershipConfig",
    "NetworkSink",
    "TcpNetwork",
    "curve_keys",
]
