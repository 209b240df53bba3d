"""A restricted unpickler for Thespian's TCP transport: no message that arrives can run code.

Thespian's ``multiprocTCPBase`` unpickles every frame (``b"<len>>" + pickle``)
that reaches its admin port and each actor process's port, on every interface.
A plain ``pickle.loads`` runs whatever callable the pickle names, so one frame
from anyone who can connect would run code. Thespian takes its deserializer
from the module-level name ``serializer`` in
``thespian.system.transport.TCPTransport`` each time it reads a frame (and an
ACK), so :func:`install` replaces that name with an object whose ``loads`` is
:func:`restricted_loads` (``dumps`` stays ``pickle.dumps``).

:func:`restricted_loads` refuses a pickle that names any global outside
:data:`ALLOWED` (Thespian's own messages and addresses, dstate's protocol
dataclasses, a few plain-data types), and a Thespian actor-creation request for
any actor class but dstate's gateway. A refused frame raises
:class:`pickle.UnpicklingError`; Thespian then drops the frame and closes that
connection (its own ``thesplog`` records it), and the actor system carries on.
Each process counts what it refused (:func:`refused_count`) and logs a warning
at most once a minute.

Thespian's source-loading messages (``ValidateSource``, ``ValidatedSource``,
``RegisterSourceAuthority``, ``SourceHashTransfer*``, ``LoadedSource``...) are left out on
purpose: with them a peer could make an admin load and run a zip of Python
code. dstate loads no actor source.

:mod:`dstate_thespian._thespian` installs it when imported, before any actor
system starts; the admin, logger and actor processes Thespian forks from that
process inherit the patched module (Thespian forks by default; dstate never
sets another ``Process Startup Method``).
"""

from __future__ import annotations

import datetime
import io
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from thespian import actors as _ta  # type: ignore[import-untyped]
from thespian.system import logdirector as _logdir  # type: ignore[import-untyped]
from thespian.system.messages import admin as _admin  # type: ignore[import-untyped]
from thespian.system.messages import convention as _conv
from thespian.system.messages import logcontrol as _logctl
from thespian.system.messages import multiproc as _mp
from thespian.system.messages import status as _status
from thespian.system.transport import ForwardMessage  # type: ignore[import-untyped]
from thespian.system.transport import IPBase as _IPBase
from thespian.system.transport import TCPTransport as _TCPTransport

from dstate_core.runtime import Parcel

from ._gateway import Attach, Attached, Batch, Roster, View

__all__ = [
    "ALLOWED",
    "GATEWAY_CLASS",
    "RefusedPickle",
    "install",
    "installed",
    "refused_count",
    "restricted_loads",
]

_log = logging.getLogger("dstate.thespian")

#: The only actor class an actor-creation request (``PendingActor``) may name.
GATEWAY_CLASS = "dstate_thespian._thespian.GatewayActor"

#: How often (seconds) a process logs that it refused pickles.
WARN_EVERY = 60.0


def _key(cls: type) -> tuple[str, str]:
    return (cls.__module__, cls.__qualname__)


_THESPIAN: tuple[type, ...] = (
    # messages an actor, an admin or a convention member sends
    _ta.ActorAddress,
    _ta.ActorSystemMessage,
    _ta.ActorSystemConventionUpdate,
    _ta.ActorExitRequest,
    _ta.ChildActorExited,
    _ta.PoisonMessage,
    _ta.WakeupMessage,
    _ta.WatchMessage,
    _ta.DeadEnvelope,
    _admin.QueryExists,
    _admin.QueryAck,
    _admin.SystemShutdown,
    _admin.SystemShutdownCompleted,
    _admin.PendingActor,
    _admin.PendingActorResponse,
    _admin.HandleDeadLetters,
    _admin.CapabilityUpdate,
    _admin.NewCapabilities,
    # an actor's goodbye to its admin carries one (it only (un)subscribes an address)
    _admin.NotifyOnSourceAvailability,
    _conv.ConventionRegister,
    _conv.ConventionDeRegister,
    _conv.ConventionInvite,
    _conv.NotifyOnSystemRegistration,
    _logctl.SetLogging,
    _mp.EndpointConnected,
    _mp.LoggerConnected,
    _mp.ChildMayHaveDied,
    _status.Thespian_StatusReq,
    _status.Thespian_SystemStatus,
    _status.Thespian_ActorStatus,
    _logdir.LoggerExitRequest,
    _logdir.LoggerFileDup,
    _logdir.LogAggregator,
    ForwardMessage,
    # addresses
    _IPBase.IPActorAddress,
    _IPBase.TCPv4ActorAddress,
    _IPBase.TCPv6ActorAddress,
    _IPBase.UDPv4ActorAddress,
    _IPBase.RoutedTCPv4ActorAddress,
    _IPBase.TXOnlyAdminTCPv4ActorAddress,
    _TCPTransport.RoutedTCPv4ActorAddress,
    _TCPTransport.TXOnlyAdminTCPv4ActorAddress,
)

