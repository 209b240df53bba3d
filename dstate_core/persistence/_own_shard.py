"""Where a shard's own state comes from, and how a mutation is made durable.

Startup: no backend or nothing stored means a fresh state (age 0, a new
incarnation); a stored record keeps its generation and timestamps, migrating
through ``migrate_state`` if older; a load error or failed migration is
logged and the node starts fresh with a new incarnation. A record of another
state or of a newer ``STORAGE_VERSION`` is refused: registration fails, so the
record is never overwritten.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .._logs import AnyLogger
from ..model._clock import Clock
from ..model._errors import ForeignRecordError, MutationError, NewerRecordError, PersistError
from ..model._generation import Generation, IncarnationSource, StateObject
from ..model._persistence import StatePersistence
from ..model._state import DistributedState

__all__ = ["load_or_fresh", "save_or_raise"]

S = TypeVar("S", bound=DistributedState)


def load_or_fresh(
    state_type: type[S],
    store: StatePersistence | None,
    clock: Clock,
    incarnations: IncarnationSource,
    log: AnyLogger,
) -> StateObject[S]:
    """The own state at registration: loaded from ``store`` or fresh.

    ``log`` gets the outcome (the node's logger for the state).

    Raises:
        TypeError: a fresh state is needed and ``state_type()`` cannot be built.
        ForeignRecordError: the store holds another state's record.
        NewerRecordError: the stored record is newer than ``state_type`` reads.
    """
    if store is not None:
        try:
            loaded = store.load()
            if loaded is not None:
                # Even if the record cannot be rebuilt, a fresh start must move past it.
                incarnations.observe(loaded.generation.incarnation)
                value = state_type.from_storage(loaded.value, loaded.storage_version)
                log.info("resumed at generation %s", loaded.generation)
                return StateObject(
                    loaded.generation,
                    state_type.STORAGE_VERSION,
                    value,
                    loaded.created_time,
                    loaded.modified_time,
                )
        except ForeignRecordError:
            raise  # starting fresh would overwrite another state's record on the next save
        except NewerRecordError as exc:  # ...or a newer record (say, after a rollback)
            raise NewerRecordError(
                exc.state_name, exc.stored_version, exc.code_version, repr(store)
            ) from None
        except Exception as exc:
            log.warning(
                "could not load the persisted state (%s: %s); starting fresh with a new "
                "incarnation",
                type(exc).__name__,
                exc,
            )
    try:
        value = state_type()
    except Exception as exc:
        raise TypeError(
            f"{state_type.__qualname__} must be constructible without arguments "
            f"(give every field a default): {exc}"
        ) from exc
    wall = clock.wall_ms()
    generation = Generation(incarnations.fresh(wall), 0)
    log.info("fresh start at generation %s", generation)
    return StateObject(generation, state_type.STORAGE_VERSION, value, wall, wall)


def save_or_raise(
    store: StatePersistence | None,
    state: StateObject[Any],
    delta: Any,
    first: Generation | None = None,
) -> None:
    """Persist a mutation, or a batch of them ending in ``state`` (``first`` is the
    batch's first generation), before it is published.

    Raises:
        MutationError: the store failed; ``__cause__`` is its error.
    """
    if store is None:
        return
    try:
        store.save(state, delta)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, PersistError) else f"{type(exc).__name__}: {exc}"
        name = type(state.value).NAME
        last = state.generation
        what = (
            f"the mutation to generation {last} was"
            if first is None or first == last
            else f"the mutations to generations {first} to {last} (one batch) were"
        )
        raise MutationError(
            f"state {name!r}: {what} not committed because saving failed: {reason}"
        ) from exc
