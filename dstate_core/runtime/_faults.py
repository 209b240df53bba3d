"""The fault model every in-process cluster uses: partitions, link faults, failure detection.

One :class:`FaultModel` per test cluster answers, for each cross-node message,
whether a partition separates its ends (:meth:`FaultModel.blocked`) and what
the link does to it (:meth:`FaultModel.plan`: drop, duplicate, reorder,
delay), and says how long a crashed node stays a member before its peers get
``NodeLeft`` (:attr:`FaultModel.failure_timeout`). It is pure policy: the
runtime or network that consults it carries messages and timers out itself,
in virtual time (``SimNetwork``) or real time (``PykkaNetwork``, Thespian's
``local_cluster``). Every random choice uses the ``random.Random`` it is given.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["REORDER_WINDOW", "FaultModel", "non_negative_seconds"]

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


class FaultModel:
    """Fault rules (the latest matching rule wins), the current partition and the
    failure-detection delay.

    Args:
        failure_timeout: seconds from a crash to the ``NodeLeft`` its peers get.
        rng: the source of every random choice (a seeded one replays a run).

    Concurrency: every change replaces an immutable value, so any thread may
    consult the model while another changes it; ``plan`` uses ``rng``, which
    only the deterministic (single-threaded) network calls.
    """

    def __init__(self, failure_timeout: float = 5.0, rng: random.Random | None = None) -> None:
        self.failure_timeout = non_negative_seconds("failure_timeout", failure_timeout)
        self._rng = rng or random.Random()
        self._rules: tuple[_FaultRule, ...] = ()
        self._partition: dict[str, int] | None = None

    def set_faults(
        self,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        src: str | None = None,
        dst: str | None = None,
    ) -> None:
        """Add a rule for the links ``src -> dst`` (``None`` = any); validates every argument.

        Raises:
            ValueError: a probability outside [0, 1] or a bad delay.
            TypeError: ``src`` or ``dst`` is neither a node id nor ``None``.
        """
        for name, node in (("src", src), ("dst", dst)):
            if node is not None and not isinstance(node, str):
                raise TypeError(f"set_faults({name}=...) must be a node id or None, got {node!r}")
        faults = _Faults(
            drop=_probability("drop", drop),
            duplicate=_probability("duplicate", duplicate),
            reorder=_probability("reorder", reorder),
            delay=non_negative_seconds("set_faults(delay=...)", delay),
        )
        self._rules = (*self._rules, _FaultRule(src, dst, faults))

    def clear_faults(self) -> None:
        """Forget every fault rule."""
        self._rules = ()

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the nodes into ``groups``; unlisted nodes form one more group.

        A bare node id counts as a group of one; a new partition replaces the old.

        Raises:
            ValueError: a node is listed in two groups.
            TypeError: a group holds something other than node ids.
        """
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
