"""Test kit: deterministic clock, runtime, cluster, persistence doubles and sample states."""

from ._clock import TestClock

__all__ = ["TestClock"]
