"""The persistence port (``docs/persistence.md``): what a backend for the owned shard provides."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._errors import PersistError
from ._generation import StateObject

__all__ = ["PersistError", "StatePersistence"]


@runtime_checkable
class StatePersistence(Protocol):
    """Stores one node's owned shard of one state type.

    The library calls :meth:`save` after every committed mutation and before
    anything is published, and :meth:`load` once at registration.
    """

    def save(self, state: StateObject[Any], state_delta: Any) -> None:
        """Durably store ``state``; ``state_delta`` is the mutation's delta or ``None``.

        Raises:
            PersistError: the state was not stored; the mutation is rolled back.
        """
        ...

    def load(self) -> StateObject[Any] | None:
        """The last saved state (its ``value`` may be the plain dict form), or ``None``.

        Raises:
            PersistError: a record exists but cannot be read.
        """
        ...
