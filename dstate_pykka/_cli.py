"""``python -m dstate_pykka node ...``: the command line of a network node process.

Parses and checks the options (every check that can fail runs before the node
listens), then hands them to :class:`~._process.PykkaNodeProcess`. Exit status:
0 after a clean stop, 2 for anything the user must fix (one line on stderr
saying what), 1 for an unexpected failure.
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
    one_command_parser,
    parse_node_options,
    run_node_command,
)

from ._process import PykkaNetOptions, PykkaNodeProcess

__all__ = ["build_parser", "main", "parse_net_options"]

PROG = "python -m dstate_pykka"
_SECRET = "--secret-file"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m dstate_pykka`` parser (one subcommand: ``node``)."""
    parser, node = one_command_parser(
        PROG,
        "Run dstate nodes on Pykka, over the network.",
        "node",
        "run one node process",
        "Run one dstate node hosting the given states; it joins the other node processes "
        "through its seeds, encrypted with the cluster secret. Control it with JSON lines "
        'on stdin (see docs/network.md); stop it with Ctrl-C, SIGTERM or {"cmd": "shutdown"}.',
    )
    add_node_options(node, "docs/network.md", secret_option=_SECRET)
    node.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="where to listen (port 0: any free port; the ready event says which)",
    )
    node.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a member to join through (repeatable; none: start a cluster)",
    )
    node.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="the address other nodes reach this one at (behind NAT, in a container, or "
        "when listening on 0.0.0.0)",
    )
    node.add_argument(
        "--certificates",
        type=Path,
        metavar="DIR",
        help="instead of --secret-file: a directory of per-node certificate files "
        "(server.key_secret, NODE.key_secret, every member's NODE.key; see docs/network.md)",
    )
    node.add_argument(
        "--insecure",
        action="store_true",
        help="no encryption and no authentication (only with --listen on 127.0.0.1)",
    )
    node.add_argument(
        "--failure-timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="a silent node is declared left within about this long (default 1.0)",
    )
    node.add_argument(
        "--join-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for a seed before running alone (and still trying; default 10)",
    )
    return parser


def parse_net_options(args: argparse.Namespace) -> PykkaNetOptions:
    """Check the network options; nothing is started.

    Raises:
        CliError: what to fix.
    """
    check_seconds(args, "failure_timeout", "join_timeout")
    given = [
        name
        for name, value in (
            (_SECRET, args.cluster_secret_file),
            ("--certificates", args.certificates),
            ("--insecure", args.insecure or None),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise CliError(f"give one of {_SECRET}, --certificates or --insecure, not {given}")
    if not given:
        raise CliError(
            f"a network node needs {_SECRET} (32+ random bytes, chmod 600; the same file "
            "on every node) or --certificates DIR, or --insecure for a test on 127.0.0.1"
        )
    host = args.listen.rpartition(":")[0]
    if args.insecure and host not in ("127.0.0.1", "localhost"):
        raise CliError(
            f"--insecure only listens on 127.0.0.1 (got --listen {args.listen}): anyone who "
            f"reaches the port could join; give {_SECRET} instead"
        )
    return PykkaNetOptions(
        listen=args.listen,
        seeds=tuple(args.seed),
        advertise=args.advertise,
        insecure=args.insecure,
        certificates=args.certificates,
        failure_timeout=args.failure_timeout,
        join_timeout=args.join_timeout,
    )


def _build(args: argparse.Namespace) -> NodeProcess:
    net = parse_net_options(args)
    options = parse_node_options(args, _SECRET, private=True)
    return PykkaNodeProcess(options, net, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    return run_node_command(build_parser(), _build, argv)
