"""``python -m dstate_thespian node ...``: the command line of a node process.

Parses and checks the options (every check that can fail runs before the
actor system starts), then hands them to :class:`~._process.ThespianNodeProcess`.
Exit status: 0 after a clean stop, 2 for anything the user must fix (one line
on stderr saying what), 1 for an unexpected failure.

Importing :mod:`dstate_thespian` (which ``-m`` does first) has already set
Thespian's convention timing in the environment, before Thespian's convention
module is imported: set ``CONVENTION_REREGISTRATION_PERIOD`` and friends in the
environment of the process to change it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dstate_core.process import (
    CliError,
    NodeProcess,
    add_node_options,
    check_seconds,
    is_local_address,
    normalize_address,
    one_command_parser,
    parse_node_options,
    route_to,
    run_node_command,
)

from ._process import ThespianNodeOptions, ThespianNodeProcess

__all__ = ["build_parser", "main", "parse_thespian_options"]

PROG = "python -m dstate_thespian"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m dstate_thespian`` parser (one subcommand: ``node``)."""
    parser, node = one_command_parser(
        PROG,
        "Run dstate nodes on Thespian.",
        "node",
        "run one node process",
        "Run one dstate node hosting the given states in its own Thespian actor system. "
        "Control it with JSON lines on stdin (see docs/thespian.md); stop it with Ctrl-C, "
        'SIGTERM or {"cmd": "shutdown"}.',
    )
    add_node_options(node, "docs/thespian.md")
    node.add_argument(
        "--admin-port",
        required=True,
        type=int,
        metavar="PORT",
        help="this node's Thespian admin TCP port",
    )
    node.add_argument(
        "--convention",
        metavar="HOST:PORT",
        help="the convention leader's admin address; the node whose own address it is leads "
        "(omit it to lead)",
    )
    node.add_argument(
        "--host",
        metavar="ADDR",
        help="the address peers reach this node at (default: the leader's address for the "
        "leader, else the local address that routes to the leader; 127.0.0.1 without "
        "--convention)",
    )
    node.add_argument(
        "--join-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a member waits for the leader to be reachable, then to be admitted "
        "(default 10)",
    )
    node.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="where the node records its pids so a later start can clean up after a crash "
        "(default $XDG_RUNTIME_DIR/dstate-thespian or a per-user temp dir)",
    )
    return parser


def parse_thespian_options(args: argparse.Namespace) -> ThespianNodeOptions:
    """Check the Thespian-specific ``node`` arguments; nothing is started.

    Raises:
        CliError: what to fix.
    """
    if not 0 < args.admin_port < 65536:
        raise CliError(f"--admin-port must be 1..65535, got {args.admin_port}")
    check_seconds(args, "join_timeout")
    convention = None
    leader = True
    if args.convention is not None:
        try:
            convention = normalize_address(args.convention)
        except ValueError:
            raise CliError(f"--convention must be HOST:PORT, got {args.convention!r}") from None
        conv_host, _, conv_port = convention.rpartition(":")
        leader = int(conv_port) == args.admin_port and is_local_address(conv_host)
    if args.host is not None:
        host = args.host
    elif convention is None:
        host = "127.0.0.1"
    else:
        conv_host, _, conv_port = convention.rpartition(":")
        host = conv_host if leader else route_to(conv_host, int(conv_port))
    return ThespianNodeOptions(
        admin_port=args.admin_port,
        convention=convention,
        leader=leader,
        host=host,
        join_timeout=args.join_timeout,
        run_dir=args.run_dir,
    )


def _build(args: argparse.Namespace) -> NodeProcess:
    return ThespianNodeProcess(parse_node_options(args), parse_thespian_options(args), sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    return run_node_command(build_parser(), _build, argv)
