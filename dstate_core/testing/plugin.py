"""pytest plugin (entry point ``pytest11``): fixtures for testing code that uses dstate.

Fixtures:
    dstate_clock: a fresh :class:`TestClock`.
    dstate_persistence: a fresh :class:`InMemoryPersistence`.
    dstate_cluster: a factory ``dstate_cluster(node_ids, **options)`` of
        deterministic clusters, all closed at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from ._clock import TestClock
from ._persistence import InMemoryPersistence

# Let the conformance suite's asserts explain themselves when a runtime fails it.
pytest.register_assert_rewrite("dstate_core.testing.conformance")


@pytest.fixture
def dstate_clock() -> TestClock:
    """A fresh deterministic clock (now() == 0.0)."""
    return TestClock()


@pytest.fixture
def dstate_persistence() -> InMemoryPersistence:
    """A fresh in-memory persistence backend."""
    return InMemoryPersistence()


@pytest.fixture
def dstate_cluster() -> Iterator[Callable[..., Any]]:
    """A factory of deterministic clusters; every cluster made is closed after the test."""
    from ._cluster import local_cluster

    made: list[Any] = []

    def factory(node_ids: Sequence[str], **options: Any) -> Any:
        manager = local_cluster(node_ids, **options)
        cluster = manager.__enter__()
        made.append(manager)
        return cluster

    yield factory
    for manager in reversed(made):
        manager.__exit__(None, None, None)
