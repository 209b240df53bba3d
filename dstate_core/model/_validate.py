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

A ``list`` or ``dict`` of models goes further where the model allows it (the
field has no constraints or validators of its own, the state no model
validators): only the elements that changed are validated, each against its
model, so one changed entry of a long list costs one entry's check. Models are
compared by their fields (``__dict__``), not through pydantic's slower ``==``.
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
    by_element = _fields_checked_by_element(cls)
    for name in cls.model_fields:
        value = getattr(state, name)
        old = getattr(before, name)
        if _same(value, old):
            continue
        try:
            element = by_element.get(name)
            if element is not None and _validate_elements(value, old, element):
                continue
            raw = _dumped(value) if name in holds_models else value
            validator.validate_assignment(state, name, raw)
        except ValidationError as exc:
            raise MutationError(
                f"state {getattr(cls, 'NAME', cls.__qualname__)!r}: the mutation's result is "
                f"not a valid {cls.__qualname__}, so nothing was committed: {exc}"
            ) from exc


def _same(value: Any, old: Any) -> bool:
    if value is old:
        return True
    try:
        if isinstance(value, BaseModel):
            return type(value) is type(old) and value.__dict__ == old.__dict__
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return isinstance(old, list) and _same_models(value, old)
        if isinstance(value, dict) and value and _models_in(value):
            return (
                isinstance(old, dict)
                and value.keys() == old.keys()
                and _same_models(list(value.values()), [old[k] for k in value])
            )
        return bool(value == old)
    except Exception:  # e.g. an array whose == is element-wise, or not all models: check it
        return False


def _same_models(values: list[Any], olds: list[Any]) -> bool:
    """Lists of models compared field by field (C-level dict comparisons, several times
    faster than pydantic's ``==`` on each)."""
    return (
        len(values) == len(olds)
        and list(map(type, values)) == list(map(type, olds))
        and [v.__dict__ for v in values] == [o.__dict__ for o in olds]
    )


def _models_in(value: dict[Any, Any]) -> bool:
    return isinstance(next(iter(value.values())), BaseModel)


def _validate_elements(value: Any, old: Any, model: type[BaseModel]) -> bool:
    """Validate, in place, the models of ``value`` (a list or dict) that differ from
    ``old``'s; False if ``value`` is not of that shape, or an element is invalid:
    then the whole field is validated (its error names the path, ``items.3.x``)."""
    try:
        return _replace_changed(value, old, model)
    except ValidationError:
        return False


def _replace_changed(value: Any, old: Any, model: type[BaseModel]) -> bool:
    check = model.__pydantic_validator__.validate_python
    if isinstance(value, list) and isinstance(old, list):
        for i, item in enumerate(value):
            if not isinstance(item, model):
                return False
            if i < len(old) and _same(item, old[i]):
                continue
            value[i] = check(_dumped(item))
        return True
    if isinstance(value, dict) and isinstance(old, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, model):
                return False
            if key in old and _same(item, old[key]):
                continue
            value[key] = check(_dumped(item))
        return True
    return False


@functools.cache
def _fields_holding_models(cls: type[BaseModel]) -> frozenset[str]:
    """The fields whose type can hold a pydantic model (those need a deeper check)."""
    return frozenset(
        name for name, field in cls.model_fields.items() if _mentions_model(field.annotation)
    )


@functools.cache
def _fields_checked_by_element(cls: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The ``list[M]`` and ``dict[str, M]`` fields whose changed elements alone may be
    validated (no constraints or validators on the field, no model validators), by
    the element model ``M``."""
    decorators = cls.__pydantic_decorators__
    if decorators.model_validators:
        return {}
    validated = {name for d in decorators.field_validators.values() for name in d.info.fields}
    out: dict[str, type[BaseModel]] = {}
    for name, field in cls.model_fields.items():
        if field.metadata or name in validated or "*" in validated:
            continue
        origin, args = typing.get_origin(field.annotation), typing.get_args(field.annotation)
        element = args[-1] if args else None
        if not (isinstance(element, type) and issubclass(element, BaseModel)):
            continue
        if (origin is list and len(args) == 1) or (origin is dict and args[0] is str):
            out[name] = element
    return out


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
