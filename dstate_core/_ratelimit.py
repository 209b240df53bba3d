"""Rate-limited logging for peer garbage: once per (sender, reason) per period."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._logs import AnyLogger, NodeLog
from .model._clock import Clock

__all__ = ["MAX_KEYS", "DropLog", "RateLimitedLog"]

#: Keys remembered at most; past it, expired keys (or, if none, all) are forgotten.
MAX_KEYS = 1024


class RateLimitedLog:
    """Logs a message for a key at most once per ``period`` seconds of ``clock``.

    Later occurrences within the period are counted and the count is reported
    with the next message that gets through.
    """

    def __init__(self, logger: AnyLogger, clock: Clock, period: float = 60.0) -> None:
        self._logger = logger
        self._clock = clock
        self._period = period
        self._last: dict[tuple[str, ...], float] = {}
        self._suppressed: dict[tuple[str, ...], int] = {}

    def log(
        self, level: int, key: tuple[str, ...], msg: str, *args: Any, peer: str | None = None
    ) -> bool:
        """Log ``msg % args`` unless ``key`` was logged within the period; True if logged.

        ``peer`` becomes the record's ``peer`` attribute (with a :class:`NodeLog`)."""
        now = self._clock.now()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= MAX_KEYS:
            self._forget_before(now - self._period)
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += " (%d similar messages suppressed)"
            args = (*args, skipped)
        if isinstance(self._logger, NodeLog):
            self._logger.log(level, msg, *args, peer=peer)
        else:
            self._logger.log(level, msg, *args)
        return True

    def warning(self, key: tuple[str, ...], msg: str, *args: Any, peer: str | None = None) -> bool:
        """Shorthand for :meth:`log` at WARNING."""
        return self.log(logging.WARNING, key, msg, *args, peer=peer)

    def _forget_before(self, cutoff: float) -> None:
        # Keys come from peer input (sender names): never let them grow without bound.
        # A key whose period is over logs again anyway; its suppressed count is lost.
        for key in [k for k, t in self._last.items() if t <= cutoff] or list(self._last):
            del self._last[key]
            self._suppressed.pop(key, None)


class DropLog:
    """Counts dropped inbound messages by reason and logs each (reason, source) rate-limited.

    Concurrency: :meth:`drop` and the readers may run on different threads.
    """

    def __init__(self, logger: AnyLogger, clock: Clock, period: float = 60.0) -> None:
        self._log = RateLimitedLog(logger, clock, period)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._sources: dict[str, int] = {}

    def drop(
        self,
        reason: str,
        source: str,
        msg: str,
        *args: Any,
        level: int = logging.WARNING,
        peer: str | None = None,
    ) -> None:
        """Count one drop for ``reason``; log ``msg % args`` unless recently logged.

        ``source`` keys the counts and the rate limit; ``peer`` (the node it came from,
        when known) becomes the record's ``peer``."""
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
            # Sources come from peer input: past MAX_KEYS of them, new ones are lumped.
            key = source if source in self._sources or len(self._sources) < MAX_KEYS else "others"
            self._sources[key] = self._sources.get(key, 0) + 1
            self._log.log(level, (reason, source), msg, *args, peer=peer)

    def counts(self) -> dict[str, int]:
        """Drops so far by reason (a copy)."""
        with self._lock:
            return dict(self._counts)

    def by_source(self) -> dict[str, int]:
        """Drops so far by claimed source (at most ``MAX_KEYS`` of them, then ``"others"``)."""
        with self._lock:
            return dict(self._sources)

    def total(self) -> int:
        """Drops so far, all reasons."""
        with self._lock:
            return sum(self._counts.values())
