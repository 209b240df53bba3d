"""The groups a runtime's own actors belong to, shared by the threaded runtimes.

A runtime keeps here which of its local actors joined which cluster-wide
group; how other nodes learn of them is the runtime's business.
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar

__all__ = ["LocalGroups"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


M = TypeVar("M", bound=_Named)


class LocalGroups(Generic[M]):
    """Group name → local members, in join order. Concurrency: thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, list[M]] = {}

    def join(self, group: str, member: M) -> bool:
        """Add ``member`` to ``group``; False if it was already there."""
        with self._lock:
            members = self._groups.setdefault(group, [])
            if member in members:
                return False
            members.append(member)
            return True

    def leave(self, group: str, member: M) -> bool:
        """Remove ``member`` from ``group``; False if it was not there."""
        with self._lock:
            members = self._groups.get(group)
            if members is None or member not in members:
                return False
            members.remove(member)
            if not members:
                del self._groups[group]
            return True

    def forget(self, member: M) -> bool:
        """Remove ``member`` from every group (it stopped); False if it was in none."""
        with self._lock:
            found = False
            for group in [g for g, members in self._groups.items() if member in members]:
                self._groups[group].remove(member)
                if not self._groups[group]:
                    del self._groups[group]
                found = True
            return found

    def members(self, group: str) -> list[M]:
        """The members of ``group``, sorted by name."""
        with self._lock:
            return sorted(self._groups.get(group, ()), key=lambda member: member.name)

    def table(self) -> dict[str, list[str]]:
        """Every group and the names of its members (what peers are told)."""
        with self._lock:
            return {group: [m.name for m in members] for group, members in self._groups.items()}

    def clear(self) -> None:
        """Forget every group (shutdown)."""
        with self._lock:
            self._groups.clear()
