"""The state model users subclass (``docs/state-model.md``).

* :class:`DistributedState` — the whole state is public and every update is a
  full snapshot.
* :class:`DeltaDistributedState` — peers see a projected *view*; mutations
  produce small *deltas*; private fields never leave the node.

Both are pydantic v2 models. ``NAME`` and the versions are checked when the
class is created; :func:`validate_state_type` completes the check at
registration (an abstract intermediate class may omit ``NAME``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import msgpack
from pydantic import BaseModel, ValidationError

from ._errors import DeserializeError, NewerRecordError, PersistError
from ._msgpack import pack, unpack
from ._urgency import SyncUrgency

__all__ = ["DeltaDistributedState", "DistributedState", "validate_state_type"]

_DECODE_ERRORS = (
    ValueError,
    TypeError,
    ValidationError,
    msgpack.UnpackException,
    msgpack.ExtraData,
    OverflowError,
    RecursionError,
)


def _check_version(cls: type, attr: str) -> None:
    value = getattr(cls, attr, None)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{cls.__qualname__}.{attr} must be a positive int, got {value!r}")


def _check_name(cls: type) -> None:
    name = getattr(cls, "NAME", None)
    if not isinstance(name, str) or not name.strip():
        raise TypeError(
            f"{cls.__qualname__} needs a class attribute NAME: a non-empty str "
            f"unique across the cluster (got {name!r})"
        )


def _decode_model(model: type[BaseModel], data: bytes, what: str) -> Any:
    try:
        return model.model_validate(unpack(data))
    except _DECODE_ERRORS as exc:
        raise DeserializeError(f"cannot decode {what}: {exc}") from exc


def _require_version(cls: type, what: str, wire_version: int) -> None:
    expected = getattr(cls, "WIRE_VERSION", None)
    if wire_version != expected:
        raise DeserializeError(
            f"{cls.__qualname__} reads {what} at wire version {expected}, "
            f"not {wire_version}; override deserialize_* to read older versions",
            unknown_version=wire_version,
        )


class DistributedState(BaseModel):
    """A replicated state whose whole value is public (``docs/state-model.md``).

    Subclass it, set ``NAME`` (unique across the cluster) and declare fields::

        class Counter(DistributedState):
            NAME = "counter"
            value: int = 0
    """

    NAME: ClassVar[str]
    WIRE_VERSION: ClassVar[int] = 1
    STORAGE_VERSION: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "NAME" in cls.__dict__:
            _check_name(cls)
        for attr in ("WIRE_VERSION", "STORAGE_VERSION"):
            _check_version(cls, attr)

    def serialize_state(self) -> bytes:
        """The whole state as msgpack (the wire form of a simple state)."""
        return pack(self.model_dump())

    @classmethod
    def deserialize_state(cls, data: bytes, wire_version: int) -> Self:
        """Rebuild a state sent at ``wire_version``.

        Raises:
            DeserializeError: with ``unknown_version`` for a version this class
                does not read, without it for bad bytes.
        """
        _require_version(cls, "states", wire_version)
        result: Self = _decode_model(cls, data, f"{cls.__qualname__} state")
        return result

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> Self:
        """Upgrade a persisted state written at an older ``STORAGE_VERSION``.

        The default knows no migrations and raises :class:`PersistError`.
        """
        raise PersistError(
            f"{cls.__qualname__} (NAME={getattr(cls, 'NAME', '?')!r}) cannot read storage "
            f"version {from_version}: it is at STORAGE_VERSION {cls.STORAGE_VERSION} and "
            "migrate_state() is not overridden"
        )

    def to_storage(self) -> dict[str, Any]:
        """The plain form persisted by storage backends (private fields included)."""
        return self.model_dump()

    @classmethod
    def from_storage(cls, data: Any, storage_version: int) -> Self:
        """Rebuild a persisted state, migrating it if it is older.

        Raises:
            NewerRecordError: the record is newer than this code.
            PersistError: the record cannot be read or migrated.
        """
        if isinstance(data, cls) and storage_version == cls.STORAGE_VERSION:
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if storage_version > cls.STORAGE_VERSION:
            raise NewerRecordError(
                getattr(cls, "NAME", cls.__qualname__), storage_version, cls.STORAGE_VERSION
            )
        if not isinstance(data, dict):
            raise PersistError(
                f"stored {cls.__qualname__} is a {type(data).__name__}, expected a mapping"
            )
        try:
            if storage_version < cls.STORAGE_VERSION:
                return cls.migrate_state(dict(data), storage_version)
            return cls.model_validate(data)
        except PersistError:
            raise
        except Exception as exc:
            raise PersistError(f"cannot rebuild stored {cls.__qualname__}: {exc}") from exc


class DeltaDistributedState(DistributedState):
    """A replicated state that publishes a view and sends deltas (``docs/state-model.md``).

    Subclasses set ``View`` and ``Delta`` (pydantic models) and implement
    :meth:`project_view`, :meth:`project_delta` and :meth:`apply_delta`;
    :meth:`sync_urgency` is optional. Fields not in the view never leave the
    node.

    ``apply_delta`` must return the advanced view without mutating its ``view``
    argument (e.g. ``view.model_copy(update=...)``): the argument is the view
    that readers may be looking at.

    Optional: a classmethod ``apply_state_delta(cls, state_dict, delta_dict) ->
    dict`` lets :class:`SqlitePersistence` log deltas instead of writing the
    whole state on every save; define it only if the delta captures every
    change to the state, private fields included.
    """

    View: ClassVar[type[BaseModel]]
    Delta: ClassVar[type[BaseModel]]

    def project_view(self) -> BaseModel:
        """The public view of this state."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement project_view()")

    @classmethod
    def project_delta(cls, change: Any) -> BaseModel:
        """The delta to send for ``change``, the value the mutation returned."""
        raise NotImplementedError(f"{cls.__qualname__} must implement project_delta()")

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> BaseModel:
        """Return ``view`` advanced by ``delta`` (a new object)."""
        raise NotImplementedError(f"{cls.__qualname__} must implement apply_delta()")

    @classmethod
    def sync_urgency(cls, old_view: Any, new_view: Any, delta: Any) -> SyncUrgency:
        """How soon this change should reach peers (default: the push mode)."""
        return SyncUrgency.DEFAULT

    @classmethod
    def serialize_view(cls, view: BaseModel) -> bytes:
        """A view as msgpack."""
        return pack(view.model_dump())

    @classmethod
    def deserialize_view(cls, data: bytes, wire_version: int) -> BaseModel:
        """Rebuild a view sent at ``wire_version`` (raises :class:`DeserializeError`)."""
        _require_version(cls, "views", wire_version)
        result: BaseModel = _decode_model(cls.View, data, f"{cls.__qualname__} view")
        return result

    @classmethod
    def serialize_delta(cls, delta: BaseModel) -> bytes:
        """A delta as msgpack."""
        return pack(delta.model_dump())

    @classmethod
    def deserialize_delta(cls, data: bytes, wire_version: int) -> BaseModel:
        """Rebuild a delta sent at ``wire_version`` (raises :class:`DeserializeError`)."""
        _require_version(cls, "deltas", wire_version)
        result: BaseModel = _decode_model(cls.Delta, data, f"{cls.__qualname__} delta")
        return result

    @classmethod
    def has_custom_urgency(cls) -> bool:
        """True when the class overrides :meth:`sync_urgency`."""
        return cls.sync_urgency.__func__ is not DeltaDistributedState.sync_urgency.__func__  # type: ignore[attr-defined]


