"""What differs between the two kinds of state, in one strategy object per kind.

A simple :class:`~dstate_core.model.DistributedState` is its own view: peers
get the whole state in every update and never a delta. A
:class:`~dstate_core.model.DeltaDistributedState` shows peers a projected view,
and its mutations produce deltas through the class's hooks. The engine asks
:func:`kind_of` once and then talks to a :class:`StateKind`; it never branches
on the kind itself.

Every kind runs a mutation against an independent copy of the own state and
checks what the closure and the hooks return, with an error that says which
contract was broken; nothing here changes the engine, so a raise leaves
everything as it was. Every kind also decodes peer payloads, sorting each
failure into one of the two kinds the engine treats differently
(:class:`Unreadable`): an unknown wire *version* (subject to the
version-mismatch policy) and a *malformed* payload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..model._clock import Clock
from ..model._copy import copy_model
from ..model._errors import DeserializeError, a_or_an
from ..model._generation import StateObject
from ..model._state import DeltaDistributedState, DistributedState
from ..model._urgency import SyncUrgency
from ..model._validate import validate_changes

__all__ = ["DeltaKind", "PreparedMutation", "SimpleKind", "StateKind", "Unreadable", "kind_of"]

S = TypeVar("S", bound=DistributedState)


class Unreadable(Exception):
    """A peer's payload could not be used.

    Attributes:
        unknown_version: the wire version not understood, or ``None`` when the
            payload was malformed.
    """

    def __init__(self, detail: str, unknown_version: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unknown_version = unknown_version


@dataclass(frozen=True, slots=True)
class PreparedMutation(Generic[S]):
    """A mutation's outcome, not committed yet."""

    own: StateObject[S]
    view: Any
    delta: BaseModel | None
    urgency: SyncUrgency


class StateKind:
    """How one state class is viewed, mutated, sent and read back.

    Concurrency: stateless; used during the engine's turn only.
    """

    #: Peers may get deltas of this state.
    sends_deltas = False
    #: The class decides the urgency of each change (``sync_urgency`` overridden).
    custom_urgency = False

    def __init__(self, state_type: type[DistributedState]) -> None:
        self.state_type = state_type

    def project_view(self, state: Any) -> Any:
        """What peers see of ``state``."""
        raise NotImplementedError

    def snapshot_payload(self, own: StateObject[Any], view: Any) -> bytes:
        """The bytes of a full snapshot of ``own`` (whose view is ``view``)."""
        raise NotImplementedError

    def delta_payload(self, delta: BaseModel) -> bytes:
        """The bytes of one delta."""
        raise NotImplementedError

    def read_snapshot(self, payload: bytes, wire_version: int) -> Any:
        """The view in a peer's snapshot.

        Raises:
            Unreadable: the payload cannot be used.
        """
        raise NotImplementedError

    def read_delta(self, view: Any, payload: bytes, wire_version: int) -> Any:
        """``view`` advanced by the delta in ``payload``.

        Raises:
            Unreadable: the payload cannot be used, or this kind takes no deltas.
        """
        raise Unreadable("a delta update for a simple state")

    def prepare(
        self,
        current: StateObject[S],
        old_view: Any,
        fn: Callable[[S], Any],
        *,
        with_delta: bool,
        clock: Clock,
    ) -> PreparedMutation[S]:
        """Apply ``fn`` to a copy of ``current`` and run the hooks.

        ``fn`` changes the copy in place and returns ``None`` or a new state;
        with ``with_delta`` (delta-aware states only) it returns the change,
        which goes through ``project_delta``, ``apply_delta`` and ``sync_urgency``.

        The result is validated against the model (every changed field) before
        anything else happens.

        Raises:
            TypeError: ``fn`` or a hook returned the wrong kind of value, or
                ``with_delta`` on a simple state.
            MutationError: the result is not a valid state (pydantic's message).
            Exception: whatever ``fn`` or a hook raised.
        """
        name = self.state_type.NAME
        if with_delta and not self.sends_deltas:
            raise TypeError(
                f"mutate_with_delta() needs a DeltaDistributedState; {name!r} is a simple "
                "DistributedState: use mutate()"
            )
        work = copy_model(current.value)
        result = fn(work)
        if with_delta:
            if result is None:
                raise TypeError(
                    f"the mutate_with_delta() closure of {name!r} returned None: change the "
                    f"state in place and return the change, the value "
                    f"{self.state_type.__qualname__}.project_delta() turns into a delta"
                )
            validate_changes(work, current.value)
            delta, view, urgency = self._run_hooks(old_view, result)
            return PreparedMutation(self._next(current, work, clock), view, delta, urgency)
        new_state: S = work
        if result is not None:
            if not isinstance(result, self.state_type):
                got = a_or_an(type(result).__qualname__)
                raise TypeError(
                    f"the mutation of {name!r} returned {got}; return None (after changing "
                    f"the state in place) or {a_or_an(self.state_type.__qualname__)}"
                )
            new_state = result  # type: ignore[assignment]
        validate_changes(new_state, current.value)
        view = self.project_view(new_state)
        return PreparedMutation(
            self._next(current, new_state, clock), view, None, SyncUrgency.DEFAULT
        )

    def _run_hooks(self, old_view: Any, change: Any) -> tuple[BaseModel, Any, SyncUrgency]:
        """The delta, new view and urgency of a delta-aware change."""
        raise NotImplementedError

    def _next(self, current: StateObject[S], new_state: S, clock: Clock) -> StateObject[S]:
        return StateObject(
            current.generation.next(),
            self.state_type.STORAGE_VERSION,
            new_state,
            current.created_time,
            max(clock.wall_ms(), current.modified_time),
        )


