"""The deterministic in-process cluster (``docs/testing.md``): one TestClock, a seeded network.

Everything runs in the calling thread. Messages move only when the network is
driven: :meth:`DeterministicCluster.run_until_idle`, :meth:`~DeterministicCluster.advance`,
or a blocking call (a slow-path query) that drives it until it completes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..runtime._protocol import ActorRef, ActorRuntime
from ._clock import TestClock
from ._cluster_base import LocalClusterBase
from ._simnet import SimNetwork

__all__ = ["DeterministicCluster", "local_cluster"]


class DeterministicCluster(LocalClusterBase):
    """A cluster of nodes on :class:`TestRuntime` over a seeded :class:`SimNetwork`.

    Options as :class:`~dstate_core.testing.LocalClusterBase`, and ``seed``.
    """

    network: SimNetwork

    def __init__(
        self,
        node_ids: Iterable[str],
        *,
        seed: int = 0,
        clock: TestClock | None = None,
        failure_timeout: float = 5.0,
        **node_options: Any,
    ) -> None:
        test_clock = clock or TestClock()
        super().__init__(
            node_ids, clock=test_clock, failure_timeout=failure_timeout, **node_options
        )
        self.clock: TestClock = test_clock
        self.network = SimNetwork(test_clock, seed=seed, failure_timeout=failure_timeout)
        self.faults = self.network.faults
        self._start()

    def _new_runtime(self, node_id: str) -> ActorRuntime:
        return self.network.add_runtime(node_id)

    def _leave_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        self.network.remove(node_id)

    def _crash_runtime(self, node_id: str, runtime: ActorRuntime) -> None:
        self.network.crash(node_id)

    # -- driving --------------------------------------------------------------------

    def run_until_idle(self) -> int:
        """Deliver every message and due timer; time does not move. Returns the events run."""
        return self.network.run_until_idle()

    def advance(self, seconds: float) -> int:
        """Move the clock, firing due timers and delayed messages, delivering as it goes."""
        return self.network.advance(seconds)

    # -- faults ---------------------------------------------------------------------

    def set_faults(
        self,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        src: str | None = None,
        dst: str | None = None,
    ) -> None:
        """Per-message fault probabilities and a max delay (s) on the matching links."""
        self.network.set_faults(drop, duplicate, reorder, delay, src, dst)

    def clear_faults(self) -> None:
        """A perfect network again."""
        self.network.clear_faults()

    def _inject(self, src: str, ref: ActorRef, data: bytes) -> None:
        self.network.inject(src, ref, data)


@contextmanager
def local_cluster(node_ids: Sequence[str], **options: Any) -> Iterator[DeterministicCluster]:
    """A deterministic in-process cluster; closed when the ``with`` block ends.

    Options: ``seed`` (network randomness, default 0), ``clock`` (a
    :class:`TestClock`), ``failure_timeout`` (s until a crash becomes
    ``NodeLeft``, default 5.0), ``change_feed``, ``cluster_secret``,
    ``max_message_bytes``.
    """
    cluster = DeterministicCluster(node_ids, **options)
    try:
        yield cluster
    finally:
        cluster.close()
