"""A copy of a state model for a mutation to work on, as cheap as it can safely be.

``copy.deepcopy`` of a pydantic model costs about a millisecond per 10 KB.
Here immutable values (numbers, strings, tuples of them, frozen sets, enums...)
are shared, builtin containers are rebuilt element-wise, nested models are
copied the same way, and anything else falls back to ``copy.deepcopy``. The
result is independent of the original: mutating it in place never changes
the committed state.
"""

from __future__ import annotations

import copy
import datetime as _dt
import decimal
import enum
import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["copy_model"]

M = TypeVar("M", bound=BaseModel)

_ATOMIC: frozenset[type] = frozenset(
    {
        int,
        float,
        str,
        bytes,
        bool,
        type(None),
        complex,
        decimal.Decimal,
        uuid.UUID,
        _dt.datetime,
        _dt.date,
        _dt.time,
        _dt.timedelta,
    }
)


def _all_atomic(values: Iterable[Any]) -> bool:
    """True when every value is of an immutable scalar type (no copy needed inside)."""
    atomic = _ATOMIC
    return all(map(atomic.__contains__, map(type, values)))


def _copy_value(value: Any) -> Any:
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is dict:
        if _all_atomic(value.values()):
            return value.copy()  # the common case, at C speed
        return {k: _copy_value(v) for k, v in value.items()}
    if kind is list:
        if _all_atomic(value):
            return value.copy()
        return [_copy_value(v) for v in value]
    if kind is set:
        return set(value)  # elements of a set are hashable, normally immutable
    if kind is tuple:
        if _all_atomic(value):
            return value
        copied = tuple(_copy_value(v) for v in value)
        return value if all(a is b for a, b in zip(copied, value, strict=True)) else copied
    if kind is frozenset or isinstance(value, enum.Enum):
        return value
    if isinstance(value, BaseModel):
        clone = copy_model(value)
        # A frozen model may still hold mutable containers: share it only when
        # nothing inside it needed copying.
        if value.model_config.get("frozen") and _shares_all(clone, value):
            return value
        return clone
    return copy.deepcopy(value)


def _shares_all(clone: BaseModel, model: BaseModel) -> bool:
    """True when ``clone`` holds the very same field, extra and private values as ``model``."""
    return (
        clone.__pydantic_extra__ is model.__pydantic_extra__
        and clone.__pydantic_private__ is model.__pydantic_private__
        and all(
            a is b for a, b in zip(clone.__dict__.values(), model.__dict__.values(), strict=True)
        )
    )


def copy_model(model: M) -> M:
    """An independent copy of ``model`` whose cost follows its mutable parts."""
    clone = model.model_copy()
    attrs = clone.__dict__
    for name, value in attrs.items():
        if type(value) not in _ATOMIC:
            attrs[name] = _copy_value(value)
    extra = clone.__pydantic_extra__
    if extra:
        object.__setattr__(clone, "__pydantic_extra__", _copy_value(extra))
    private = clone.__pydantic_private__
    if private:
        object.__setattr__(clone, "__pydantic_private__", _copy_value(private))
    return clone
