"""The narrow, typed seam to Thespian (which ships no type stubs), and the gateway actor.

Importing this module first sets Thespian's convention timing in the
environment, unless already set, because Thespian reads it once, when its
convention module is imported (and actor systems forked from this process
inherit it): a member re-registers every 2 s, is declared dead after 2 missed
registrations, and a lost leader is re-contacted every 3 s. With Thespian's own
defaults a killed member goes unnoticed for about 22 minutes.

Everything else in :mod:`dstate_thespian` goes through the names below; only
:class:`GatewayActor` runs inside Thespian (in its own process on the
multiproc bases).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ._gateway import GatewayCore, Notify, Send, Wake
from ._protocol import Attach, Batch, Parcel, Roster

__all__ = [
    "CONVENTION_ADDRESS",
    "CONVENTION_TIMING",
    "GatewayActor",
    "convention_update",
    "exit_request",
    "failure_detection_bound",
    "named_address",
    "start_system",
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


def start_system(base: str, capabilities: dict[str, Any]) -> Any:
    """Start (or, on a multiproc base, attach to) an actor system of ``base``.

    Never the process-wide singleton; simpleSystemBase leaves ``logging`` alone.
    """
    log_defs: Any = False if base == "simpleSystemBase" else None
    return _ta.ActorSystem(base, capabilities, logDefs=log_defs, transientUnique=True)


def named_address(name: str) -> Any:
    """An opaque address (stands in for an admin's address on simpleSystemBase)."""
    return _ta.ActorAddress(name)


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
        elif isinstance(msg, _ta.WakeupMessage):
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
