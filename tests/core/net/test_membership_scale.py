"""Membership traffic at 1,000 simulated nodes: many minutes, so only in ``make soak``.

``conftest.py`` leaves this file out of the default run (``DSTATE_SOAK=1`` collects it);
``bench/membership_traffic.py`` prints the same figures.
"""

from __future__ import annotations

from dstate_core.testing._netsim import measure_traffic


def test_traffic_per_node_stays_bounded_at_1000_nodes() -> None:
    hundred, thousand = measure_traffic(100, 10.0), measure_traffic(1000, 10.0)
    assert thousand.bytes_per_node < 2 * hundred.bytes_per_node
    assert thousand.msgs_per_node < 1.2 * hundred.msgs_per_node
