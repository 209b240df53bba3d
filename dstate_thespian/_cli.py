"""``python -m dstate_thespian node ...``: the command line of a node process.

Parses and checks the options (every check that can fail runs before the
actor system starts), then hands them to :class:`~._process.NodeProcess`.
Exit status: 0 after a clean stop, 2 for anything the user must fix (one line
on stderr saying what), 1 for an unexpected failure.

Importing :mod:`dstate_thespian` (which ``-m`` does first) has already set
Thespian's convention timing in the environment, before Thespian's convention
module is imported: set ``CONVENTION_REREGISTRATION_PERIOD`` and friends in the
environment of the process to change it.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from dstate_core import DistributedState
from dstate_core.model import validate_state_type
from dstate_core.wire import MAX_NAME_LENGTH

from ._process import STRATEGIES, CliError, NodeOptions, NodeProcess, StateSpec
from ._protocol import ALL_PEERS
from ._system import normalize_address

__all__ = ["build_parser", "main", "parse_options", "parse_state"]

_log = logging.getLogger("dstate.thespian.node")

PROG = "python -m dstate_thespian"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m dstate_thespian`` parser (one subcommand: ``node``)."""
    parser = _Parser(prog=PROG, description="Run dstate nodes on Thespian.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    node = commands.add_parser(
        "node",
        help="run one node process",
        description=(
            "Run one dstate node hosting the given states in its own Thespian actor system. "
            "Control it with JSON lines on stdin (see docs/thespian.md); stop it with Ctrl-C, "
            'SIGTERM or {"cmd": "shutdown"}.'
        ),
    )
    node.add_argument("--node-id", required=True, metavar="ID", help="unique in the cluster")
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
        "--state",
        action="append",
        required=True,
        metavar="MODULE:CLASS[@push|@feed]",
        help="a state class to host (repeatable); after '@' its sync strategy: active push "
        "(default) or change feed with lazy pull",
    )
    node.add_argument(
        "--host",
        metavar="ADDR",
        help="the address peers reach this node at (default: the leader's address for the "
        "leader, else the local address that routes to the leader; 127.0.0.1 without "
        "--convention)",
    )
    node.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep each state's own shard (DIR/NAME.state) and the node's incarnation here: "
        "a restart resumes its generations",
    )
    node.add_argument(
        "--cluster-secret-file",
        type=Path,
        metavar="FILE",
        help="a file holding the HMAC key every member shares (whitespace around it is ignored)",
    )
    node.add_argument(
        "--feed-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="the change feed's batch interval (default 1.0)",
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
    node.add_argument(
        "--control",
        choices=("stdio", "none"),
        default="stdio",
        help="read JSON commands from stdin (default) or not at all",
    )
    node.add_argument(
        "--exit-on-eof",
        action="store_true",
        help="shut down when stdin ends (for a supervisor that holds the pipe)",
    )
    node.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="stderr logging level (default WARNING)",
    )
    return parser


def parse_state(text: str) -> StateSpec:
    """``MODULE:CLASS[@push|@feed]`` as a checked :class:`StateSpec`.

    Raises:
        CliError: a bad form, a module that does not import, or not a state class.
    """
    target, at, strategy = text.partition("@")
    strategy = strategy if at else "push"
    if strategy not in STRATEGIES:
        raise CliError(f"--state {text}: the strategy after '@' is one of {sorted(STRATEGIES)}")
    module_name, colon, qualname = target.partition(":")
    if not colon or not module_name or not qualname:
        raise CliError(f"--state {text}: expected MODULE:CLASS[@push|@feed]")
    try:
        found: object = importlib.import_module(module_name)
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise CliError(
            f"--state {text}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {reason}); check the name and PYTHONPATH"
        ) from None
    for part in qualname.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CliError(f"--state {text}: module {module_name!r} has no {qualname!r}") from None
    if not isinstance(found, type) or not issubclass(found, DistributedState):
        raise CliError(f"--state {text}: {qualname} is not a DistributedState subclass")
    try:
        validate_state_type(found)
    except (TypeError, ValueError) as exc:
        raise CliError(f"--state {text}: {exc}") from None
    return StateSpec(found, strategy, text)


def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise CliError(f"cannot read --cluster-secret-file {str(path)!r}: {exc.strerror}") from None
    if not secret:
        raise CliError(f"--cluster-secret-file {str(path)!r} is empty")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        _log.warning("the cluster secret file %s is readable by other users (chmod 600)", path)
    return secret


def _check_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CliError(f"--data-dir {str(path)!r} is not a writable directory: {exc}") from None
    return path


def _is_local(host: str) -> bool:
    """True if ``host`` names an address of this machine (we can bind it)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    for info in infos:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((str(info[4][0]), 0))
            except OSError:
                continue
            return True
    return False


def _route_to(host: str, port: int) -> str:
    """The local address that traffic to ``host`` leaves from (127.0.0.1 if unknown)."""
    try:
        if ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            return "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))  # UDP: no packet is sent
            return str(sock.getsockname()[0])
    except (OSError, ValueError):
        return "127.0.0.1"


def parse_options(args: argparse.Namespace) -> NodeOptions:
    """Check the ``node`` arguments; nothing is started.

    Raises:
        CliError: what to fix.
    """
    node_id = args.node_id
    if not node_id or node_id == ALL_PEERS or len(node_id) > MAX_NAME_LENGTH:
        raise CliError(f"--node-id must be 1..{MAX_NAME_LENGTH} characters other than '*'")
    if not 0 < args.admin_port < 65536:
        raise CliError(f"--admin-port must be 1..65535, got {args.admin_port}")
    for name in ("feed_interval", "join_timeout"):
        value = getattr(args, name)
        if not 0 < value < float("inf"):
            raise CliError(f"--{name.replace('_', '-')} must be a number of seconds > 0")
    convention = None
    leader = True
    if args.convention is not None:
        try:
            convention = normalize_address(args.convention)
        except ValueError:
            raise CliError(f"--convention must be HOST:PORT, got {args.convention!r}") from None
        conv_host, _, conv_port = convention.rpartition(":")
        leader = int(conv_port) == args.admin_port and _is_local(conv_host)
    if args.host is not None:
        host = args.host
    elif convention is None:
        host = "127.0.0.1"
    else:
        conv_host, _, conv_port = convention.rpartition(":")
        host = conv_host if leader else _route_to(conv_host, int(conv_port))
    states = [parse_state(text) for text in args.state]
    names = [spec.state_type.NAME for spec in states]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CliError(f"--state: more than one class with NAME {duplicates}")
    return NodeOptions(
        node_id=node_id,
        admin_port=args.admin_port,
        convention=convention,
        leader=leader,
        host=host,
        states=states,
        data_dir=None if args.data_dir is None else _check_data_dir(args.data_dir),
        cluster_secret=(
            None if args.cluster_secret_file is None else _read_secret(args.cluster_secret_file)
        ),
        feed_interval=args.feed_interval,
        join_timeout=args.join_timeout,
        run_dir=args.run_dir,
        control=args.control,
        exit_on_eof=args.exit_on_eof,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    prog = f"{PROG} {args.command}"
    try:
        process = NodeProcess(parse_options(args), sys.stdout)
        process.start()
    except CliError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return process.run(sys.stdin)
