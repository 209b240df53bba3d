"""A state in mid-upgrade for the schedules: three releases, two wire versions.

``docs/rolling-upgrades.md``'s example as code under test: release 0 sends a
price as ``cents`` (wire version 1); release 1 renames it ``amount_cents``, reads
wire versions 1 and 2 and still writes 1, and migrates release 0's stored
records; release 2 writes wire version 2. A careful rollout moves every node
to release 1 before any node runs release 2; then no node ever receives what
it cannot read. A careless one skips ahead, and the version-mismatch policy is
all that stands between the readers and the bytes they cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Self

import msgpack

from dstate_core import DeserializeError, DistributedState

__all__ = ["RELEASES", "PriceV1", "amount_of", "raise_price"]


class PriceV1(DistributedState):
    """Release 0: reads and writes wire version 1 only (the default deserializer)."""

    NAME: ClassVar[str] = "price"
    cents: int = 0


class PriceV2Reader(DistributedState):
    """Release 1: reads wire versions 1 and 2, writes 1; stores its own fields."""

    NAME: ClassVar[str] = "price"
    WIRE_VERSION: ClassVar[int] = 1
    STORAGE_VERSION: ClassVar[int] = 2
    amount_cents: int = 0
    currency: str = "EUR"

    def serialize_state(self) -> bytes:
        if self.WIRE_VERSION == 1:
            return msgpack.packb({"cents": self.amount_cents})
        return super().serialize_state()

    @classmethod
    def deserialize_state(cls, data: bytes, wire_version: int) -> Self:
        if wire_version not in (1, 2):
            raise DeserializeError(
                f"price: unknown wire version {wire_version}", unknown_version=wire_version
            )
        try:
            fields = msgpack.unpackb(data)
            if wire_version == 1:
                return cls(amount_cents=fields["cents"])
            return cls.model_validate(fields)
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise DeserializeError(f"price: bad v{wire_version} payload: {exc}") from exc

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> Self:
        if from_version == 1:  # a record written by release 0
            return cls(amount_cents=data["cents"])
        return super().migrate_state(data, from_version)


class PriceV2(PriceV2Reader):
    """Release 2: writes wire version 2."""

    WIRE_VERSION: ClassVar[int] = 2


#: The releases in rollout order.
RELEASES: tuple[type[DistributedState], ...] = (PriceV1, PriceV2Reader, PriceV2)


def amount_of(value: Any) -> int:
    """The price, whichever release's object holds it."""
    return int(value.cents if isinstance(value, PriceV1) else value.amount_cents)


def raise_price(amount: int) -> Callable[[Any], None]:
    """A mutation that works on every release."""

    def mutation(state: Any) -> None:
        if isinstance(state, PriceV1):
            state.cents += amount
        else:
            state.amount_cents += amount

    return mutation