def validate_state_type(state_type: object) -> None:
    """Check that ``state_type`` can be registered.

    Raises:
        TypeError: not a state class, no ``NAME``, or a delta state missing its
            ``View``/``Delta`` models or hooks.
        ValueError: a non-positive version.
    """
    if not isinstance(state_type, type) or not issubclass(state_type, DistributedState):
        raise TypeError(
            f"register() takes a DistributedState or DeltaDistributedState subclass, "
            f"got {state_type!r}"
        )
    if state_type in (DistributedState, DeltaDistributedState):
        raise TypeError(f"register() needs a subclass of {state_type.__qualname__}, not the base")
    _check_name(state_type)
    for attr in ("WIRE_VERSION", "STORAGE_VERSION"):
        _check_version(state_type, attr)
    if issubclass(state_type, DeltaDistributedState):
        for attr in ("View", "Delta"):
            model = getattr(state_type, attr, None)
            if not isinstance(model, type) or not issubclass(model, BaseModel):
                raise TypeError(
                    f"{state_type.__qualname__}.{attr} must be a pydantic model class, "
                    f"got {model!r}"
                )
        for hook in ("project_view", "project_delta", "apply_delta"):
            if getattr(state_type, hook).__qualname__.startswith("DeltaDistributedState."):
                raise TypeError(f"{state_type.__qualname__} must implement {hook}()")
