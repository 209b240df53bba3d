"""``NodeHandle.start``: a ``python -m dstate_thespian node`` process, driven from Python.

Everything but the command line is the core's
:class:`~dstate_core.process.NodeHandle`.

Example::

    with NodeHandle.start("a", 19001, states=["dstate_core.testing:TestState"]) as a:
        a.ready()
        a.request("mutate", state="test_state", fn="increment", args=[1])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from dstate_core import process

__all__ = ["NodeHandle"]


class NodeHandle(process.NodeHandle):
    """A Thespian node process. Create it with :meth:`start`."""

    @classmethod
    def start(
        cls,
        node_id: str,
        admin_port: int,
        *,
        states: Sequence[str],
        convention: int | str | None = None,
        options: Sequence[str] = (),
        exit_on_eof: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> NodeHandle:
        """Start ``python -m dstate_thespian node`` (it runs until stopped).

        Args:
            node_id, admin_port, states: ``--node-id``, ``--admin-port``, ``--state`` s.
            convention: the leader's ``"host:port"``, or its port on 127.0.0.1.
            options: more command-line options (``--data-dir``...).
            exit_on_eof: pass ``--exit-on-eof``: the node stops if this process dies.
            env: environment variables added to this process's.
            cwd: the node's working directory (where ``--state`` modules import from).
        """
        args = [sys.executable, "-m", "dstate_thespian", "node", "--node-id", node_id]
        args += ["--admin-port", str(admin_port)]
        if convention is not None:
            where = f"127.0.0.1:{convention}" if isinstance(convention, int) else convention
            args += ["--convention", where]
        for state in states:
            args += ["--state", state]
        if exit_on_eof:
            args.append("--exit-on-eof")
        args += list(options)
        handle = cls.launch(args, node_id, env=env, cwd=cwd)
        handle.admin_port = admin_port
        return handle

    #: The node's Thespian admin port.
    admin_port: int = 0
