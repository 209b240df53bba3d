"""msgpack helpers shared by the state model and the wire codec.

Pydantic's python-mode dump keeps sets, enums, datetimes and the like as
Python objects; :func:`pack` turns those into msgpack-friendly values, and
pydantic's validation turns them back on the way in.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import pathlib
import uuid
from typing import Any

import msgpack
from pydantic import BaseModel

__all__ = ["pack", "unpack"]


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, decimal.Decimal | uuid.UUID | pathlib.PurePath):
        return str(obj)
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    raise TypeError(f"cannot encode {type(obj).__qualname__} with msgpack")


def pack(value: Any) -> bytes:
    """Encode plain data (plus sets, enums, dates, UUIDs...) as msgpack."""
    return msgpack.packb(value, default=_to_plain, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode msgpack produced by :func:`pack`; raises on malformed input."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
