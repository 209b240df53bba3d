"""The guides in ``docs/`` stay correct: every Python block in them runs.

Each ``docs/*.md`` file's ```` ```python ```` blocks run in order, in one fresh
namespace per file, so a later block may use what an earlier one defined. A
block whose first line starts with ``# not run:`` is skipped (e.g. a server
that would block). Tracebacks point at the guide's own line numbers.

Test functions (``test_*``) and test classes (``Test*``) that a guide defines
(not imports) are also collected here as ordinary pytest tests, with real
fixtures, so the testing guide's examples run the way a reader would run
them. To find them the module runs such guides once more at import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = sorted(DOCS.glob("*.md"))
SKIP_MARK = "# not run:"

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_DEFINES_TESTS = re.compile(r"^(def test_|class Test)", re.M)


def python_blocks(guide: Path) -> list[tuple[int, str]]:
    """The runnable Python blocks of ``guide`` as (first line number, code), in order."""
    text = guide.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        code = match.group(1)
        if code.lstrip().startswith(SKIP_MARK):
            continue
        first_line = text.count("\n", 0, match.start(1)) + 1
        blocks.append((first_line, code))
    return blocks


def run_guide(guide: Path) -> dict[str, Any]:
    """Run every runnable block of ``guide`` in order in a fresh namespace; return it."""
    namespace: dict[str, Any] = {"__name__": f"docs_{guide.stem.replace('-', '_')}"}
    for first_line, code in python_blocks(guide):
        # Pad so the compiled code's line numbers are the guide's own.
        compiled = compile("\n" * (first_line - 1) + code, str(guide), "exec")
        exec(compiled, namespace)
    return namespace


def test_there_are_guides_with_examples() -> None:
    assert GUIDES, f"no guides in {DOCS}"
    assert sum(len(python_blocks(guide)) for guide in GUIDES) > 0


@pytest.mark.parametrize("guide", GUIDES, ids=[guide.name for guide in GUIDES])
def test_guide_examples_run(guide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a guide that writes relative paths writes here
    run_guide(guide)


def _collect_guide_tests() -> dict[str, Any]:
    """The test functions and classes the guides define, under names pytest collects.

    A guide that fails to run here is skipped: ``test_guide_examples_run``
    reports its error.
    """
    found: dict[str, Any] = {}
    for guide in GUIDES:
        if not any(_DEFINES_TESTS.search(code) for _, code in python_blocks(guide)):
            continue
        try:
            namespace = run_guide(guide)
        except Exception:
            continue
        stem = guide.stem.replace("-", "_")
        for name, obj in namespace.items():
            if getattr(obj, "__module__", None) != namespace["__name__"]:
                continue  # imported, not defined by the guide
            if name.startswith("test_") and callable(obj):
                found[f"test_{stem}__{name[len('test_') :]}"] = obj
            elif name.startswith("Test") and isinstance(obj, type):
                found[f"Test_{stem}__{name}"] = obj
    return found


globals().update(_collect_guide_tests())
