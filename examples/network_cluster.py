"""Three Pykka node processes on 127.0.0.1, encrypted with a generated cluster secret.

Each node is ``python -m dstate_pykka node``, a process of its own that hosts
:class:`Counter` (this module's state) and listens on one TCP port (port 0:
the system picks a free one, and the node's ``ready`` event says which). Node
``a`` starts the cluster; ``b`` and ``c`` join it through ``a``'s address. This
process only drives them through their JSON control channels
(:class:`dstate_pykka.PykkaNodeHandle`):

1. write 32 random bytes, hex-encoded, to ``secret`` in a temporary directory
   (mode 600: a node refuses a secret file other users may read);
2. start the three nodes and wait until each sees the other two;
3. mutate ``a``'s counter, then wait until ``b`` and ``c`` hold ``a``'s new
   generation and print the value each of them sees;
4. stop every node cleanly (closing its stdin) and print their exit statuses.

Run it: ``python -m examples.network_cluster`` (exit status 0 when every step
happened). On several hosts the commands are the same with real addresses; see
``docs/network.md``.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from dstate_core import DistributedState
from dstate_core.process import NodeHandleError
from dstate_pykka import PykkaNodeHandle

__all__ = ["Counter", "main"]

ROOT = Path(__file__).resolve().parents[1]
#: The ``--state`` every node hosts (the node imports it from ``ROOT``).
STATE_SPEC = "examples.network_cluster:Counter"
#: Seconds to wait for something that normally takes milliseconds.
DEADLINE = 10.0


class Counter(DistributedState):
    """One number per node; each node owns its own."""

    NAME: ClassVar[str] = "counter"
    value: int = 0

    @staticmethod
    def add(amount: int) -> Callable[[Counter], None]:
        """A closure for ``mutate`` (the control channel's ``fn``) that adds ``amount``."""

        def mutation(state: Counter) -> None:
            state.value += amount

        return mutation


def write_secret(directory: Path) -> Path:
    """A new cluster secret in ``directory/secret``, readable by this user only."""
    path = directory / "secret"
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def start_node(node_id: str, secret: Path, seeds: list[str]) -> PykkaNodeHandle:
    """Start one node process listening on a free port of 127.0.0.1."""
    return PykkaNodeHandle.start(
        node_id, states=[STATE_SPEC], seeds=seeds, secret_file=secret, cwd=ROOT
    )


def saw_join(node: PykkaNodeHandle, other: str) -> bool:
    """Wait until ``node`` reports ``other`` joined (its ``joined`` event)."""

    def joined(event: dict[str, Any]) -> bool:
        return event.get("event") == "joined" and event.get("node") == other

    return node.wait_event(joined, DEADLINE) is not None


def stop(node: PykkaNodeHandle) -> int | None:
    """Close the node's stdin (a clean stop) and return its exit status (None: killed)."""
    try:
        return node.close_stdin()
    except NodeHandleError:
        return None  # it did not stop in time: close() kills what is left
    finally:
        node.close()


def main() -> int:
    """Run the three-process cluster; returns the exit status (0 when all went well)."""
    with tempfile.TemporaryDirectory(prefix="dstate-net-") as tmp:
        secret = write_secret(Path(tmp))
        nodes: list[PykkaNodeHandle] = []
        try:
            a = start_node("a", secret, [])
            nodes.append(a)
            print(f"a listens on {a.address} (secure: {a.ready()['secure']})")
            for node_id in ("b", "c"):
                nodes.append(start_node(node_id, secret, [a.address]))
            for node in nodes:
                others = {n.node_id for n in nodes} - {node.node_id}
                for other in sorted(others):
                    if not saw_join(node, other):
                        print(f"FAILED: {node.node_id} never saw {other} join")
                        return 1
            print("members:", ", ".join(nodes[0].request("status")["members"]))

            generation = a.request("mutate", state=Counter.NAME, fn="add", args=[5])["generation"]
            print(f"a added 5: generation {generation}")
            for node in nodes[1:]:
                node.request(
                    "wait", state=Counter.NAME, node="a", age=generation[1], timeout=DEADLINE
                )
                views = node.request("views", state=Counter.NAME)["views"]
                print(f"{node.node_id} sees a's counter = {views['a']['value']['value']}")
        finally:
            statuses = {node.node_id: stop(node) for node in nodes}
        print("stopped every node:", statuses)
        return 0 if set(statuses.values()) == {0} else 1


if __name__ == "__main__":
    raise SystemExit(main())
