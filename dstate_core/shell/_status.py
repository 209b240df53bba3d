"""What a node tells an observer about its states (``python -m dstate_core status``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..net._report import StateReport, ViewReport
from ._shard import Shard

__all__ = ["state_reports"]


def state_reports(shards: Iterable[Shard[Any]], now: float) -> list[StateReport]:
    """One report per shard: its own generation, its health, and its view of each peer.

    ``now`` is the node clock's :meth:`~dstate_core.Clock.now` (the rows' sync times
    are on that clock). Reads memory only: safe from any thread.
    """
    reports = []
    for shard in sorted(shards, key=lambda s: s.name):
        own = shard.state.generation
        views = []
        for row in shard.sync_status():
            held = row.local_generation
            synced = row.last_sync_time
            views.append(
                ViewReport(
                    peer=row.node_id,
                    incarnation=None if held is None else held.incarnation,
                    age=None if held is None else held.age,
                    synced_ago=None if synced is None else max(0.0, now - synced),
                    failures=row.consecutive_failures,
                )
            )
        reports.append(
            StateReport(
                name=shard.name,
                incarnation=own.incarnation,
                age=own.age,
                health=shard.health().status.name,
                views=views,
            )
        )
    return reports
