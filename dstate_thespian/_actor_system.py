"""One node's multiprocTCPBase actor system: start, join the convention, stop, kill.

Thespian daemonises each system (its admin double-forks), so a system left
without ``shutdown()`` outlives the process that started it. A
:class:`TcpSystem` therefore records the pids of its admin, logger and gateway
processes, shuts down cleanly, then checks they are gone and kills whatever
is left; :meth:`TcpSystem.kill` is a ``kill -9`` of all of them (a crash).
Pids are checked against their start time before any signal, so a recycled
pid is never hit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import Any

from dstate_core.process import children, descendants, pid_alive, port_open
from dstate_core.process import stat as _stat

from ._gateway import CAP_GATEWAY, CAP_INCARNATION, CAP_NODE
from ._thespian import CONVENTION_ADDRESS, GatewayActor, start_system

__all__ = [
    "TcpSystem",
    "stop_system",
]

_log = logging.getLogger("dstate.thespian")

#: How long :meth:`TcpSystem.shutdown` waits for the processes to exit before killing them.
EXIT_WAIT = 3.0


def stop_system(admin_port: int) -> None:
    """Shut down a multiprocTCPBase actor system left running on ``admin_port`` (if any)."""
    if port_open(admin_port):
        start_system("multiprocTCPBase", {"Admin Port": admin_port}).shutdown()


class TcpSystem:
    """A multiprocTCPBase actor system with one gateway actor, owned by one runtime.

    Args:
        node_id, incarnation: published as capabilities to the convention.
        admin_port: the admin's TCP port (must be free).
        convention_address: the leader's ``"host:port"``, or None to lead.
        host: the address to advertise (sets ``THESPIAN_BASE_IPADDR``,
            process-wide); Thespian still listens on every interface.

    Raises:
        ValueError: the admin port is in use.
    """

    def __init__(
        self,
        node_id: str,
        incarnation: str,
        admin_port: int,
        convention_address: str | None,
        host: str | None,
    ) -> None:
        if host is not None:
            os.environ["THESPIAN_BASE_IPADDR"] = host
        if port_open(admin_port):
            raise ValueError(
                f"admin port {admin_port} is in use (a leftover actor system? "
                f"dstate_thespian.stop_system({admin_port}) shuts one down)"
            )
        self.admin_port = admin_port
        self.convention_address = convention_address
        self._pids: dict[int, int] = {}
        capabilities = {
            "Admin Port": admin_port,
            CAP_NODE: node_id,
            CAP_INCARNATION: incarnation,
        }
        self.system: Any = start_system("multiprocTCPBase", capabilities)
        try:
            self.gateway: Any = self.system.createActor(GatewayActor)
        except BaseException:
            self.system.shutdown()
            raise

    @property
    def pids(self) -> list[int]:
        """The processes of this system that were seen (admin, logger, gateway)."""
        return sorted(self._pids)

    def record(self, admin_pid: int, gateway_pid: int) -> None:
        """Note the admin's and gateway's pids (from the gateway) and the admin's children."""
        for pid in {admin_pid, gateway_pid, *children(admin_pid)}:
            stat = _stat(pid)
            if stat is not None:
                self._pids[pid] = stat[2]

    def publish(self) -> None:
        """Advertise the gateway and, for a member, join the leader's convention."""
        self.system.updateCapability(CAP_GATEWAY, self.gateway)
        if self.convention_address is not None:
            self.system.updateCapability(CONVENTION_ADDRESS, self.convention_address)

    def alive_pids(self) -> list[int]:
        """Recorded processes that still run."""
        return [pid for pid, started in sorted(self._pids.items()) if pid_alive(pid, started)]

    def shutdown(self) -> None:
        """Leave the convention and stop every process; kill what does not exit in time."""
        try:
            self.system.shutdown()
        except Exception as exc:
            _log.warning("actor system on port %d: shutdown failed: %s", self.admin_port, exc)
        deadline = time.monotonic() + EXIT_WAIT
        while self.alive_pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive_pids():
            _log.warning(
                "actor system on port %d left processes %s; killing them",
                self.admin_port,
                self.alive_pids(),
            )
            self.kill()

    def kill(self) -> None:
        """``kill -9`` every recorded process (a crash: no goodbye to the convention)."""
        alive = [pid for pid, started in self._pids.items() if pid_alive(pid, started)]
        for pid in descendants(alive):
            stat = _stat(pid)
            if stat is not None:
                self._pids.setdefault(pid, stat[2])
        for pid, started in sorted(self._pids.items()):
            if pid_alive(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        base: Any = getattr(self.system, "_systemBase", None)
        with contextlib.suppress(Exception):
            base.transport.close()  # our own endpoint of the dead system (shutdown would wait)
