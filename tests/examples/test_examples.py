"""Every example and the README's quick start run, and say what they should."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dstate_core import SyncUrgency
from dstate_core.process import NodeHandle
from examples import node_resource, walkthrough
from examples.node_resource import NodeResource, NodeResourceDelta, NodeResourceView

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quick_start_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None, "README.md lost its quick start"
    exec(compile(code.group(1), "README quick start", "exec"), {})
    assert capsys.readouterr().out.strip() == "1"


def test_walkthrough_converges_on_the_idle_node(capsys: pytest.CaptureFixture[str]) -> None:
    walkthrough.main([])
    out = capsys.readouterr().out
    final = out.split("partition healed")[1]
    routes = re.findall(r"^  ([abc])  -> (\S+)", final, re.M)
    assert routes == [("a", "c"), ("b", "c"), ("c", "c")], final
    assert "b!" in out, "the partitioned step should show stale-view routing"


def test_node_resource_example_routes_to_the_least_loaded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    node_resource.main()
    lines = capsys.readouterr().out.split("\n")
    assert [line for line in lines if line] == [
        "a routes to b",
        "b routes to b",
        "c routes to b",
        # the tiny CPU change is suppressed: b keeps a's older load...
        "a: cpu 70.0 -> 70.5%, mem 3000 -> 3000 MB: SyncUrgency.SUPPRESS, not sent; "
        "b sees a at age 1 (cpu 70.0%, mem 3000 MB)",
        # ...until the memory jump is pushed at once, carrying both changes in a snapshot
        "a: cpu 70.5 -> 70.5%, mem 3000 -> 4000 MB: SyncUrgency.IMMEDIATE, pushed at once "
        "as a snapshot; b sees a at age 3 (cpu 70.5%, mem 4000 MB)",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ((50.0, 1000), (50.0, 1513), SyncUrgency.IMMEDIATE),  # memory up by more than 512 MB
        ((50.0, 1513), (50.0, 1000), SyncUrgency.IMMEDIATE),  # ...or down
        ((50.0, 1000), (50.1, 1512), SyncUrgency.SUPPRESS),  # 512 MB is not a big jump
        ((50.0, 1000), (99.0, 2000), SyncUrgency.IMMEDIATE),  # memory wins over CPU
        ((50.0, 1000), (51.9, 1000), SyncUrgency.SUPPRESS),  # CPU up by less than 2 points
        ((50.0, 1000), (48.1, 1000), SyncUrgency.SUPPRESS),  # ...or down
        ((50.0, 1000), (50.0, 1000), SyncUrgency.SUPPRESS),  # no change at all
        ((50.0, 1000), (52.0, 1000), SyncUrgency.DEFAULT),  # 2 points is not tiny
        ((50.0, 1000), (40.0, 1100), SyncUrgency.DEFAULT),
    ],
)
def test_node_resource_sync_urgency_decisions(
    old: tuple[float, int], new: tuple[float, int], expected: SyncUrgency
) -> None:
    def view(load: tuple[float, int]) -> NodeResourceView:
        return NodeResourceView(cpu_pct=load[0], mem_used_mb=load[1])

    delta = NodeResourceDelta(cpu_pct=new[0], mem_used_mb=new[1])
    assert NodeResource.sync_urgency(view(old), view(new), delta) == expected


def test_live_demo_runs_partitions_heals_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import demo

    assert demo.main(["--duration", "3", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "c is partitioned away" in out
    assert "healed" in out
    assert "health: {'a': 'HEALTHY', 'b': 'HEALTHY', 'c': 'HEALTHY'}" in out


def test_live_demo_exits_one_when_a_node_never_gets_healthy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dstate_core import DStateNode, HealthStatus, SystemHealth
    from examples import demo

    real = DStateNode.health_check

    def health_check(node: DStateNode) -> SystemHealth:
        if node.node_id == "c":
            return SystemHealth(HealthStatus.DEGRADED, [])
        return real(node)

    monkeypatch.setattr(DStateNode, "health_check", health_check)
    assert demo.main(["--duration", "3", "--plain"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "health: {'a': 'HEALTHY', 'b': 'HEALTHY', 'c': 'DEGRADED'}" in out
    assert "FAILED: not every node was HEALTHY 5 s after the end: {'c': 'DEGRADED'}" in out


def _node_handle_class(adapter: str) -> Any:
    """The handle class whose ``start`` the demo calls for ``adapter``."""
    if adapter == "thespian":
        from dstate_thespian import NodeHandle as ThespianNodeHandle

        return ThespianNodeHandle
    from dstate_pykka import PykkaNodeHandle

    return PykkaNodeHandle


@pytest.mark.parametrize("adapter", ["thespian", "network"])
def test_live_demo_on_node_processes_kills_restarts_c_and_leaves_nothing(
    adapter: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dstate_core.process import pid_alive
    from examples import demo

    handle_class = _node_handle_class(adapter)
    started: list[NodeHandle] = []
    original = handle_class.start

    def start(*args: Any, **kwargs: Any) -> NodeHandle:
        handle: NodeHandle = original(*args, **kwargs)
        started.append(handle)
        return handle

    monkeypatch.setattr(handle_class, "start", start)
    try:
        status = demo.main(["--adapter", adapter, "--duration", "8", "--plain"])
    finally:
        for handle in started:
            handle.close()
    out = " ".join(capsys.readouterr().out.split())  # undo rich's line wrapping
    assert status == 0, out[-3000:]
    assert [h.node_id for h in started] == ["a", "b", "c", "c"]
    assert f"c killed (kill -9 of pid {started[2].pid})" in out
    seen = re.search(r"a and b saw c leave (\d+\.\d+)s after the kill", out)
    assert seen is not None, out[-3000:]
    if adapter == "network":  # the failure detector's bound: failure_timeout + 0.5 s
        assert float(seen.group(1)) <= 1.0 + 0.5, seen.group(0)
        assert started[0].ready()["secure"] is True
    note = "same id and port"
    if adapter == "network":  # c listens on port 0 again: it gets a new one
        addresses = [h.ready()["address"] for h in started[2:]]
        note = "same id, new address {1} instead of {0}".format(*addresses)
    assert f"c restarted (pid {started[3].pid}, {note})" in out
    assert "c rejoined: a and b saw it join" in out
    assert re.search(r"converged: every node holds a at age \d+, b at age \d+, c at age \d+", out)
    assert "health: {'a': 'HEALTHY', 'b': 'HEALTHY', 'c': 'HEALTHY'}" in out
    assert "stopped every node process: none left (exit statuses {'a': 0, 'b': 0, 'c': 0})" in out
    assert "FAILED" not in out
    for handle in started:
        assert handle.proc.returncode is not None
        assert not [pid for pid in [handle.pid, *handle.pids] if pid_alive(pid)], handle
        assert handle.leftovers() == [], handle


@pytest.mark.parametrize("adapter", ["thespian", "network"])
def test_live_demo_on_node_processes_refuses_a_too_short_duration(
    adapter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples import demo

    with pytest.raises(SystemExit) as exited:
        demo.main(["--adapter", adapter, "--duration", "5"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--duration must be >= 8 seconds with --adapter {adapter}" in err


def test_pykka_quick_start_prints_the_same_result(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import pykka_quickstart

    pykka_quickstart.main()
    assert capsys.readouterr().out.strip() == "1"


# -- examples/quickstart.py, counters.py, config_watch.py, custom_runtime.py ----------------


def _readme_quick_start() -> str:
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert code is not None, "README.md lost its quick start"
    return code.group(1)


def test_quickstart_module_prints_1(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import quickstart

    quickstart.main()
    assert capsys.readouterr().out == "1\n"


def test_quickstart_module_is_the_readme_block_verbatim() -> None:
    source = (ROOT / "examples" / "quickstart.py").read_text()
    block = source.split("# fmt: off\n", 1)[1].split("# fmt: on\n", 1)[0]
    head, body = block.split("def main() -> None:\n", 1)
    docstring, body = body.split("\n", 1)
    assert docstring.strip().startswith('"""')
    assert head + textwrap.dedent(body) == _readme_quick_start(), (
        "examples/quickstart.py and the README's quick start have drifted apart"
    )


