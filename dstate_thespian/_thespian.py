"""The narrow, typed seam to Thespian (which ships no type stubs), and the gateway actor.

Importing this module first sets Thespian's convention timing in the
environment, unless already set, because Thespian reads it once, when its
convention module is imported (and actor systems forked from this process
inherit it): a member re-registers every 2 s, is declared dead after 2 missed
registrations, and a lost leader is re-contacted every 3 s. With Thespian's own
defaults a killed member goes unnoticed for about 22 minutes.

Everything else in :mod:`dstate_thespian` goes through the names below; only
:class:`GatewayActor` runs inside Thespian (in its own process on the
multiproc bases). There it also watches the node process it serves: Thespian
daemonises the actor system, so without the watch a ``kill -9`` of that
process would leave the system running and the node a member forever.

It also installs :mod:`dstate_thespian._unpickle`, the restricted unpickler of
Thespian's TCP transport, so a frame on any Thespian port cannot run code.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dstate_core.process import children, kill_pids, pid_alive, start_time, stat

from ._gateway import Attach, Batch, GatewayCore, Notify, Parcel, Roster, Send, Wake

__all__ = [
    "CONVENTION_ADDRESS",
    "CONVENTION_TIMING",
    "ORPHAN_KILL_AFTER",
    "WATCH_SECONDS",
    "GatewayActor",
    "address_port",
    "convention_update",
    "exit_request",
    "failure_detection_bound",
    "named_address",
    "start_system",
    "tcp_address",
]

_log = logging.getLogger("dstate.thespian")

#: The environment Thespian reads for its convention timing, and dstate's defaults.
CONVENTION_TIMING: Mapping[str, str] = {
    "CONVENTION_REREGISTRATION_PERIOD": "0:02",
    "CONVENTION_REGISTRATION_MISS_MAX": "2",
    "CONVENTION_RESTART_PERIOD": "0:03",
}

#: The capability naming a member's convention leader (``"host:port"``).
CONVENTION_ADDRESS = "Convention Address.IPv4"

#: How often a gateway checks that its node process still runs.
WATCH_SECONDS = 0.5
#: An orphaned gateway kills its actor system if a clean shutdown has not ended it by then.
ORPHAN_KILL_AFTER = 5.0

#: The wakeup payload of the node-process watch (other wakeups are the gateway core's).
_WATCH = "dstate.watch"


def _set_convention_timing() -> None:
    if "thespian.system.admin.convention" in sys.modules:
        missing = [name for name in CONVENTION_TIMING if name not in os.environ]
        if missing:
            _log.warning(
                "thespian was imported before dstate_thespian and %s are not set: a crashed "
                "member may go unnoticed for minutes",
                ", ".join(missing),
            )
        return
    for name, value in CONVENTION_TIMING.items():
        os.environ.setdefault(name, value)


_set_convention_timing()


def _env_number(name: str) -> float:
    """A timing variable in seconds (``"M:SS"`` periods, plain counts); dstate's default if bad."""
    for text in (os.environ.get(name, ""), CONVENTION_TIMING[name]):
        minutes, colon, seconds = text.partition(":")
        try:
            return 60.0 * int(minutes) + int(seconds) if colon else float(int(text))
        except ValueError:
            continue
    raise AssertionError(name)  # pragma: no cover (the defaults parse)


def failure_detection_bound() -> float:
    """Seconds within which the convention reports a killed system (from its timing).

    The leader drops a member after ``MISS_MAX`` re-registration periods without
    one, checked once a period; a member drops a leader after as many failed
    registrations. One more period and a second of slack cover both.
    """
    period = _env_number("CONVENTION_REREGISTRATION_PERIOD")
    misses = _env_number("CONVENTION_REGISTRATION_MISS_MAX")
    return period * (misses + 1) + 1.0


from thespian import actors as _ta  # type: ignore[import-untyped]  # noqa: E402

from ._unpickle import install as _install_restricted_unpickler  # noqa: E402

# Before any actor system starts: every process Thespian forks from here inherits it.
_install_restricted_unpickler()


def start_system(base: str, capabilities: dict[str, Any]) -> Any:
    """Start (or, on a multiproc base, attach to) an actor system of ``base``.

    Never the process-wide singleton; simpleSystemBase leaves ``logging`` alone.
    """
    log_defs: Any = False if base == "simpleSystemBase" else None
    return _ta.ActorSystem(base, capabilities, logDefs=log_defs, transientUnique=True)


def named_address(name: str) -> Any:
    """An opaque address (stands in for an admin's address on simpleSystemBase)."""
    return _ta.ActorAddress(name)


def tcp_address(host: str, port: int) -> Any:
    """The Thespian address of whatever listens on ``host:port`` (multiprocTCPBase)."""
    from thespian.system.transport.TCPTransport import (  # type: ignore[import-untyped]
        TCPTransport,
    )

    return TCPTransport.getAddressFromString(f"{host}:{port}")


