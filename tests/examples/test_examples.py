"""Every example and the README's quick start run, and say what they should."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examples import node_resource, walkthrough

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
    ]


def test_live_demo_runs_partitions_heals_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import demo

    assert demo.main(["--duration", "3", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "c is partitioned away" in out
    assert "healed" in out
    assert "health: {'a': 'HEALTHY', 'b': 'HEALTHY', 'c': 'HEALTHY'}" in out
