"""The node command line without starting a node: option checks, run records, port claims."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dstate_core import PushMode
from dstate_core.process import (
    PERIODIC_INTERVAL,
    STRATEGIES,
    CliError,
    RunRecord,
    claim_port,
    default_run_dir,
    free_port,
    parse_node_options,
    parse_state,
    start_time,
)
from dstate_core.testing import TestDeltaState, TestState
from dstate_thespian._cli import build_parser, main, parse_thespian_options


def claim_admin_port(port: int, run_dir: Path) -> str | None:
    """What the Thespian node does with its admin port at start-up."""
    return claim_port(port, run_dir, "admin port", "--admin-port", "actor system")


def parse_options(namespace: argparse.Namespace) -> SimpleNamespace:
    """The shared and the Thespian options of ``namespace``, as one object."""
    merged: dict[str, Any] = {}
    for options in (parse_node_options(namespace), parse_thespian_options(namespace)):
        merged.update((f.name, getattr(options, f.name)) for f in fields(options))
    return SimpleNamespace(**merged)


STATE = "dstate_core.testing:TestState"


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["node", "--node-id", "a", "--admin-port", "19000", *argv])


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something listens on (not Thespian)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestStates:
    def test_a_state_and_its_strategy(self) -> None:
        spec = parse_state(STATE)
        assert (spec.state_type, spec.strategy) == (TestState, "push")
        spec = parse_state("dstate_core.testing:TestDeltaState@feed")
        assert (spec.state_type, spec.strategy) == (TestDeltaState, "feed")
        spec = parse_state(f"{STATE}@periodic")
        strategy = STRATEGIES[spec.strategy]()
        assert strategy.periodic_full_sync == PERIODIC_INTERVAL
        assert strategy.push_mode is PushMode.NONE

    @pytest.mark.parametrize(
        ("text", "error"),
        [
            ("dstate_core.testing", "expected MODULE:CLASS"),
            (":TestState", "expected MODULE:CLASS"),
            (f"{STATE}@lazy", "the strategy after '@'"),
            ("no_such_module_xyz:C", "cannot import module 'no_such_module_xyz'"),
            ("dstate_core.testing:Nope", "has no 'Nope'"),
            ("dstate_core.testing:TestClock", "not a DistributedState subclass"),
            ("dstate_core:DistributedState", "DistributedState"),
        ],
    )
    def test_bad_states_say_what_to_fix(self, text: str, error: str) -> None:
        with pytest.raises(CliError, match=error) as raised:
            parse_state(text)
        assert "\n" not in str(raised.value)


class TestOptions:
    def test_the_leader_is_the_node_whose_address_the_convention_names(self) -> None:
        leader = parse_options(args("--state", STATE, "--convention", "127.0.0.1:19000"))
        assert leader.leader and leader.host == "127.0.0.1"
        member = parse_options(args("--state", STATE, "--convention", "127.0.0.1:19001"))
        assert not member.leader and member.host == "127.0.0.1"
        alone = parse_options(args("--state", STATE))
        assert alone.leader and alone.convention is None and alone.host == "127.0.0.1"
        # The same port on an address that is not ours: a member.
        remote = parse_options(args("--state", STATE, "--convention", "192.0.2.1:19000"))
        assert not remote.leader
        named = parse_options(args("--state", STATE, "--host", "10.1.2.3"))
        assert named.host == "10.1.2.3"

    @pytest.mark.parametrize(
        ("argv", "error"),
        [
            (("--convention", "nohost"), "--convention must be HOST:PORT"),
            (("--feed-interval", "0"), "--feed-interval must be"),
            (("--join-timeout", "inf"), "--join-timeout must be"),
            (("--state", "dstate_core.testing:TestState@feed"), "more than one class"),
            (("--cluster-secret-file", "/nonexistent/secret"), "cannot read"),
        ],
    )
    def test_bad_options(self, argv: tuple[str, ...], error: str) -> None:
        with pytest.raises(CliError, match=error):
            parse_options(args("--state", STATE, *argv))

    def test_node_id_and_port_ranges(self) -> None:
        parser = build_parser()
        for node_id, port in (("*", "1"), ("a", "0"), ("a", "70000")):
            namespace = parser.parse_args(
                ["node", "--node-id", node_id, "--admin-port", port, "--state", STATE]
            )
            with pytest.raises(CliError):
                parse_options(namespace)

    def test_secret_and_data_dir(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        secret = tmp_path / "secret"
        secret.write_bytes(b"  k3y\n")
        secret.chmod(0o644)
        data = tmp_path / "deep" / "data"
        options = parse_options(
            args("--state", STATE, "--cluster-secret-file", str(secret), "--data-dir", str(data))
        )
        assert options.cluster_secret == b"k3y"
        assert options.data_dir == data and data.is_dir()
        assert "readable by other users" in caplog.text
        alias = parse_options(args("--state", STATE, "--secret-file", str(secret)))
        assert alias.cluster_secret == b"k3y"  # the name the other command lines use
        secret.write_bytes(b"\n")
        with pytest.raises(CliError, match="is empty"):
            parse_options(args("--state", STATE, "--cluster-secret-file", str(secret)))
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(CliError, match="not a writable directory"):
            parse_options(args("--state", STATE, "--data-dir", str(blocker / "sub")))

    def test_usage_errors_are_one_line_and_status_2(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["node", "--node-id", "a"])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "required" in err

    def test_main_reports_a_bad_state_in_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        status = main(["node", "--node-id", "a", "--admin-port", "19000", "--state", "x_y_z:C"])
        assert status == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m dstate_thespian node: error: --state x_y_z:C")
        assert err.count("\n") == 1


class TestRunRecordsAndPorts:
    def test_a_record_round_trips(self, tmp_path: Path) -> None:
        path = RunRecord.path(tmp_path, 19000)
        record = RunRecord("a", os.getpid(), start_time(os.getpid()), {1: 2})
        record.write(path)
        assert RunRecord.read(path) == record
        assert record.owner_alive()
        assert not RunRecord("a", os.getpid(), 1, {}).owner_alive()  # another start time
        path.write_text("{not json")
        assert RunRecord.read(path) is None
        assert RunRecord.read(tmp_path / "missing.json") is None

    def test_a_free_port_is_claimed_at_once(self, tmp_path: Path) -> None:
        assert claim_admin_port(free_port(), tmp_path) is None

    def test_a_port_held_by_a_live_node_is_refused(self, tmp_path: Path, listener: int) -> None:
        RunRecord("a", os.getpid(), start_time(os.getpid()), {}).write(
            RunRecord.path(tmp_path, listener)
        )
        with pytest.raises(CliError, match=f"in use by dstate node 'a' \\(pid {os.getpid()}\\)"):
            claim_admin_port(listener, tmp_path)

    def test_a_port_held_by_something_else_is_refused(self, tmp_path: Path, listener: int) -> None:
        with pytest.raises(CliError, match=f"admin port {listener} is in use by pid {os.getpid()}"):
            claim_admin_port(listener, tmp_path)
        # A record whose node is gone, but whose processes are gone too: not ours to free.
        path = RunRecord.path(tmp_path, listener)
        RunRecord("a", 2**22 + 1, 0, {2**22 + 2: 0}).write(path)
        with pytest.raises(CliError, match="is in use"):
            claim_admin_port(listener, tmp_path)
        assert not path.exists()

    def test_the_default_run_dir(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        assert default_run_dir("dstate-thespian") == tmp_path / "dstate-thespian"
        monkeypatch.delenv("XDG_RUNTIME_DIR")
        assert default_run_dir("dstate-thespian").name == f"dstate-thespian-{os.getuid()}"
