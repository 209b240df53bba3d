"""The exception hierarchy of dstate (``docs/state-model.md``).

Every error the library raises derives from :class:`DStateError`, so callers can
catch the whole family at once and still tell who is at fault: registry errors
are the caller's, :class:`DeserializeError` is a peer's, :class:`PersistError`
is the store's.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorSendError",
    "DStateError",
    "DeserializeError",
    "DuplicateNameError",
    "ForeignRecordError",
    "MutationError",
    "NewerRecordError",
    "NodeShutdownError",
    "PersistError",
    "QueryError",
    "QueryTimeoutError",
    "RegistryError",
    "StalePeerError",
    "StateNotRegisteredError",
    "TypeMismatchError",
    "a_or_an",
]


class DStateError(Exception):
    """Base class of every error raised by dstate."""


class RegistryError(DStateError):
    """A state type could not be registered or looked up."""


class DuplicateNameError(RegistryError):
    """A second state type was registered under a ``NAME`` already in use."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a state named {name!r} is already registered on this node; "
            "give each state type a unique NAME"
        )
        self.name = name


class StateNotRegisteredError(RegistryError):
    """``lookup`` found no state registered under the name."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"no state named {name!r} is registered on this node{hint}")
        self.name = name


class TypeMismatchError(RegistryError):
    """``lookup_typed`` found the name registered with another type."""

    def __init__(self, name: str, expected: type, actual: type) -> None:
        super().__init__(
            f"state {name!r} is registered as {actual.__qualname__}, not {expected.__qualname__}"
        )
        self.name = name
        self.expected = expected
        self.actual = actual


class QueryError(DStateError):
    """A query could not be answered within its freshness bound."""


class StalePeerError(QueryError):
    """A peer's view is older than the query allows and could not be refreshed.

    Attributes:
        node_id: the first peer that could not be refreshed.
        last_sync_time: when its view was last refreshed (the node clock's
            monotonic seconds), or ``None`` if it never was.
        stale_nodes: every peer that could not be refreshed.
    """

    def __init__(
        self,
        node_id: str,
        last_sync_time: float | None,
        state_name: str = "",
        reason: str = "",
        stale_nodes: tuple[str, ...] = (),
    ) -> None:
        others = [n for n in stale_nodes if n != node_id]
        more = f" (also stale: {', '.join(others)})" if others else ""
        why = f": {reason}" if reason else ""
        where = f" of state {state_name!r}" if state_name else ""
        super().__init__(f"the view{where} from peer {node_id!r} is stale{why}{more}")
        self.node_id = node_id
        self.last_sync_time = last_sync_time
        self.state_name = state_name
        self.stale_nodes = stale_nodes or (node_id,)


class QueryTimeoutError(QueryError, TimeoutError):
    """A slow-path query did not complete in time."""


class MutationError(DStateError):
    """A mutation was not committed (e.g. its state could not be persisted)."""


class DeserializeError(DStateError):
    """Bytes could not be turned back into a state, view or delta.

    Attributes:
        unknown_version: the wire or storage version that was not understood,
            or ``None`` when the bytes themselves were bad.
    """

    def __init__(self, message: str, *, unknown_version: int | None = None) -> None:
        super().__init__(message)
        self.unknown_version = unknown_version


class PersistError(DStateError):
    """A persistence backend failed to save or load."""


class ForeignRecordError(PersistError):
    """The store holds a record of another state: a configuration error, never overwritten."""


class NewerRecordError(PersistError):
    """The stored record has a newer ``STORAGE_VERSION`` than the code: refused, never overwritten.

    Attributes:
        state_name: the state's ``NAME``.
        stored_version: the record's storage version.
        code_version: the ``STORAGE_VERSION`` of the class that refused it.
        store: the store holding the record (its repr), if known.
    """

    def __init__(
        self, state_name: str, stored_version: int, code_version: int, store: str | None = None
    ) -> None:
        where = f"{store}: " if store else ""
        super().__init__(
            f"{where}the stored record of state {state_name!r} is at storage version "
            f"{stored_version}, newer than this code's STORAGE_VERSION {code_version}; it is "
            f"refused and left untouched. Deploy code that reads storage version "
            f"{stored_version}, or move the record out of the store to start the state fresh"
        )
        self.state_name = state_name
        self.stored_version = stored_version
        self.code_version = code_version
        self.store = store

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.state_name, self.stored_version, self.code_version, self.store),
        )


class ActorSendError(DStateError):
    """A message could not be sent because the target actor is stopped."""


class NodeShutdownError(DStateError):
    """The node (or its runtime) was shut down; the call cannot proceed."""


def a_or_an(noun: str) -> str:
    """``noun`` with its indefinite article, for messages: ``an int``, ``a str``."""
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"
