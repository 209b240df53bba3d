"""Configuration of sync strategies, the change feed and registered states (``docs/strategies.md``).

Every config object validates itself when built and names the offending field,
so a mistake surfaces at start-up rather than as a silent mis-sync later.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._persistence import StatePersistence

__all__ = [
    "ChangeFeedConfig",
    "PushMode",
    "StateConfig",
    "SyncStrategy",
    "VersionMismatchPolicy",
]


class PushMode(enum.Enum):
    """How a mutation reaches peers."""

    #: Send every mutation to every peer at once.
    ACTIVE_PUSH = "active_push"
    #: Announce it in the node's batched change feed; peers pull when a query needs it.
    ACTIVE_FEED_LAZY_PULL = "active_feed_lazy_pull"
    #: Send nothing on mutation (rely on periodic sync or pull on query).
    NONE = "none"

    def __str__(self) -> str:
        return self.name


class VersionMismatchPolicy(enum.Enum):
    """What a replica does with a message in a wire version it cannot read."""

    #: Keep the last good view (it goes stale), warn and count.
    KEEP_STALE = "keep_stale"
    #: Remove that peer's view until a readable message arrives.
    DROP_AND_WAIT = "drop_and_wait"

    def __str__(self) -> str:
        return self.name


def _positive_seconds(owner: str, name: str, value: object, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{owner}.{name} must be a number of seconds, got {value!r}")
    if value <= 0:
        raise ValueError(f"{owner}.{name} must be > 0 seconds, got {value!r}")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class SyncStrategy:
    """Which layers keep a state's views fresh (``docs/strategies.md``).

    Attributes:
        push_mode: what a mutation sends.
        periodic_full_sync: seconds between full-snapshot broadcasts, or ``None``.
        pull_on_query: whether a query may pull stale views before answering.
    """

    push_mode: PushMode = PushMode.ACTIVE_PUSH
    periodic_full_sync: float | None = None
    pull_on_query: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.push_mode, PushMode):
            raise ValueError(f"SyncStrategy.push_mode must be a PushMode, got {self.push_mode!r}")
        if self.periodic_full_sync is not None:
            object.__setattr__(
                self,
                "periodic_full_sync",
                _positive_seconds("SyncStrategy", "periodic_full_sync", self.periodic_full_sync),
            )
        if not isinstance(self.pull_on_query, bool):
            raise ValueError(
                f"SyncStrategy.pull_on_query must be True or False, got {self.pull_on_query!r}"
            )

    @classmethod
    def active_push(cls) -> SyncStrategy:
        """Every mutation is pushed to all peers at once (the default)."""
        return cls(PushMode.ACTIVE_PUSH)

    @classmethod
    def feed_lazy_pull(cls) -> SyncStrategy:
        """Mutations are announced in the batched change feed; peers pull on demand."""
        return cls(PushMode.ACTIVE_FEED_LAZY_PULL)

    @classmethod
    def feed_with_periodic_sync(cls, interval: float) -> SyncStrategy:
        """The change feed plus a full snapshot broadcast every ``interval`` seconds."""
        return cls(PushMode.ACTIVE_FEED_LAZY_PULL, periodic_full_sync=interval)

    @classmethod
    def periodic_only(cls, interval: float) -> SyncStrategy:
        """Nothing on mutation; a full snapshot broadcast every ``interval`` seconds."""
        return cls(PushMode.NONE, periodic_full_sync=interval)

    @property
    def has_fallback(self) -> bool:
        """True when something besides explicit urgency keeps views fresh."""
        return (
            self.push_mode is not PushMode.NONE
            or self.periodic_full_sync is not None
            or self.pull_on_query
        )


@dataclass(frozen=True, slots=True)
class ChangeFeedConfig:
    """The node's change-feed aggregator (``docs/strategies.md``).

    Attributes:
        batch_interval: a batch leaves at most this many seconds after its
            first notification.
    """

    batch_interval: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "batch_interval",
            _positive_seconds("ChangeFeedConfig", "batch_interval", self.batch_interval),
        )


@dataclass(frozen=True, slots=True)
class StateConfig:
    """How one registered state is synced, stored and queried (``docs/protocol.md#queries``).

    Attributes:
        sync_strategy: the layers that keep views fresh.
        persistence: where the owned shard is saved, or ``None``.
        default_staleness: the bound used by ``query(max_staleness=None)`` and
            by health checks, in seconds.
        version_mismatch_policy: what to do with an unreadable wire version.
        pull_timeout: how long one pull may take, in seconds.
    """

    sync_strategy: SyncStrategy = field(default_factory=SyncStrategy.active_push)
    persistence: StatePersistence | None = None
    default_staleness: float = 5.0
    version_mismatch_policy: VersionMismatchPolicy = VersionMismatchPolicy.KEEP_STALE
    pull_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.sync_strategy, SyncStrategy):
            raise ValueError(
                "StateConfig.sync_strategy must be a SyncStrategy "
                f"(e.g. SyncStrategy.active_push()), got {self.sync_strategy!r}"
            )
        object.__setattr__(
            self,
            "default_staleness",
            _positive_seconds(
                "StateConfig", "default_staleness", self.default_staleness, allow_inf=True
            ),
        )
        object.__setattr__(
            self,
            "pull_timeout",
            _positive_seconds("StateConfig", "pull_timeout", self.pull_timeout),
        )
        if not isinstance(self.version_mismatch_policy, VersionMismatchPolicy):
            raise ValueError(
                "StateConfig.version_mismatch_policy must be a VersionMismatchPolicy, "
                f"got {self.version_mismatch_policy!r}"
            )
        if self.persistence is not None:
            for method in ("save", "load"):
                if not callable(getattr(self.persistence, method, None)):
                    raise ValueError(
                        f"StateConfig.persistence must implement StatePersistence "
                        f"(save and load); {self.persistence!r} has no {method}()"
                    )
