"""What every benchmark shares: result tables in Markdown, the machine line, medians.

A benchmark module exposes ``STEPS`` (how many times it calls ``tick``) and
``tables(tick) -> list[Table]``; ``python -m bench`` runs them all behind one
progress bar and writes ``bench/RESULTS.md``. Each module's ``main()`` prints
its own tables, so ``python -m bench.<name>`` works alone.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Table",
    "Tick",
    "cpu_model",
    "fmt_bytes",
    "fmt_rate",
    "fmt_seconds",
    "machine_line",
    "median_time",
    "no_tick",
    "print_tables",
    "ratio",
    "wait_until",
]

#: Called once per finished step with a short label (drives the progress bar).
Tick = Callable[[str], None]


def no_tick(label: str) -> None:
    """A :data:`Tick` that does nothing (a benchmark run on its own)."""


@dataclass
class Table:
    """One result table: a title, what was measured against what, and rows of text cells.

    Attributes:
        title: the heading (``### title`` in Markdown).
        intro: one paragraph saying what each row measures and which row is the baseline.
        headers: the column names.
        rows: the cells, already formatted.
        notes: lines printed under the table (caveats, unavailable runtimes).
    """

    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        """Append a row; it must have one cell per header."""
        if len(cells) != len(self.headers):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        """The table as GitHub-flavoured Markdown (numbers right-aligned)."""
        lines = [f"### {self.title}", "", self.intro, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join(_align(i, self.rows) for i in range(len(self.headers))) + "|")
        lines.extend("| " + " | ".join(_escape(c) for c in row) + " |" for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def _align(column: int, rows: Sequence[Sequence[str]]) -> str:
    numeric = bool(rows) and all(
        row[column][:1].isdigit() or row[column][:1] in "x-~<" for row in rows
    )
    return "---:" if numeric and column > 0 else "---"


def print_tables(tables: Sequence[Table]) -> None:
    """Print tables as Markdown, separated by blank lines."""
    print("\n".join(t.markdown() for t in tables))


# -- the machine --------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model named in ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_line() -> str:
    """Cores, CPU model, Python and OS, and today's date, on one line."""
    today = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    return (
        f"{_cores()} cores ({cpu_model()}), {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, {today}"
    )


# -- timing ---------------------------------------------------------------------------


def median_time(fn: Callable[[], object], number: int, repeats: int = 5) -> float:
    """Median over ``repeats`` runs of the seconds per call of ``fn`` called ``number`` times."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


# -- formatting -----------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    """``seconds`` in ns, µs, ms or s, three significant figures."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{_sig(seconds / scale)} {unit}"
    return f"{_sig(seconds / 1e-9)} ns"


def fmt_rate(per_second: float, unit: str = "/s") -> str:
    """A rate with thousands separators (three significant figures below 100)."""
    if per_second >= 100:
        return f"{per_second:,.0f}{unit}"
    return f"{_sig(per_second)}{unit}"


def fmt_bytes(size: float) -> str:
    """A byte count: ``812 B``, ``10.3 KB``, ``1.20 MB`` (powers of 1000)."""
    if size < 1000:
        return f"{size:,.0f} B"
    if size < 1_000_000:
        return f"{_sig(size / 1000)} KB"
    return f"{_sig(size / 1_000_000)} MB"


def ratio(value: float, baseline: float) -> str:
    """``value`` over ``baseline`` as ``x1.23`` (``-`` when the baseline is 0)."""
    if baseline == 0:
        return "-"
    r = value / baseline
    return f"x{r:,.0f}" if r >= 100 else f"x{_sig(r)}"


def _sig(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def wait_until(predicate: Callable[[], bool], what: str, timeout: float, every: float) -> None:
    """Poll ``predicate`` every ``every`` seconds until it holds.

    Raises:
        TimeoutError: it did not hold within ``timeout`` seconds (``what`` names it).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)
