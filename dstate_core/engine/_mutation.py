"""Running a mutation against the own state, before anything is committed (SPEC §2.2, §4).

:func:`prepare_mutation` applies the closure to an independent copy, checks
what it returned, and runs the delta-aware hooks (``project_delta``,
``apply_delta``, ``sync_urgency``) with clear errors when one breaks its
contract. Nothing here changes the engine: a raise leaves everything as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..model._clock import Clock
from ..model._copy import copy_model
from ..model._generation import StateObject
from ..model._state import DeltaDistributedState, DistributedState
from ..model._urgency import SyncUrgency

__all__ = ["PreparedMutation", "prepare_mutation", "project_view"]

S = TypeVar("S", bound=DistributedState)


@dataclass(frozen=True, slots=True)
class PreparedMutation(Generic[S]):
    """A mutation's outcome, not committed yet."""

    own: StateObject[S]
    view: Any
    delta: BaseModel | None
    urgency: SyncUrgency


def project_view(state_type: type[DistributedState], state: Any) -> Any:
    """The own view: the state itself (simple) or ``project_view()`` (delta-aware)."""
    if not issubclass(state_type, DeltaDistributedState):
        return state
    view = state.project_view()
    if not isinstance(view, state_type.View):
        raise TypeError(
            f"{state_type.__qualname__}.project_view() must return a "
            f"{state_type.View.__qualname__}, got {type(view).__qualname__}"
        )
    return view


def prepare_mutation(
    current: StateObject[S],
    old_view: Any,
    fn: Callable[[S], Any],
    *,
    with_delta: bool,
    clock: Clock,
) -> PreparedMutation[S]:
    """Apply ``fn`` to a copy of ``current`` and run the hooks.

    Raises:
        TypeError: ``fn`` or a hook returned the wrong kind of value, or
            ``with_delta`` on a simple state.
        Exception: whatever ``fn`` or a hook raised.
    """
    state_type: type[S] = type(current.value)
    name = state_type.NAME
    if with_delta and not issubclass(state_type, DeltaDistributedState):
        raise TypeError(
            f"mutate_with_delta() needs a DeltaDistributedState; {name!r} is a simple "
            "DistributedState: use mutate()"
        )
    work = copy_model(current.value)
    result = fn(work)
    new_state: S = work
    if not with_delta and result is not None:
        if not isinstance(result, state_type):
            raise TypeError(
                f"the mutation of {name!r} returned a {type(result).__qualname__}; return "
                f"None (after changing the state in place) or a {state_type.__qualname__}"
            )
        new_state = result
    own = StateObject(
        current.generation.next(),
        state_type.STORAGE_VERSION,
        new_state,
        current.created_time,
        max(clock.wall_ms(), current.modified_time),
    )
    if not with_delta:
        return PreparedMutation(own, project_view(state_type, new_state), None, SyncUrgency.DEFAULT)
    assert issubclass(state_type, DeltaDistributedState)
    delta, view, urgency = _run_delta_hooks(state_type, old_view, result)
    return PreparedMutation(own, view, delta, urgency)


def _run_delta_hooks(
    kind: type[DeltaDistributedState], old_view: Any, change: Any
) -> tuple[BaseModel, BaseModel, SyncUrgency]:
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
    if kind.has_custom_urgency():
        urgency = kind.sync_urgency(old_view, view, delta)
        if not isinstance(urgency, SyncUrgency):
            raise TypeError(
                f"{kind.__qualname__}.sync_urgency() must return a SyncUrgency, got {urgency!r}"
            )
    return delta, view, urgency
