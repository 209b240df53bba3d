"""Which peers a shard acts on, and what it last held of those that went (SPEC §7).

A member's messages are judged by the receiver rules. A departed node's late
messages are ignored until it joins again. When it does, its view is gone, so
the newest generation held before is kept as a *floor*: an update older than
it is a late message of the past (:func:`~dstate_core.engine._rules.judge`), never a
step back. The same floor guards a view dropped for an unreadable version.
"""

from __future__ import annotations

from ..model._generation import Generation

__all__ = ["Membership"]


class Membership:
    """The peers of one shard and the floors of those without a view.

    Concurrency: owned by one engine, used in its mailbox only.
    """

    def __init__(self) -> None:
        self._members: set[str] = set()
        self._departed: dict[str, Generation] = {}
        self._floors: dict[str, Generation] = {}

    def __contains__(self, node: object) -> bool:
        return node in self._members

    def __len__(self) -> int:
        return len(self._members)

    def members(self) -> frozenset[str]:
        """The current peers."""
        return frozenset(self._members)

    def departed(self, node: str) -> bool:
        """True if ``node`` was a member and left (and has not joined again)."""
        return node in self._departed

    def join(self, node: str) -> None:
        """``node`` is a member (again); a departed node keeps its floor."""
        floor = self._departed.pop(node, None)
        if floor is not None:
            self._floors[node] = floor
        self._members.add(node)

    def leave(self, node: str, *held: Generation | None) -> bool:
        """``node`` left; ``held``: the generations last held or seen of it.

        Returns:
            False if ``node`` was not a member (nothing changes).
        """
        if node not in self._members:
            return False
        self._members.discard(node)
        known = [g for g in (*held, self._floors.pop(node, None)) if g is not None]
        self._departed[node] = max(known, default=Generation(0, 0))
        return True

    def view_dropped(self, node: str, generation: Generation) -> None:
        """The view of ``node`` at ``generation`` was removed while it stays a member."""
        self._floors[node] = generation

    def floor(self, node: str) -> Generation | None:
        """The newest generation held of ``node`` before its view went, if any."""
        return self._floors.get(node)
