"""The README's benchmark figures are copied from ``bench/RESULTS.md``, never older ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: A figure: a number, and its unit when one follows.
FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?(?:\s?(?:ns|µs|ms|s|KB|MB|B)\b|/s)?")


def _benchmark_cells() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Benchmarks (as last measured)", 1)[1].split("\n## ", 1)[0]
    cells = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| what") and "---" not in line:
            cells += [cell.strip() for cell in line.strip("|").split("|")[1:]]
    return cells


def test_every_readme_benchmark_figure_is_in_the_latest_results() -> None:
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    cells = _benchmark_cells()
    assert len(cells) >= 20  # the table is there
    missing = sorted(
        {
            figure
            for cell in cells
            for figure in FIGURE.findall(cell.replace("KB per s", "KB"))
            if figure not in results
        }
    )
    assert missing == []


def test_the_readme_names_the_results_date() -> None:
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    measured = re.search(r"\d{4}-\d{2}-\d{2}", results.splitlines()[2])
    assert measured is not None
    assert measured.group(0) in (ROOT / "README.md").read_text(encoding="utf-8")