def address_port(address: Any) -> int | None:
    """The TCP port of a multiprocTCPBase address (None on other bases)."""
    try:
        port = address.addressDetails.connectArgs[0][1]
    except (AttributeError, IndexError, TypeError):
        return None
    return port if isinstance(port, int) else None


def convention_update(admin: Any, capabilities: dict[str, Any], added: bool) -> Any:
    """The message a convention sends about a system that joined or left."""
    return _ta.ActorSystemConventionUpdate(admin, capabilities, added)


def exit_request() -> Any:
    """The message that stops a Thespian actor."""
    return _ta.ActorExitRequest()


class GatewayActor(_ta.Actor):  # type: ignore[misc]
    """A node's door in Thespian: carries parcels between its node process and the peers.

    Concurrency: Thespian runs it one message at a time (in its own process on
    the multiproc bases). It never raises: Thespian would retry the message and
    then return it to the sender as a ``PoisonMessage``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._dstate_core: GatewayCore | None = None
        self._dstate_watch: tuple[int, int] | None = None
        self._dstate_orphaned_at: float | None = None
        self._dstate_admin: tuple[int, int] = (0, 0)

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 (Thespian's name)
        """Feed ``msg`` to the gateway logic and carry out its effects."""
        try:
            self._dstate_handle(msg, sender)
        except Exception:
            _log.exception("dstate gateway failed on %s", type(msg).__name__)

    def _dstate_handle(self, msg: Any, sender: Any) -> None:
        if self._dstate_core is None:
            self._dstate_core = GatewayCore(self.myAddress)
        core = self._dstate_core
        now = time.monotonic()
        if isinstance(msg, Parcel):
            effects = core.parcel(msg)
        elif isinstance(msg, Batch):
            effects = core.batch(msg)
        elif isinstance(msg, _ta.ActorSystemConventionUpdate):
            effects = core.convention(
                msg.remoteAdminAddress, msg.remoteCapabilities, msg.remoteAdded, now
            )
        elif isinstance(msg, Roster):
            effects = core.roster(msg, now)
        elif isinstance(msg, Attach):
            effects = core.attach(msg, sender, os.getpid(), os.getppid())
            self._dstate_start_watch(msg)
        elif isinstance(msg, _ta.WakeupMessage):
            if msg.payload == _WATCH:
                self._dstate_check_watch(now)
                return
            effects = core.wakeup(now)
        else:  # ActorExitRequest, PoisonMessage, ChildActorExited, strangers: nothing to do
            return
        for effect in effects:
            if isinstance(effect, Send):
                self.send(effect.to, effect.msg)
            elif isinstance(effect, Wake):
                self.wakeupAfter(timedelta(seconds=effect.seconds))
            elif isinstance(effect, Notify):
                self.notifyOnSystemRegistrationChanges(True)

    # -- the node-process watch -------------------------------------------------------

    def _dstate_start_watch(self, msg: Attach) -> None:
        """Watch the attached node process if it runs elsewhere (multiproc bases)."""
        pid = msg.watch_pid
        if pid <= 0 or pid == os.getpid() or self._dstate_watch is not None:
            return
        self._dstate_watch = (pid, msg.watch_started)
        admin = os.getppid()
        self._dstate_admin = (admin, start_time(admin))
        self.wakeupAfter(timedelta(seconds=WATCH_SECONDS), payload=_WATCH)

    def _dstate_check_watch(self, now: float) -> None:
        """The node process is gone (``kill -9``): stop this actor system, cleanly if it can.

        A clean shutdown tells the convention at once, so peers see the node
        leave without waiting for missed registrations. If the system is still
        up :data:`ORPHAN_KILL_AFTER` seconds later, its processes are killed.
        """
        if self._dstate_watch is None:
            return
        pid, started = self._dstate_watch
        if pid_alive(pid, started):
            self.wakeupAfter(timedelta(seconds=WATCH_SECONDS), payload=_WATCH)
            return
        if self._dstate_orphaned_at is None:
            self._dstate_orphaned_at = now
            _log.warning("dstate gateway: node process %d is gone; stopping its actor system", pid)
            self.actorSystemShutdown()
        elif now - self._dstate_orphaned_at >= ORPHAN_KILL_AFTER:
            _kill_own_system(*self._dstate_admin)
            return
        self.wakeupAfter(timedelta(seconds=WATCH_SECONDS), payload=_WATCH)


def _kill_own_system(admin: int, started: int) -> None:
    """``kill -9`` this gateway's admin (if it is still that process), its children, then itself."""
    victims: dict[int, int] = {}
    if admin > 1 and started and pid_alive(admin, started):
        victims[admin] = started
        victims.update({pid: info[2] for pid in children(admin) if (info := stat(pid))})
    victims.pop(os.getpid(), None)
    kill_pids(victims, wait=1.0)
    os._exit(1)
