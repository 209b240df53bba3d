"""The layers stay as ``docs/architecture.md`` says, and the protocol page matches the code.

Imports are read from the source with ``ast`` (nothing is imported), every
``import`` and ``from ... import`` counted, wherever it stands (under
``TYPE_CHECKING`` too): a type-only import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from dstate_core.engine._rules import RULES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dstate_core", "dstate_pykka", "dstate_thespian")
#: What the engine must never import: I/O, shells, runtimes, tests.
ENGINE_FORBIDDEN = (
    "dstate_core.persistence",
    "dstate_core.shell",
    "dstate_core.process",
    "dstate_core.runtime",
    "dstate_core.testing",
    "dstate_core.net",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
}


def _targets(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, resolved to a module of the three packages."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            candidates = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                yield candidate


IMPORTS: dict[str, set[str]] = {name: set(_targets(name, path)) for name, path in MODULES.items()}


def test_the_engine_imports_no_io_layer() -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in IMPORTS.items()
        if name.startswith("dstate_core.engine")
        for target in targets
        if target.startswith(ENGINE_FORBIDDEN)
    )
    assert offenders == []


def test_adapters_import_only_public_core_modules() -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in IMPORTS.items()
        if not name.startswith("dstate_core")
        for target in targets
        if target.startswith("dstate_core")
        and any(part.startswith("_") for part in target.split(".")[1:])
    )
    assert offenders == []


def test_no_import_cycles() -> None:
    # A package's __init__ re-exporting its own children is not a cycle.
    graph = {
        name: {
            t
            for t in targets
            if not (MODULES[name].name == "__init__.py" and t.startswith(name + "."))
        }
        for name, targets in IMPORTS.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_modules_and_folders_stay_small() -> None:
    big = sorted(
        f"{name}: {lines}"
        for name, path in MODULES.items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 500
    )
    folders: dict[Path, int] = {}
    for path in MODULES.values():
        folders[path.parent] = folders.get(path.parent, 0) + 1
    crowded = sorted(str(folder.relative_to(ROOT)) for folder, n in folders.items() if n > 12)
    assert (big, crowded) == ([], [])


@pytest.mark.parametrize(("condition", "verdict"), [(text, v) for text, _, v in RULES])
def test_the_protocol_page_states_each_receiver_rule(condition: str, verdict: object) -> None:
    page = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"| {condition} | `{getattr(verdict, 'name', verdict)}`:" in page


def test_the_protocol_page_lists_the_rules_in_the_engines_order() -> None:
    page = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    positions = [page.index(f"| {text} |") for text, _, _ in RULES]
    assert positions == sorted(positions)
