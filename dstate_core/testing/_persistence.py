"""Persistence doubles for tests: an in-memory store and one that fails on demand.

Both behave like a real backend: :meth:`InMemoryPersistence.save` keeps a
*detached* plain copy of the state (``value.to_storage()``), and
:meth:`InMemoryPersistence.load` hands back a :class:`StateObject` whose
``value`` is that plain dict, which the engine rebuilds with
``StateType.from_storage(value, storage_version)``. Later in-place changes to
the live model, to a loaded dict or to :attr:`InMemoryPersistence.saved` never
reach the store.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, TypeVar

from pydantic import BaseModel

from ..model._errors import PersistError
from ..model._generation import StateObject
from ..model._state import DistributedState

__all__ = ["FailingPersistence", "InMemoryPersistence"]

S = TypeVar("S", bound=DistributedState)


def _plain_value(value: Any) -> dict[str, Any]:
    """A detached plain-dict copy of a state value, as a real store would keep it."""
    to_storage = getattr(value, "to_storage", None)
    if callable(to_storage):
        plain = to_storage()
    elif isinstance(value, BaseModel):
        plain = value.model_dump()
    else:
        plain = value
    if not isinstance(plain, dict):
        raise PersistError(
            f"cannot store a state value of type {type(value).__qualname__}: "
            "expected a DistributedState or its plain dict form"
        )
    return copy.deepcopy(plain)


def _copy_record(record: StateObject[dict[str, Any]]) -> StateObject[dict[str, Any]]:
    return StateObject(
        generation=record.generation,
        storage_version=record.storage_version,
        value=copy.deepcopy(record.value),
        created_time=record.created_time,
        modified_time=record.modified_time,
    )


class InMemoryPersistence:
    """A :class:`~dstate_core.StatePersistence` that keeps the last saved state in memory.

    Besides ``save``/``load`` it exposes what it received, for assertions:
    :attr:`saved`, :attr:`save_count`, :attr:`load_count` and :attr:`deltas`.
    Giving the same object to a restarted node resumes the saved state, as a
    file or database would.

    Concurrency: thread-safe; every method takes one internal lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._record: StateObject[dict[str, Any]] | None = None
        self._save_count = 0
        self._load_count = 0
        self._deltas: list[Any] = []

    def save(self, state: StateObject[Any], state_delta: Any) -> None:
        """Store a detached copy of ``state`` and record ``state_delta``.

        Raises:
            PersistError: ``state.value`` is neither a state model nor a dict.
        """
        record = StateObject(
            generation=state.generation,
            storage_version=state.storage_version,
            value=_plain_value(state.value),
            created_time=state.created_time,
            modified_time=state.modified_time,
        )
        delta = copy.deepcopy(state_delta)
        with self._lock:
            self._check_save(state)
            self._record = record
            self._save_count += 1
            self._deltas.append(delta)

    def load(self) -> StateObject[Any] | None:
        """The last saved state with its plain dict ``value`` (a fresh copy), or ``None``."""
        with self._lock:
            self._load_count += 1
            self._check_load()
            record = self._record
        return None if record is None else _copy_record(record)

    @property
    def saved(self) -> StateObject[dict[str, Any]] | None:
        """A copy of the last stored record (``value`` is the plain dict), or ``None``."""
        with self._lock:
            record = self._record
        return None if record is None else _copy_record(record)

    def saved_model(self, state_type: type[S]) -> S | None:
        """The last stored state rebuilt as ``state_type`` (via ``from_storage``), or ``None``."""
        record = self.saved
        if record is None:
            return None
        return state_type.from_storage(record.value, record.storage_version)

    @property
    def save_count(self) -> int:
        """How many saves succeeded since creation or :meth:`clear`."""
        with self._lock:
            return self._save_count

    @property
    def load_count(self) -> int:
        """How many times :meth:`load` was called (failed loads included)."""
        with self._lock:
            return self._load_count

    @property
    def deltas(self) -> list[Any]:
        """The ``state_delta`` of every successful save, oldest first (a copy)."""
        with self._lock:
            return list(self._deltas)

    def clear(self) -> None:
        """Forget the stored state, the recorded deltas and the counters."""
        with self._lock:
            self._record = None
            self._save_count = 0
            self._load_count = 0
            self._deltas.clear()

    def _check_save(self, state: StateObject[Any]) -> None:
        """Hook run under the lock before a save is applied; raise to refuse it."""

    def _check_load(self) -> None:
        """Hook run under the lock before a load; raise to refuse it."""

    def __repr__(self) -> str:
        generation = None if self._record is None else str(self._record.generation)
        return f"{type(self).__name__}(generation={generation}, save_count={self._save_count})"


class FailingPersistence(InMemoryPersistence):
    """An :class:`InMemoryPersistence` whose saves and loads fail on demand.

    * :meth:`fail_next_save` — the next save (only) raises :class:`PersistError`;
    * :meth:`fail_saves` — every save raises while switched on;
    * :meth:`fail_load` — :meth:`load` raises while switched on.

    A failed save changes nothing that is stored: the record, :attr:`deltas`
    and :attr:`save_count` stay as they were; :attr:`failed_save_count` counts it.

    Concurrency: thread-safe.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fail_next = 0
        self._fail_all = False
        self._fail_load = False
        self._failed_saves = 0

    def fail_next_save(self, times: int = 1) -> None:
        """Make the next ``times`` save attempts raise :class:`PersistError`.

        A pending one-shot failure is used up by the next attempt even while
        :meth:`fail_saves` is on.
        """
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"fail_next_save(times) needs an int >= 1, got {times!r}")
        with self._lock:
            self._fail_next += times

    def fail_saves(self, on: bool = True) -> None:
        """While ``on``, every save raises :class:`PersistError`."""
        if not isinstance(on, bool):
            raise TypeError(f"fail_saves() takes True or False, got {on!r}")
        with self._lock:
            self._fail_all = on

    def fail_load(self, on: bool = True) -> None:
        """While ``on``, :meth:`load` raises :class:`PersistError`."""
        if not isinstance(on, bool):
            raise TypeError(f"fail_load() takes True or False, got {on!r}")
        with self._lock:
            self._fail_load = on

    @property
    def failed_save_count(self) -> int:
        """How many save attempts raised an injected failure."""
        with self._lock:
            return self._failed_saves

    def clear(self) -> None:
        """Forget the stored state and counters, and switch every failure off."""
        with self._lock:
            self._fail_next = 0
            self._fail_all = False
            self._fail_load = False
            self._failed_saves = 0
        super().clear()

    def _check_save(self, state: StateObject[Any]) -> None:
        if self._fail_next > 0:
            self._fail_next -= 1
            source = "fail_next_save"
        elif self._fail_all:
            source = "fail_saves"
        else:
            return
        self._failed_saves += 1
        raise PersistError(
            f"injected save failure (FailingPersistence.{source}) for generation {state.generation}"
        )

    def _check_load(self) -> None:
        if self._fail_load:
            raise PersistError("injected load failure (FailingPersistence.fail_load)")
