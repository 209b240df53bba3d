"""The command-line options every node process shares, and how they are checked.

A runtime's ``python -m dstate_<runtime> node`` adds its own options (where
it listens, how it finds the cluster) to :func:`add_node_options` and turns
the parsed arguments into :class:`NodeOptions` with :func:`parse_node_options`.
Every check that can fail runs before anything starts; each failure is a
:class:`CliError`: one line saying what to fix, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..model._config import SyncStrategy
from ..model._state import DistributedState, validate_state_type
from ..runtime._parcels import ALL_PEERS
from ..wire._codec import MAX_NAME_LENGTH

__all__ = [
    "STRATEGIES",
    "CliError",
    "NodeOptions",
    "OneLineParser",
    "StateSpec",
    "add_node_options",
    "check_data_dir",
    "check_seconds",
    "one_command_parser",
    "parse_node_options",
    "parse_state",
    "read_secret",
]

_log = logging.getLogger("dstate.node")

#: Seconds between full snapshots under ``@periodic``.
PERIODIC_INTERVAL = 5.0

#: The sync strategies a ``--state`` may name after ``@``.
STRATEGIES: dict[str, Callable[[], SyncStrategy]] = {
    "push": SyncStrategy.active_push,
    "feed": SyncStrategy.feed_lazy_pull,
    "periodic": lambda: SyncStrategy.periodic_only(PERIODIC_INTERVAL),
}


class CliError(Exception):
    """A problem the user can fix (a bad option, a busy port...): one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` in one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def one_command_parser(
    prog: str, description: str, command: str, summary: str, details: str
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """A ``python -m ...`` parser with one subcommand, and the subcommand's parser (both
    with one-line errors): ``summary`` is its line in ``--help``, ``details`` its own help."""
    parser = OneLineParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    return parser, commands.add_parser(command, help=summary, description=details)


@dataclass(frozen=True)
class StateSpec:
    """One ``--state``: the class and its sync strategy (a key of :data:`STRATEGIES`)."""

    state_type: type[DistributedState]
    strategy: str
    text: str


@dataclass(frozen=True)
class NodeOptions:
    """The checked options every node process has."""

    node_id: str
    states: Sequence[StateSpec]
    data_dir: Path | None = None
    cluster_secret: bytes | None = None
    feed_interval: float = 1.0
    control: str = "stdio"
    exit_on_eof: bool = False
    persistence: str = "file"
    metrics_port: int | None = None


def add_node_options(
    node: argparse.ArgumentParser, docs: str, secret_option: str = "--cluster-secret-file"
) -> None:
    """Add the shared options to a runtime's ``node`` subcommand parser.

    Args:
        docs: where the control channel is documented (for ``--help``).
        secret_option: the name of the cluster secret file's option.
    """
    node.add_argument("--node-id", required=True, metavar="ID", help="unique in the cluster")
    node.add_argument(
        "--state",
        action="append",
        required=True,
        metavar="MODULE:CLASS[@push|@feed|@periodic]",
        help="a state class to host (repeatable); after '@' its sync strategy: active push "
        "(default), change feed with lazy pull, or a full snapshot every "
        f"{PERIODIC_INTERVAL:g} s only",
    )
    node.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep each state's own shard (DIR/NAME.state) and the node's incarnation here: "
        "a restart resumes its generations",
    )
    node.add_argument(
        "--persistence",
        choices=("file", "sqlite"),
        default="file",
        help="how --data-dir keeps each shard: one file per state (default) or one SQLite "
        "database per state",
    )
    # Every command line accepts --secret-file, as python -m dstate_core status does.
    names = [secret_option] + (["--secret-file"] if secret_option != "--secret-file" else [])
    node.add_argument(
        *names,
        dest="cluster_secret_file",
        type=Path,
        metavar="FILE",
        help="a file holding the secret every member shares (whitespace around it is "
        "ignored; it must not be readable by other users)",
    )
    node.add_argument(
        "--feed-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="the change feed's batch interval (default 1.0)",
    )
    node.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics (needs the "
        "'prometheus' extra: pip install 'dstate[prometheus]')",
    )
    node.add_argument(
        "--control",
        choices=("stdio", "none"),
        default="stdio",
        help=f"read JSON commands from stdin (default; see {docs}) or not at all",
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


def parse_state(text: str) -> StateSpec:
    """``MODULE:CLASS[@push|@feed|@periodic]`` as a checked :class:`StateSpec`.

    Raises:
        CliError: a bad form, a module that does not import, or not a state class.
    """
    target, at, strategy = text.partition("@")
    strategy = strategy if at else "push"
    if strategy not in STRATEGIES:
        raise CliError(f"--state {text}: the strategy after '@' is one of {sorted(STRATEGIES)}")
    module_name, colon, qualname = target.partition(":")
    if not colon or not module_name or not qualname:
        raise CliError(f"--state {text}: expected MODULE:CLASS[@push|@feed|@periodic]")
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


def read_secret(path: Path, option: str = "--cluster-secret-file", private: bool = False) -> bytes:
    """The cluster secret in ``path`` (surrounding whitespace stripped).

    Args:
        option: the option's name, for messages.
        private: refuse a file other users may read (else only warn).

    Raises:
        CliError: the file cannot be read, is empty, or (``private``) is not private.
    """
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise CliError(f"cannot read {option} {str(path)!r}: {exc.strerror}") from None
    if not secret:
        raise CliError(f"{option} {str(path)!r} is empty")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        if private:
            raise CliError(
                f"{option} {str(path)!r} may be read by other users: run chmod 600 {path}"
            )
        _log.warning("the cluster secret file %s is readable by other users (chmod 600)", path)
    return secret


def check_data_dir(path: Path) -> Path:
    """``path``, created if needed, once a file could be written in it.

    Raises:
        CliError: it is not a writable directory.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CliError(f"--data-dir {str(path)!r} is not a writable directory: {exc}") from None
    return path


def check_seconds(args: argparse.Namespace, *names: str) -> None:
    """Each named option must be a finite number of seconds > 0.

    Raises:
        CliError: one is not.
    """
    for name in names:
        value = getattr(args, name)
        if not 0 < value < float("inf"):
            raise CliError(f"--{name.replace('_', '-')} must be a number of seconds > 0")


def parse_node_options(
    args: argparse.Namespace, secret_option: str = "--cluster-secret-file", private: bool = False
) -> NodeOptions:
    """Check the shared options; nothing is started.

    Args:
        secret_option, private: see :func:`read_secret`.

    Raises:
        CliError: what to fix.
    """
    node_id = args.node_id
    if not node_id or node_id == ALL_PEERS or len(node_id) > MAX_NAME_LENGTH:
        raise CliError(f"--node-id must be 1..{MAX_NAME_LENGTH} characters other than '*'")
    check_seconds(args, "feed_interval")
    states = [parse_state(text) for text in args.state]
    names = [spec.state_type.NAME for spec in states]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CliError(f"--state: more than one class with NAME {duplicates}")
    return NodeOptions(
        node_id=node_id,
        states=states,
        data_dir=None if args.data_dir is None else check_data_dir(args.data_dir),
        cluster_secret=(
            None
            if args.cluster_secret_file is None
            else read_secret(args.cluster_secret_file, secret_option, private)
        ),
        feed_interval=args.feed_interval,
        control=args.control,
        exit_on_eof=args.exit_on_eof,
        persistence=args.persistence,
        metrics_port=_metrics_port(args.metrics_port),
    )


def _metrics_port(port: int | None) -> int | None:
    if port is None:
        return None
    if not 0 < port < 65536:
        raise CliError(f"--metrics-port must be 1..65535, got {port}")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise CliError(
            "--metrics-port needs prometheus-client: pip install 'dstate[prometheus]'"
        ) from None
    return port