class SimpleKind(StateKind):
    """A :class:`~dstate_core.model.DistributedState`: the whole state is the view."""

    def project_view(self, state: Any) -> Any:
        """The state itself."""
        return state

    def snapshot_payload(self, own: StateObject[Any], view: Any) -> bytes:
        """``serialize_state()`` of the own state."""
        payload: bytes = own.value.serialize_state()
        return payload

    def read_snapshot(self, payload: bytes, wire_version: int) -> Any:
        """The peer's whole state."""
        kind = self.state_type
        return _run(kind.deserialize_state, payload, wire_version, kind)


class DeltaKind(StateKind):
    """A :class:`~dstate_core.model.DeltaDistributedState`: a projected view and deltas."""

    sends_deltas = True

    def __init__(self, state_type: type[DeltaDistributedState]) -> None:
        super().__init__(state_type)
        self.delta_type = state_type
        self.custom_urgency = state_type.has_custom_urgency()

    def project_view(self, state: Any) -> Any:
        """``state.project_view()``, checked to be the class's ``View``."""
        kind = self.delta_type
        view = state.project_view()
        if not isinstance(view, kind.View):
            raise TypeError(
                f"{kind.__qualname__}.project_view() must return a "
                f"{kind.View.__qualname__}, got {type(view).__qualname__}"
            )
        return view

    def snapshot_payload(self, own: StateObject[Any], view: Any) -> bytes:
        """``serialize_view()`` of the own view (private fields never leave)."""
        return self.delta_type.serialize_view(view)

    def delta_payload(self, delta: BaseModel) -> bytes:
        """``serialize_delta()`` of ``delta``."""
        return self.delta_type.serialize_delta(delta)

    def read_snapshot(self, payload: bytes, wire_version: int) -> Any:
        """The peer's view."""
        kind = self.delta_type
        return _run(kind.deserialize_view, payload, wire_version, kind.View)

    def read_delta(self, view: Any, payload: bytes, wire_version: int) -> Any:
        """``view`` advanced through the class's ``apply_delta``."""
        kind = self.delta_type
        delta = _run(kind.deserialize_delta, payload, wire_version, kind.Delta)
        try:
            value = kind.apply_delta(view, delta)
        except Exception as exc:
            raise Unreadable(f"apply_delta() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, kind.View):
            raise Unreadable(f"apply_delta() returned {a_or_an(type(value).__qualname__)}")
        return value

    def _run_hooks(self, old_view: Any, change: Any) -> tuple[BaseModel, BaseModel, SyncUrgency]:
        kind = self.delta_type
        delta = kind.project_delta(change)
        if not isinstance(delta, kind.Delta):
            raise TypeError(
                f"{kind.__qualname__}.project_delta() must return a {kind.Delta.__qualname__}, "
                f"got {type(delta).__qualname__}"
            )
        view = kind.apply_delta(old_view, delta)
        if not isinstance(view, kind.View) or view is old_view:
            got = "its argument" if view is old_view else type(view).__qualname__
            raise TypeError(
                f"{kind.__qualname__}.apply_delta() must return a new {kind.View.__qualname__} "
                f"(e.g. view.model_copy(update=...)) without changing its argument; got {got}"
            )
        urgency = SyncUrgency.DEFAULT
        if self.custom_urgency:
            urgency = kind.sync_urgency(old_view, view, delta)
            if not isinstance(urgency, SyncUrgency):
                raise TypeError(
                    f"{kind.__qualname__}.sync_urgency() must return a SyncUrgency, got {urgency!r}"
                )
        return delta, view, urgency


def kind_of(state_type: type[DistributedState]) -> StateKind:
    """The strategy object for ``state_type``."""
    if issubclass(state_type, DeltaDistributedState):
        return DeltaKind(state_type)
    return SimpleKind(state_type)


def _run(decode: Any, payload: bytes, wire_version: int, expected: type) -> Any:
    try:
        value = decode(payload, wire_version)
    except DeserializeError as exc:
        raise Unreadable(str(exc), exc.unknown_version) from exc
    except Exception as exc:
        raise Unreadable(f"the deserializer raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, expected):
        raise Unreadable(
            f"the deserializer returned {a_or_an(type(value).__qualname__)}, "
            f"not {a_or_an(expected.__qualname__)}"
        )
    return value
