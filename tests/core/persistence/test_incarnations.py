"""IncarnationFile: incarnations that never repeat across process restarts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dstate_core import PersistError
from dstate_core.model._generation import IncarnationSource
from dstate_core.persistence._incarnations import IncarnationFile, PersistentIncarnationSource

from .test_file import assert_read_only_refused


def test_nothing_stored(tmp_path: Path) -> None:
    assert IncarnationFile(tmp_path).load() is None
    assert IncarnationFile(tmp_path).source().last == 0


def test_store_and_load(tmp_path: Path) -> None:
    IncarnationFile(tmp_path).store(1_700_000_000_000)
    assert IncarnationFile(tmp_path).load() == 1_700_000_000_000
    assert IncarnationFile(tmp_path).path == tmp_path / "incarnation"
    assert [p.name for p in tmp_path.iterdir()] == ["incarnation"]


def test_fresh_survives_restarts_and_clock_steps(tmp_path: Path) -> None:
    first = IncarnationFile(tmp_path).source()
    assert isinstance(first, IncarnationSource)
    assert first.fresh(wall_ms=5_000) == 5_000
    # A new process whose clock stepped back: previous + 1.
    second = IncarnationFile(tmp_path).source()
    assert second.fresh(wall_ms=1_000) == 5_001
    assert second.fresh(wall_ms=1_000) == 5_002
    third = IncarnationFile(tmp_path).source()
    assert third.fresh(wall_ms=9_000) == 9_000
    assert IncarnationFile(tmp_path).load() == 9_000


def test_observe_stores_higher_values(tmp_path: Path) -> None:
    source = IncarnationFile(tmp_path).source()
    source.fresh(wall_ms=100)
    source.observe(50)
    assert IncarnationFile(tmp_path).load() == 100
    source.observe(7_000)
    assert IncarnationFile(tmp_path).load() == 7_000
    assert IncarnationFile(tmp_path).source().fresh(wall_ms=10) == 7_001


def test_failed_store_is_reported_and_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = IncarnationFile(tmp_path).source()
    assert source.fresh(wall_ms=10) == 10

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PersistError, match="No space left") as info:
        source.fresh(wall_ms=10)
    assert str(tmp_path) in str(info.value)
    monkeypatch.undo()
    assert source.fresh(wall_ms=10) == 12
    assert source.store.load() == 12


def test_corrupt_file_at_every_offset(tmp_path: Path) -> None:
    store = IncarnationFile(tmp_path)
    store.store(1_700_000_000_000)
    record = store.path.read_bytes()
    for size in range(len(record)):
        store.path.write_bytes(record[:size])
        with pytest.raises(PersistError):
            store.load()
    for offset in range(len(record)):
        damaged = bytearray(record)
        damaged[offset] ^= 0x01
        store.path.write_bytes(bytes(damaged))
        with pytest.raises(PersistError):
            IncarnationFile(tmp_path).source()


def test_malformed_payload(tmp_path: Path) -> None:
    from dstate_core.persistence._records import INCARNATION_MAGIC, encode_frame

    store = IncarnationFile(tmp_path)
    for payload, message in (([1], "malformed"), ({"incarnation": -1}, "'incarnation'")):
        store.path.write_bytes(encode_frame(INCARNATION_MAGIC, payload, "t"))
        with pytest.raises(PersistError, match=message):
            store.load()


@pytest.mark.parametrize("value", [-1, True, 1.5])
def test_store_rejects_bad_values(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValueError, match="int >= 0"):
        IncarnationFile(tmp_path).store(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a/b", ".", ".."])
def test_filename_must_be_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        IncarnationFile(tmp_path, filename=name)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PersistError, match="does not exist") as info:
        IncarnationFile(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_check_writable_and_leftovers(tmp_path: Path) -> None:
    store = IncarnationFile(tmp_path, filename="inc")
    leftover = tmp_path / ".inc.999999999.3.tmp"
    leftover.write_bytes(b"x")
    store.check_writable()
    assert not leftover.exists()
    assert "inc" in repr(store)


def test_read_only_directory(tmp_path: Path) -> None:
    assert_read_only_refused(tmp_path, lambda path: IncarnationFile(path.parent, path.name))


def test_source_type(tmp_path: Path) -> None:
    source = IncarnationFile(tmp_path).source()
    assert isinstance(source, PersistentIncarnationSource)
    assert source.store.path == tmp_path / "incarnation"


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "garbage"])
def test_corrupt_file_stops_the_node_naming_the_file_and_the_fix(
    tmp_path: Path, damage: str
) -> None:
    """A node never guesses its last incarnation: it refuses to start until the file is fixed."""
    from dstate_core import DStateNode
    from dstate_core.testing import SimNetwork, TestClock, TestState

    store = IncarnationFile(tmp_path)
    store.store(1_699_999_999_000)
    record = store.path.read_bytes()
    damaged = {
        "truncated": record[:-3],
        "bit flip": record[:20] + bytes([record[20] ^ 0x01]) + record[21:],
        "garbage": b"not an incarnation record",
    }[damage]
    store.path.write_bytes(damaged)

    clock = TestClock(wall_ms=1_700_000_000_000)
    runtime = SimNetwork(clock).add_runtime("a")
    try:
        with pytest.raises(PersistError) as refused:
            DStateNode(runtime, clock=clock, data_dir=tmp_path)
        message = str(refused.value)
        assert str(store.path) in message
        assert "repair or restore the file, or delete" in message
        assert store.path.read_bytes() == damaged  # left for the operator to inspect

        store.path.unlink()  # the documented fix, when the clock is past every earlier start
        node = DStateNode(runtime, clock=clock, data_dir=tmp_path)
        fresh = node.register(TestState).state.generation.incarnation
        node.shutdown()
        assert fresh == clock.wall_ms() and store.load() == fresh
    finally:
        runtime.shutdown()
