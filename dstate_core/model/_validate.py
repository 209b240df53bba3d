"""Valid commits only: a mutated state is checked against its model before it is committed.

A closure changes a copy of the state in place, and pydantic does not check
attribute assignments unless a model asks it to, so ``state.count = "x"`` on an
``int`` field goes unnoticed until a peer fails to read the update. Before a
mutation is stored or sent, every field that differs from the committed state
is validated as if it were assigned (``validate_assignment``: types, constraints,
field validators), and the validated value is kept. Unchanged fields cost one
comparison each, so the cost follows what changed, not the size of the state.
A nested model is validated from its dumped fields, since pydantic accepts a
model instance as it is.
"""

from __future__ import annotations

import functools
import typing
import warnings
from typing import Any

from pydantic import BaseModel, ValidationError

from ._errors import MutationError

__all__ = ["validate_changes"]


def validate_changes(state: BaseModel, before: BaseModel) -> None:
    """Validate, in place, every field of ``state`` that differs from ``before``.

    Raises:
        MutationError: a changed field is not valid for the model; the message
            is pydantic's (it names the field), ``__cause__`` its error.
    """
    cls = type(state)
    validator = cls.__pydantic_validator__
    holds_models = _fields_holding_models(cls)
    for name in cls.model_fields:
        value = getattr(state, name)
        if _same(value, getattr(before, name)):
            continue
        raw = _dumped(value) if name in holds_models else value
        try:
            validator.validate_assignment(state, name, raw)
        except ValidationError as exc:
            raise MutationError(
                f"state {getattr(cls, 'NAME', cls.__qualname__)!r}: the mutation's result is "
                f"not a valid {cls.__qualname__}, so nothing was committed: {exc}"
            ) from exc


def _same(value: Any, old: Any) -> bool:
    try:
        return value is old or bool(value == old)
    except Exception:  # e.g. an array whose == is element-wise: check it
        return False


@functools.cache
def _fields_holding_models(cls: type[BaseModel]) -> frozenset[str]:
    """The fields whose type can hold a pydantic model (those need a deeper check)."""
    return frozenset(
        name for name, field in cls.model_fields.items() if _mentions_model(field.annotation)
    )


def _mentions_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_mentions_model(arg) for arg in typing.get_args(annotation))


def _dumped(value: Any) -> Any:
    """``value`` with every model in it turned into its fields (models are not re-checked)."""
    if isinstance(value, BaseModel):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a wrong field type is the validator's to report
            return value.model_dump()
    if isinstance(value, list | tuple):
        return type(value)(_dumped(item) for item in value)
    if isinstance(value, dict):
        return {key: _dumped(item) for key, item in value.items()}
    return value
