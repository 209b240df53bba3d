"""Crash tests: SIGKILL a saving process at random moments, then load.

A child process (``_crash_child.py``) loops: mutate a counter, save it, print
``ACK <age>``. The parent kills it at a random moment after it starts
reporting, then loads: the record must decode, keep the incarnation, and hold
the last acknowledged age or the one after it (the save in flight). The next
child resumes from what was loaded. The kill rounds of one backend run in two
lanes (two files) at once to bound the time.

``DSTATE_SOAK=1`` runs the slow soak variant: 300 kills per backend.

SIGKILL ends the process, not the machine: the page cache survives, so these
tests prove the write protocol (temp file, rename; SQLite transactions) is
atomic against process death. Durability against power loss rests on the
fsyncs, which these tests cannot observe.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dstate_core.persistence._incarnations import IncarnationFile

from ._crash_child import PAD, CrashCounter, open_backend

CHILD = Path(__file__).with_name("_crash_child.py")
INCARNATION = 1_700_000_000_000
KINDS = ["file", "sqlite", "sqlite-delta", "incarnation"]
DEFAULT_KILLS = 50
SOAK_KILLS = 300
MAX_DELAY = 0.03  # seconds between the first ACK and the kill
CHILD_TIMEOUT = 20.0


@dataclass
class LaneResult:
    kills: int = 0
    acknowledged: int = 0
    in_flight_found: int = 0  # loads that found the unacknowledged save
    replayed_loads: int = 0  # sqlite-delta loads that replayed a log
    history: list[tuple[int, int]] = field(default_factory=list)  # (last ACK, loaded)


def parse_output(out: bytes) -> tuple[int, int, list[int]]:
    """START incarnation and age, and every complete ACK line, in order."""
    lines = out.decode().split("\n")[:-1]  # the last piece is cut off or empty
    assert lines, "the child printed nothing"
    start = lines[0].split()
    assert start[0] == "START", lines[0]
    acks = []
    for line in lines[1:]:
        word, value = line.split()
        assert word == "ACK", line
        acks.append(int(value))
    return int(start[1]), int(start[2]), acks


def kill_once(kind: str, path: Path, rng: random.Random) -> bytes:
    """Start a child, wait for its first ACK, SIGKILL it at a random moment."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), kind, str(path), str(INCARNATION)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        head = b""
        while b"ACK" not in head:
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                pytest.fail(f"{kind} child exited early: {head!r} {proc.stderr.read()!r}")
            head += line
        threading.Event().wait(rng.uniform(0.0, MAX_DELAY))
        os.kill(proc.pid, signal.SIGKILL)
        # Read through the same buffered reader: it may hold lines read ahead.
        rest = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
    finally:
        watchdog.cancel()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    return head + rest


def load_age(kind: str, path: Path, result: LaneResult) -> int:
    """Load what the killed child left, check it, and return its age."""
    if kind == "incarnation":
        stored = IncarnationFile(path.parent, path.name).load()
        assert stored is not None
        return stored
    backend = open_backend(kind, path)
    try:
        loaded = backend.load()
        if kind == "sqlite-delta" and backend.pending_deltas:
            result.replayed_loads += 1
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    assert loaded is not None
    assert loaded.generation.incarnation == INCARNATION
    state = CrashCounter.from_storage(loaded.value, loaded.storage_version)
    assert state.value == loaded.generation.age
    assert state.pad == PAD
    return loaded.generation.age


def run_lane(kind: str, path: Path, kills: int, seed: int) -> LaneResult:
    rng = random.Random(seed)
    result = LaneResult()
    expected_start: int | None = None
    for _ in range(kills):
        start_incarnation, start_age, acks = parse_output(kill_once(kind, path, rng))
        result.kills += 1
        if kind == "incarnation":
            if expected_start is not None:
                assert start_incarnation == expected_start
            first = start_incarnation + 1
        else:
            assert start_incarnation == INCARNATION
            if expected_start is not None:
                assert start_age == expected_start, "the child did not resume from the load"
            first = start_age + 1
        assert acks, "killed before the first ACK"
        assert acks == list(range(first, first + len(acks))), "ACKs are not consecutive"
        last_ack = acks[-1]
        loaded = load_age(kind, path, result)
        assert last_ack <= loaded <= last_ack + 1, (
            f"{kind}: last acknowledged {last_ack}, loaded {loaded}"
        )
        result.acknowledged += len(acks)
        result.in_flight_found += loaded == last_ack + 1
        result.history.append((last_ack, loaded))
        expected_start = loaded
    if kind == "file":
        leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
        assert len(leftovers) <= 1, leftovers  # the next save cleans the last kill's
    return result


def run_kills(kind: str, tmp_path: Path, kills: int, seed: int) -> list[LaneResult]:
    lanes = 2
    per_lane = [kills // lanes + (i < kills % lanes) for i in range(lanes)]
    names = {"file": "state.rec", "incarnation": "incarnation"}
    paths = []
    for i in range(lanes):
        lane_dir = tmp_path / f"lane{i}"
        lane_dir.mkdir()
        paths.append(lane_dir / names.get(kind, "node.db"))
    with ThreadPoolExecutor(lanes) as pool:
        futures = [
            pool.submit(run_lane, kind, paths[i], per_lane[i], seed * 100 + i) for i in range(lanes)
        ]
        results = [future.result() for future in futures]
    total = sum(r.kills for r in results)
    acked = sum(r.acknowledged for r in results)
    in_flight = sum(r.in_flight_found for r in results)
    replayed = sum(r.replayed_loads for r in results)
    print(
        f"\n{kind}: survived {total} kills, {acked} acknowledged mutations, none lost; "
        f"{in_flight} loads found the unacknowledged save in flight"
        + (f"; {replayed} loads replayed a delta log" if kind == "sqlite-delta" else "")
    )
    assert total == kills
    return results


SOAK = os.environ.get("DSTATE_SOAK") == "1"


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_never_loses_an_acknowledged_save(kind: str, tmp_path: Path) -> None:
    """50 SIGKILLs per backend (300 under DSTATE_SOAK=1, i.e. `make soak`)."""
    kills = SOAK_KILLS if SOAK else DEFAULT_KILLS
    seed = (1000 if SOAK else 1) + KINDS.index(kind)
    results = run_kills(kind, tmp_path, kills, seed=seed)
    if kind == "sqlite-delta":
        assert sum(r.replayed_loads for r in results) > 0
