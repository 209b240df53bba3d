"""The simulated wire's link model: per-link faults and partitions (SPEC §12).

Pure policy, no event queue: :class:`SimNetwork` asks :meth:`LinkModel.blocked`
and :meth:`LinkModel.plan` for every cross-node message and schedules what they
say. Every random choice uses the network's seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LinkModel", "non_negative_seconds"]

#: A reordered message is queued up to this many positions later.
REORDER_WINDOW = 16


def non_negative_seconds(what: str, value: object) -> float:
    """Validate a finite number of seconds >= 0; returns it as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"set_faults({name}=...) must be a probability in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0


_NO_FAULTS = _Faults()


@dataclass(frozen=True, slots=True)
class _FaultRule:
    src: str | None
    dst: str | None
    faults: _Faults

    def matches(self, src: str, dst: str) -> bool:
        return (self.src is None or self.src == src) and (self.dst is None or self.dst == dst)


class LinkModel:
    """Fault rules (latest matching rule wins) and the current partition."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rules: list[_FaultRule] = []
        self._partition: dict[str, int] | None = None

    def set_faults(
        self,
        drop: float,
        duplicate: float,
        reorder: float,
        delay: float,
        src: str | None,
        dst: str | None,
    ) -> None:
        """Add a rule for the links ``src -> dst`` (``None`` = any); validates every argument."""
        for name, node in (("src", src), ("dst", dst)):
            if node is not None and not isinstance(node, str):
                raise TypeError(f"set_faults({name}=...) must be a node id or None, got {node!r}")
        faults = _Faults(
            drop=_probability("drop", drop),
            duplicate=_probability("duplicate", duplicate),
            reorder=_probability("reorder", reorder),
            delay=non_negative_seconds("set_faults(delay=...)", delay),
        )
        self._rules.append(_FaultRule(src, dst, faults))

    def clear_faults(self) -> None:
        """Forget every fault rule."""
        self._rules.clear()

    def partition(self, groups: tuple[Iterable[str], ...]) -> None:
        """Split the nodes into ``groups``; unlisted nodes form one more group."""
        where: dict[str, int] = {}
        for index, group in enumerate(groups):
            members = [group] if isinstance(group, str) else list(group)
            for node_id in members:
                if not isinstance(node_id, str):
                    raise TypeError(f"partition groups hold node ids, got {node_id!r}")
                if where.get(node_id, index) != index:
                    raise ValueError(f"node {node_id!r} is in two partition groups")
                where[node_id] = index
        self._partition = where

    def heal(self) -> None:
        """Remove the partition."""
        self._partition = None

    def blocked(self, src: str, dst: str) -> bool:
        """True when a partition separates ``src`` from ``dst``."""
        where = self._partition
        return where is not None and where.get(src, -1) != where.get(dst, -1)

    def plan(self, src: str, dst: str) -> list[tuple[float, int]]:
        """Decide one message's fate: a ``(delay, positions_later)`` per copy; [] = dropped."""
        faults = _NO_FAULTS
        for rule in reversed(self._rules):
            if rule.matches(src, dst):
                faults = rule.faults
                break
        if faults is _NO_FAULTS:
            return [(0.0, 0)]
        rng = self._rng
        if faults.drop and rng.random() < faults.drop:
            return []
        copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
        plan: list[tuple[float, int]] = []
        for _ in range(copies):
            delay = rng.uniform(0.0, faults.delay) if faults.delay else 0.0
            later = 0
            if faults.reorder and rng.random() < faults.reorder:
                later = rng.randint(2, REORDER_WINDOW)
                if faults.delay:
                    delay += rng.uniform(0.0, faults.delay)
            plan.append((delay, later))
        return plan
