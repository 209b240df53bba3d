"""Turning a peer's payload bytes into a state, view or delta (SPEC §2.4, §5).

Wraps the state type's (possibly user-overridden) deserializers and sorts
every failure into one of two kinds the engine treats differently: an
unreadable wire *version* (subject to the version-mismatch policy) and a
*malformed* payload (counted, the view kept, nothing requested).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..model._errors import DeserializeError
from ..model._state import DeltaDistributedState, DistributedState

__all__ = ["PayloadDecoder", "Unreadable"]


class Unreadable(Exception):
    """A payload could not be used.

    Attributes:
        unknown_version: the wire version not understood, or ``None`` when the
            payload was malformed.
    """

    def __init__(self, detail: str, unknown_version: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unknown_version = unknown_version


class PayloadDecoder:
    """Decodes one state type's snapshots and deltas; raises only :class:`Unreadable`."""

    def __init__(self, state_type: type[DistributedState]) -> None:
        self._state_type = state_type
        self._delta_type: type[DeltaDistributedState] | None = (
            state_type if issubclass(state_type, DeltaDistributedState) else None
        )

    def snapshot(self, payload: bytes, wire_version: int) -> Any:
        """The state (simple) or view (delta-aware) in a snapshot."""
        kind = self._delta_type
        if kind is None:
            return self._run(
                self._state_type.deserialize_state, payload, wire_version, self._state_type
            )
        return self._run(kind.deserialize_view, payload, wire_version, kind.View)

    def delta(self, payload: bytes, wire_version: int) -> BaseModel:
        """The delta in a delta update."""
        kind = self._delta_type
        if kind is None:
            raise Unreadable("a delta update for a simple state")
        value: BaseModel = self._run(kind.deserialize_delta, payload, wire_version, kind.Delta)
        return value

    def apply(self, view: Any, delta: BaseModel) -> BaseModel:
        """``view`` advanced by ``delta`` through the state's ``apply_delta``."""
        kind = self._delta_type
        assert kind is not None
        try:
            value = kind.apply_delta(view, delta)
        except Exception as exc:
            raise Unreadable(f"apply_delta() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, kind.View):
            raise Unreadable(f"apply_delta() returned a {type(value).__qualname__}")
        return value

    @staticmethod
    def _run(decode: Any, payload: bytes, wire_version: int, expected: type) -> Any:
        try:
            value = decode(payload, wire_version)
        except DeserializeError as exc:
            raise Unreadable(str(exc), exc.unknown_version) from exc
        except Exception as exc:
            raise Unreadable(f"the deserializer raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, expected):
            raise Unreadable(
                f"the deserializer returned a {type(value).__qualname__}, "
                f"not a {expected.__qualname__}"
            )
        return value
