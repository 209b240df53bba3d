"""The benchmark figures in the README and the guides are copied from ``bench/RESULTS.md``."""

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


#: A timing or a rate in a guide: what a benchmark measures.
MEASURED = re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:ns|µs|ms)\b|\d[\d,]*(?:\.\d+)?/s\b")
#: Figures in the guides that are settings or facts of the platform, not measurements.
NOT_MEASURED = {
    ("network.md", "200 ms"),  # the kernel's first TCP retransmission timeout
    ("network.md", "5 ms"),  # sys.getswitchinterval()'s default
    ("testing.md", "000 ms"),  # the test clock's start, 1 700 000 000 000 ms
}


def test_the_guides_quote_only_the_latest_results() -> None:
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    stale = [
        f"{guide.name}:{number}: {figure}"
        for guide in sorted((ROOT / "docs").glob("*.md"))
        for number, line in enumerate(guide.read_text(encoding="utf-8").splitlines(), 1)
        for figure in MEASURED.findall(line)
        if figure not in results and (guide.name, figure) not in NOT_MEASURED
    ]
    assert stale == []