_DSTATE: tuple[type, ...] = (Parcel, Attach, Attached, Batch, Roster, View)

_PLAIN: tuple[type, ...] = (
    # log records that forked processes forward to Thespian's logger (msg pre-formatted)
    logging.LogRecord,
    # the socket family and kind inside every TCP address
    socket.AddressFamily,
    socket.SocketKind,
    # wakeup periods, status times
    datetime.timedelta,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timezone,
    # plain data the pickle protocol spells as a global
    set,
    frozenset,
    bytearray,
    complex,
)


def _allowed() -> dict[tuple[str, str], Any]:
    return {_key(cls): cls for cls in (*_THESPIAN, *_DSTATE, *_PLAIN)}


#: ``(module, qualified name)`` → the object a pickle may name; nothing else loads.
ALLOWED: dict[tuple[str, str], Any] = _allowed()


class RefusedPickle(pickle.UnpicklingError):
    """A frame on a Thespian port named something that could run code; it was dropped."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickle(f"refused global {module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("refused persistent id")


_lock = threading.Lock()
_refused = 0
_warned_at: float | None = None
_unwarned = 0


def refused_count() -> int:
    """How many frames this process refused so far."""
    return _refused


def _refuse(reason: str) -> None:
    global _refused, _warned_at, _unwarned
    now = time.monotonic()
    with _lock:
        _refused += 1
        _unwarned += 1
        if _warned_at is not None and now - _warned_at < WARN_EVERY:
            return
        _warned_at, count, _unwarned = now, _unwarned, 0
    _log.warning(
        "dropped %d frame(s) on a Thespian port that could have run code (%s); "
        "is someone outside the cluster connecting to it?",
        count,
        reason,
    )


def _check(value: Any) -> None:
    """Refuse an actor-creation request for anything but dstate's gateway (or from source)."""
    message = value[1] if isinstance(value, tuple) and len(value) == 2 else value
    for _ in range(64):
        if not isinstance(message, ForwardMessage):
            break
        message = getattr(message, "fwdMessage", None)
    if isinstance(message, _admin.PendingActor):
        name = getattr(message, "actorClassName", None)
        if name != GATEWAY_CLASS or getattr(message, "sourceHash", None) is not None:
            raise RefusedPickle(f"refused actor creation of {name!r}")


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` that admits only :data:`ALLOWED` globals (else :class:`RefusedPickle`)."""
    try:
        value = _Unpickler(io.BytesIO(data)).load()
        _check(value)
    except RefusedPickle as exc:
        _refuse(str(exc))
        raise
    return value


class _Serializer:
    """What Thespian's TCP transport calls ``serializer``: its ``dumps`` and ``loads``."""

    dumps: Callable[..., bytes] = staticmethod(pickle.dumps)
    loads: Callable[[bytes], Any] = staticmethod(restricted_loads)


def install() -> None:
    """Make Thespian's TCP transport (in this process and those it forks) unpickle restrictedly."""
    _TCPTransport.serializer = _Serializer


def installed() -> bool:
    """True when Thespian's TCP transport uses :func:`restricted_loads`."""
    return getattr(_TCPTransport, "serializer", None) is _Serializer
