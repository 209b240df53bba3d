"""How soon a delta should reach peers (``docs/state-model.md#sync-urgency``)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["SyncUrgency", "UrgencyKind"]


class UrgencyKind(enum.Enum):
    """The four ways a delta-aware state can ask for its change to be sent."""

    #: Use the state's configured push mode.
    DEFAULT = "default"
    #: Push this change now, whatever the push mode.
    IMMEDIATE = "immediate"
    #: Push within a delay; later changes in the window coalesce (latest wins).
    DELAYED = "delayed"
    #: Do not send; the next sent update carries the cumulative change.
    SUPPRESS = "suppress"


@dataclass(frozen=True, slots=True)
class SyncUrgency:
    """The answer of ``DeltaDistributedState.sync_urgency`` for one change.

    Use the constants ``SyncUrgency.DEFAULT``, ``SyncUrgency.IMMEDIATE``,
    ``SyncUrgency.SUPPRESS`` or the constructor ``SyncUrgency.delayed(seconds)``.
    """

    kind: UrgencyKind
    delay: float = 0.0

    DEFAULT: ClassVar[SyncUrgency]
    IMMEDIATE: ClassVar[SyncUrgency]
    SUPPRESS: ClassVar[SyncUrgency]

    def __post_init__(self) -> None:
        if self.kind is UrgencyKind.DELAYED:
            _check_delay(self.delay)
        elif self.delay != 0.0:
            raise ValueError(f"SyncUrgency.{self.kind.name} takes no delay")

    @classmethod
    def delayed(cls, seconds: float) -> SyncUrgency:
        """Push within ``seconds``; later changes in the window coalesce.

        Raises:
            ValueError: ``seconds`` is not a finite number > 0.
        """
        _check_delay(seconds)
        return cls(UrgencyKind.DELAYED, float(seconds))

    def __repr__(self) -> str:
        if self.kind is UrgencyKind.DELAYED:
            return f"SyncUrgency.delayed({self.delay})"
        return f"SyncUrgency.{self.kind.name}"


def _check_delay(seconds: object) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ValueError(
            f"SyncUrgency.delayed(seconds) needs a finite number of seconds > 0, got {seconds!r}"
        )


SyncUrgency.DEFAULT = SyncUrgency(UrgencyKind.DEFAULT)
SyncUrgency.IMMEDIATE = SyncUrgency(UrgencyKind.IMMEDIATE)
SyncUrgency.SUPPRESS = SyncUrgency(UrgencyKind.SUPPRESS)
