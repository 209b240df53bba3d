"""Measurements shared by the node-process benchmarks (Thespian and network nodes)."""

from __future__ import annotations

from typing import Any

from dstate_core.process import NodeHandle

__all__ = ["visibility"]


def visibility(
    a: NodeHandle, b: NodeHandle, state: str, warmup: int, samples: int, deadline: float
) -> list[float]:
    """Seconds from ``mutate`` being called on ``a`` (as a bare message counts from before
    its send) to ``b``'s view event, one mutation at a time; ``warmup`` mutations first are
    not counted.

    Raises:
        RuntimeError: a generation never reached ``b`` within ``deadline`` seconds.
    """
    b.request("watch", state=state)
    found = []
    for i in range(warmup + samples):
        reply = a.request("mutate", state=state, fn="increment", args=[1])
        age = reply["generation"][1]

        def seen(e: dict[str, Any], age: int = age) -> bool:
            gen = e.get("generation")
            return (
                e.get("event") == "view"
                and e["node"] == a.node_id
                and gen is not None
                and (gen[1] == age)
            )

        event = b.wait_event(seen, deadline)
        if event is None:
            raise RuntimeError(f"generation age {age} never reached {b.node_id}")
        if i >= warmup:
            found.append(event["t"] - reply["t0"])
    b.request("unwatch", state=state)
    return found
