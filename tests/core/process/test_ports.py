"""free_port: a port no outgoing connection can take before it is bound."""

from __future__ import annotations

from pathlib import Path

from dstate_core.process import free_port, port_bindable


def test_free_ports_are_bindable_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert all(10_000 <= port < low for port in ports), ports
    assert all(port_bindable(port) for port in ports)
    assert len(set(ports)) > 1  # picked at random, not one fixed port
