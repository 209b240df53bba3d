"""The node's change-feed aggregator, sans-IO.

Shards in ``ACTIVE_FEED_LAZY_PULL`` mode hand their committed generations to
the one aggregator of their node. It keeps the highest generation per
``(state, source)`` and, at most ``batch_interval`` after the first
notification of a batch, broadcasts ONE :class:`BatchedChangeFeed` carrying
every state type's changes.
"""

from __future__ import annotations

from ..model._config import ChangeFeedConfig
from ..model._generation import Generation
from ..wire._codec import WireCodec
from ..wire._messages import BatchedChangeFeed, ChangeNotification
from ._actions import FEED_FLUSH, Action, Broadcast, StartTimer

__all__ = ["ChangeFeedAggregator"]


class ChangeFeedAggregator:
    """Deduplicates and batches one node's change notifications.

    Concurrency: used only from the node's feed mailbox; :meth:`batches_for`
    may be read from any thread.
    """

    def __init__(self, node_id: str, config: ChangeFeedConfig, codec: WireCodec) -> None:
        self._node_id = node_id
        self._config = config
        self._codec = codec
        self._pending: dict[tuple[str, str], Generation] = {}
        self._timer_running = False
        self._by_state: dict[str, int] = {}
        self.batches_sent = 0

    @property
    def pending(self) -> int:
        """Notifications waiting for the next batch."""
        return len(self._pending)

    def record(self, note: ChangeNotification) -> list[Action]:
        """Remember ``note`` (highest generation wins); starts the batch timer if idle."""
        key = (note.state_name, note.source_node)
        held = self._pending.get(key)
        if held is None or note.generation > held:
            self._pending[key] = note.generation
        if self._timer_running:
            return []
        self._timer_running = True
        return [StartTimer(FEED_FLUSH, self._config.batch_interval)]

    def flush(self) -> list[Action]:
        """The batch timer fired: broadcast everything pending as one batch."""
        self._timer_running = False
        if not self._pending:
            return []
        notes = tuple(
            ChangeNotification(state, source, generation)
            for (state, source), generation in sorted(self._pending.items())
        )
        self._pending.clear()
        actions: list[Action] = []
        for chunk in self._chunks(notes):
            actions.append(Broadcast(chunk))
            self.batches_sent += 1
        for state in {note.state_name for note in notes}:
            self._by_state[state] = self._by_state.get(state, 0) + 1
        return actions

    def _chunks(self, notes: tuple[ChangeNotification, ...]) -> list[bytes]:
        """Encode ``notes``, splitting the batch if it exceeds the size cap."""
        try:
            return [self._codec.encode(BatchedChangeFeed(self._node_id, notes))]
        except ValueError:
            if len(notes) <= 1:
                raise
            half = len(notes) // 2
            return self._chunks(notes[:half]) + self._chunks(notes[half:])

    def batches_for(self, state_name: str) -> int:
        """How many batches carried a notification of ``state_name``."""
        return self._by_state.get(state_name, 0)
