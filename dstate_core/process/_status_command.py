"""``python -m dstate_core status``: look at a running network cluster from outside.

It asks a seed for its status report (which lists the members), then every
member at once, and prints one row per member and state: the owner's
generation, how far the other members' views of it lag (in generations), and
the owner's health. It joins nothing: no node counts it as a member
(:mod:`dstate_core.net._observer`).

Exit status: 0 when every member answered, is ready and grades every state
healthy; 1 otherwise; 2 for a usage error or when the seed cannot be asked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..net._observer import Observer
from ..net._report import NodeReport, StateReport
from ..net._settings import parse_address
from ._options import CliError, check_seconds, one_command_parser, read_secret

__all__ = ["ClusterStatus", "MemberStatus", "StateRow", "build_parser", "main", "observe"]

PROG = "python -m dstate_core"


@dataclass(frozen=True)
class StateRow:
    """One state of one member: its generation, the worst lag of the others' views of
    it (``None``: some member holds no view of this generation's incarnation), health."""

    name: str
    generation: str
    lag: int | None
    health: str


@dataclass(frozen=True)
class MemberStatus:
    """One member as the cluster reports it (``error`` when it did not answer)."""

    node: str
    address: str
    ready: bool = False
    states: list[StateRow] = field(default_factory=list)
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """Answered, ready, and every state healthy."""
        return self.error is None and self.ready and all(s.health == "HEALTHY" for s in self.states)


@dataclass(frozen=True)
class ClusterStatus:
    """Every member's status, sorted by node id."""

    members: list[MemberStatus]

    @property
    def healthy(self) -> bool:
        """True when every member is healthy."""
        return all(m.healthy for m in self.members)

    def as_json(self) -> dict[str, Any]:
        """The JSON the ``--json`` option prints."""
        return {
            "healthy": self.healthy,
            "members": [
                {
                    "node": m.node,
                    "address": m.address,
                    "answered": m.error is None,
                    "error": m.error,
                    "ready": m.ready,
                    "healthy": m.healthy,
                    "states": [s.__dict__ for s in m.states],
                }
                for m in self.members
            ],
        }


def observe(observer: Observer, seeds: Sequence[str]) -> ClusterStatus:
    """Ask the first seed that answers for the members, then ask them all.

    Raises:
        CliError: no seed answered (the message says why).
    """
    answers = observer.ask(list(seeds))
    first = next((a.report for a in answers if a.report is not None), None)
    if first is None:
        raise CliError(
            "cannot ask the cluster: " + "; ".join(f"{a.address}: {a.error}" for a in answers)
        )
    members = dict(first.members)
    reports = {first.node: first}
    errors: dict[str, str] = {}
    while missing := {n: a for n, a in members.items() if n not in reports and n not in errors}:
        # Members that only another member knows are asked in the next round.
        for (node, _), answer in zip(
            missing.items(), observer.ask(list(missing.values())), strict=True
        ):
            if answer.report is None:
                errors[node] = answer.error or "no answer"
            else:
                reports[node] = answer.report
                members.update(answer.report.members)
    return ClusterStatus(
        [
            _member(node, members[node], reports.get(node), reports, errors.get(node))
            for node in sorted(members)
        ]
    )


def _member(
    node: str,
    address: str,
    report: NodeReport | None,
    reports: dict[str, NodeReport],
    error: str | None,
) -> MemberStatus:
    if report is None:
        return MemberStatus(node, address, error=error or "no answer")
    rows = [
        StateRow(
            state.name,
            f"{state.incarnation}:{state.age}",
            _lag(node, state, reports),
            state.health,
        )
        for state in report.states
    ]
    return MemberStatus(node, address, report.ready, rows)


def _lag(owner: str, state: StateReport, reports: dict[str, NodeReport]) -> int | None:
    """The most generations any other member's view of ``owner``'s shard is behind."""
    worst = 0
    for node, report in reports.items():
        theirs = next((s for s in report.states if s.name == state.name), None)
        if node == owner or theirs is None:
            continue
        view = theirs.view_of(owner)
        if view is None or view.incarnation != state.incarnation or view.age is None:
            return None
        worst = max(worst, state.age - view.age)
    return worst


# -- output -------------------------------------------------------------------------

_HEADER = ("NODE", "ADDRESS", "READY", "STATE", "GENERATION", "LAG", "HEALTH")


def table_rows(status: ClusterStatus) -> list[tuple[str, ...]]:
    """One row per member and state (one per member without states, or silent)."""
    rows: list[tuple[str, ...]] = []
    for m in status.members:
        if m.error is not None:
            rows.append((m.node, m.address, "-", "-", "-", "-", f"NO ANSWER: {m.error}"))
            continue
        ready = "yes" if m.ready else "no"
        if not m.states:
            rows.append((m.node, m.address, ready, "-", "-", "-", "-"))
        for s in m.states:
            lag = "?" if s.lag is None else str(s.lag)
            rows.append((m.node, m.address, ready, s.name, s.generation, lag, s.health))
    return rows


def render_text(status: ClusterStatus) -> str:
    """The table as aligned plain text."""
    rows = [_HEADER, *table_rows(status)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    verdict = "all healthy" if status.healthy else "NOT all healthy"
    return "\n".join([*lines, f"{len(status.members)} members, {verdict}"])


def _rich_table(status: ClusterStatus) -> Any:
    from rich.table import Table

    verdict = "all healthy" if status.healthy else "[red]NOT all healthy[/red]"
    table = Table(title=f"dstate cluster: {len(status.members)} members, {verdict}")
    for column in _HEADER:
        table.add_column(column)
    for row in table_rows(status):
        style = None if row[-1] == "HEALTHY" else "red"
        table.add_row(*row, style=style)
    return table


# -- the command ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m dstate_core`` parser (one subcommand: ``status``)."""
    parser, status = one_command_parser(
        PROG,
        "Look at a running dstate network cluster.",
        "status",
        "print every member, its states, generations, lag (in generations) and health",
        "Ask a network cluster for its members' status, as an observer (it joins no one's "
        "views). Exit status: 0 all healthy, 1 otherwise, 2 usage or connection error. "
        "See docs/network.md.",
    )
    status.add_argument(
        "--seed",
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="a member's address (repeat for fallbacks)",
    )
    secret = status.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--secret-file", type=Path, metavar="PATH", help="the cluster secret's file"
    )
    secret.add_argument(
        "--insecure", action="store_true", help="the cluster runs --insecure (loopback)"
    )
    secret.add_argument(
        "--certificates",
        type=Path,
        metavar="DIR",
        help="the cluster runs with certificate files: a directory like the nodes', "
        "holding the server key pair and this observer's (see --key)",
    )
    status.add_argument(
        "--key",
        default="status",
        metavar="NAME",
        help="with --certificates: the observer's key pair, DIR/NAME.key_secret, whose "
        "NAME.key the nodes admit (default: status)",
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    status.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="refresh period of --watch (2)",
    )
    status.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for answers (3)",
    )
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for seed in args.seed:
            try:
                parse_address(seed, "--seed")
            except ValueError as exc:
                raise CliError(str(exc)) from None
        check_seconds(args, "timeout", "interval")
        timeout, interval = args.timeout, args.interval
        secret = None
        if args.secret_file is not None:
            secret = read_secret(args.secret_file, "--secret-file", private=True)
        try:
            observer = Observer(
                secret,
                insecure=args.insecure,
                timeout=timeout,
                certificates=args.certificates,
                key_name=args.key,
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None
        with observer:
            if args.watch:
                return _watch(observer, args.seed, interval, args.json, out)
            status = observe(observer, args.seed)
    except CliError as exc:
        print(f"{PROG} status: error: {exc}", file=sys.stderr)
        return 2
    _print(status, args.json, out)
    return 0 if status.healthy else 1


def _print(status: ClusterStatus, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(status.as_json()), file=out, flush=True)
        return
    if out.isatty():
        try:
            from rich.console import Console
        except ImportError:  # rich is optional (the demo extra): plain columns then
            pass
        else:
            Console(file=out).print(_rich_table(status))
            return
    print(render_text(status), file=out, flush=True)


def _watch(
    observer: Observer, seeds: list[str], interval: float, as_json: bool, out: TextIO
) -> int:
    """Refresh until Ctrl-C; the exit status of the last refresh."""
    code = 2
    known = list(seeds)
    try:
        while True:
            try:
                status = observe(observer, known)
            except CliError as exc:
                print(f"{PROG} status: {exc}", file=sys.stderr, flush=True)
                code = 2
            else:
                code = 0 if status.healthy else 1
                known = list(dict.fromkeys([*seeds, *(m.address for m in status.members)]))
                if not as_json and out.isatty():
                    out.write("\x1b[H\x1b[2J")  # clear the screen: refresh in place
                _print(status, as_json, out)
            time.sleep(interval)
    except KeyboardInterrupt:
        return code