def _counters_table(out: str, labels: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Label -> (exact cell, approx cell) from the fixed-width report (38 + 22 + 22)."""
    rows = {}
    for line in out.splitlines():
        label = line[:38].strip()
        if label in labels:
            rows[label] = (line[38:60].strip(), line[60:].strip())
    assert set(rows) == set(labels), out
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_counters_show_the_exact_vs_approximate_trade_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from examples import counters

    counters.main(["--duration", "1.0", "--batch-interval", "0.1"])
    out = capsys.readouterr().out
    table = _counters_table(out, counters.LABELS)
    exact_mps, approx_mps = (_number(c) for c in table["mutations/s"])
    assert exact_mps > 0
    assert approx_mps > 0
    exact_per, approx_per = (_number(c) for c in table["messages per mutation"])
    assert 0.99 <= exact_per <= 1.05, "active push sends one message per mutation per peer"
    assert approx_per < 0.05, "the change feed sends a batch per interval, not per mutation"
    exact_lag, approx_lag = (
        _number(c.split(" / ")[0]) for c in table["b behind a: generations avg / max"]
    )
    assert exact_lag < approx_lag
    finals = [cell.split(" / ") for cell in table["final value on a / on b"]]
    for on_a, on_b in finals:
        assert on_a == on_b, f"b did not converge: {finals}"
    disk = re.search(
        r"exact counter on disk \(a\.sqlite\): value ([\d,]+) at generation ([\d,]+)", out
    )
    assert disk is not None, out
    assert disk.group(1) == disk.group(2) == finals[0][0], "the exact counter is persisted"
    assert "approx ran" in out


CONFIG_WATCH_KEY_LINES = [
    "  [   web] admin is here at generation 0: dark_mode=False, max_upload_mb=10, banner=''",
    "  [ admin] generation 1: dark_mode False -> True",
    "  [   web] generation 1: dark_mode False -> True",
    "  [worker] generation 1: dark_mode False -> True",
    "  [worker] generation 2: max_upload_mb 10 -> 50, banner '' -> 'maintenance at 02:00'",
    "  [   web] admin left: its view is gone",
    "  [worker] admin left: its view is gone",
    "  admin resumed at generation 2 (same incarnation): dark_mode=True, max_upload_mb=50, "
    "banner='maintenance at 02:00'",
    "  [   web] admin is here at generation 2: dark_mode=True, max_upload_mb=50, "
    "banner='maintenance at 02:00'",
    "  [worker] admin is here at generation 2: dark_mode=True, max_upload_mb=50, "
    "banner='maintenance at 02:00'",
    "  [ admin] generation 3: banner 'maintenance at 02:00' -> ''",
    "  [   web] generation 3: banner 'maintenance at 02:00' -> ''",
    "  [worker] generation 3: banner 'maintenance at 02:00' -> ''",
    "   admin: generation 3: dark_mode=True, max_upload_mb=50, banner=''",
    "     web: generation 3: dark_mode=True, max_upload_mb=50, banner=''",
    "  worker: generation 3: dark_mode=True, max_upload_mb=50, banner=''",
]


def test_config_watch_callbacks_and_recovery_after_restart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from examples import config_watch

    config_watch.main([])
    lines = capsys.readouterr().out.splitlines()
    positions = [lines.index(line) for line in CONFIG_WATCH_KEY_LINES]  # ValueError if missing
    assert positions == sorted(positions), "the lines came out of order"
    assert sum("admin left" in line for line in lines) == 2  # the peers, not admin itself


def test_config_watch_data_dir_carries_over_between_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from examples import config_watch

    config_watch.main(["--data-dir", str(tmp_path)])
    capsys.readouterr()
    config_watch.main(["--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.startswith("admin starts at generation 3;")
    assert "  [ admin] generation 4: no change" in out  # dark mode was already on
    assert "  admin resumed at generation 5 (same incarnation)" in out
    assert "  worker: generation 6: dark_mode=True, max_upload_mb=50, banner=''" in out


def test_custom_runtime_demo_replicates_a_counter(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import custom_runtime

    assert custom_runtime.main(["--demo-only"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  a sees {'a': 3, 'b': 1} -> total 4" in lines
    assert "  b sees {'a': 3, 'b': 1} -> total 4" in lines
    assert (
        "  b pulled a fresh view of a (max_staleness=0.01s): {'a': 3, 'b': 1}, refreshed=True"
        in lines
    )
    assert lines[-1] == "replicated on the custom runtime"


def test_custom_runtime_module_runs_the_conformance_suite() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "examples.custom_runtime"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^\d+ passed in ", run.stdout, re.M), run.stdout
    assert "failed" not in run.stdout
    assert "conformance: PASSED" in run.stdout
    assert "replicated on the custom runtime" in run.stdout


def test_network_cluster_replicates_across_three_processes_and_stops_them() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "examples.network_cluster"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"a listens on 127\.0\.0\.1:\d+ \(secure: True\)", lines[0]), lines
    assert "members: a, b, c" in lines
    assert "b sees a's counter = 5" in lines
    assert "c sees a's counter = 5" in lines
    assert lines[-1] == "stopped every node: {'a': 0, 'b': 0, 'c': 0}"


def _table_text(table: Any) -> str:
    from rich.console import Console

    console = Console(width=120, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_live_demo_tables_drop_a_departed_node() -> None:
    from examples import demo

    row = demo.ViewRow(50.0, 1000, (1, 3), False, 10.0)
    shown = _table_text(demo.node_table("a", {"a": row, "b": row}, "b", now=10.5))
    owners = [line.split()[1] for line in shown.splitlines() if line.startswith("│")]
    assert owners == ["a", "b"]  # c left: no row, not a "no view" row
    down = _table_text(demo.node_table("a", {}, "-", now=10.5, down="stopped"))
    assert [line.split()[1] for line in down.splitlines() if line.startswith("│")] == [
        "a",
        "b",
        "c",
    ]


def test_live_demo_prints_its_last_frame_once(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import demo

    assert demo.main(["--duration", "3", "--plain"]) == 0
    out = capsys.readouterr().out
    assert out.count("phase: finished") == 1, out[-2000:]
    # The live screen is transient: once stopped it leaves nothing for the final frame
    # to repeat.
    from rich.console import Console

    display = demo.Display(Console(file=io.StringIO()), plain=False, duration=3.0)
    assert display._live is not None and display._live.transient
