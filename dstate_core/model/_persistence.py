"""The persistence port (``docs/persistence.md``): what a backend for the owned shard provides."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._errors import PersistError
from ._generation import StateObject

__all__ = ["PersistError", "StatePersistence"]


@runtime_checkable
class StatePersistence(Protocol):
    """Stores one node's owned shard of one state type.

    The library calls :meth:`save` for every mutation, or once for a batch of
    pipelined mutations (its last state), before anything of it is published,
    and :meth:`load` once at registration.
    """

    def save(self, state: StateObject[Any], state_delta: Any) -> None:
        """Durably store ``state``; ``state_delta`` is the mutation's delta, or ``None``
        (a simple state, or a state standing for a batch of mutations).

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
