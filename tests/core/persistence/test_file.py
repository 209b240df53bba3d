"""FilePersistence and the framed record codec."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstate_core import DistributedState, Generation, NewerRecordError, PersistError, StateObject
from dstate_core.persistence import FilePersistence
from dstate_core.persistence._records import STATE_MAGIC, decode_frame, encode_frame


class Counter(DistributedState):
    NAME = "counter"
    value: int = 0
    tags: list[str] = []


class Gauge(DistributedState):
    NAME = "gauge"
    level: float = 0.0


def state_object(value: Any, age: int = 1, storage_version: int = 1) -> StateObject[Any]:
    return StateObject(
        generation=Generation(1_700_000_000_123, age),
        storage_version=storage_version,
        value=value,
        created_time=1_700_000_000_000,
        modified_time=1_700_000_000_500 + age,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "counter.state"


def write_raw(path: Path, data: bytes) -> None:
    path.write_bytes(data)


# Plain values msgpack stores exactly (tuples come back as lists, so none here).
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
state_dicts = st.dictionaries(st.text(max_size=10), plain_values, max_size=8)


class TestRoundTrip:
    def test_model_round_trip(self, path: Path) -> None:
        state = Counter(value=41, tags=["a", "b"])
        FilePersistence(path).save(state_object(state, age=7), None)
        loaded = FilePersistence(path).load()
        assert loaded is not None
        assert loaded.generation == Generation(1_700_000_000_123, 7)
        assert loaded.storage_version == 1
        assert loaded.created_time == 1_700_000_000_000
        assert loaded.modified_time == 1_700_000_000_507
        assert loaded.value == {"value": 41, "tags": ["a", "b"]}
        assert Counter.from_storage(loaded.value, loaded.storage_version) == state

    def test_nothing_stored_loads_none(self, path: Path) -> None:
        assert FilePersistence(path).load() is None

    def test_overwrite_keeps_latest(self, path: Path) -> None:
        store = FilePersistence(path)
        for age in range(1, 6):
            store.save(state_object(Counter(value=age), age=age), None)
        loaded = FilePersistence(path).load()
        assert loaded is not None
        assert (loaded.generation.age, loaded.value["value"]) == (5, 5)
        assert [p.name for p in path.parent.iterdir()] == [path.name]

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=state_dicts)
    def test_plain_dict_round_trip(self, path: Path, data: dict[str, Any]) -> None:
        store = FilePersistence(path, state_name="counter")
        store.save(state_object(data), None)
        loaded = FilePersistence(path, state_name="counter").load()
        assert loaded is not None
        assert loaded.value == data

    def test_newer_storage_version_is_returned_as_stored(self, path: Path) -> None:
        FilePersistence(path).save(state_object(Counter(value=3), storage_version=9), None)
        loaded = FilePersistence(path).load()
        assert loaded is not None
        assert loaded.storage_version == 9
        with pytest.raises(NewerRecordError, match="newer"):
            Counter.from_storage(loaded.value, loaded.storage_version)

    def test_concurrent_saves_leave_one_whole_record(self, path: Path) -> None:
        store = FilePersistence(path)

        def writer(offset: int) -> None:
            for age in range(offset, offset + 20):
                store.save(state_object(Counter(value=age), age=age), None)

        threads = [threading.Thread(target=writer, args=(i * 100,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        loaded = FilePersistence(path).load()
        assert loaded is not None
        assert loaded.value["value"] == loaded.generation.age


class TestCorruption:
    @pytest.fixture
    def record(self, path: Path) -> bytes:
        FilePersistence(path).save(state_object(Counter(value=12345, tags=["x"] * 3)), None)
        return path.read_bytes()

    def test_truncated_at_every_offset(self, path: Path, record: bytes) -> None:
        for size in range(len(record)):
            write_raw(path, record[:size])
            with pytest.raises(PersistError, match=r"truncated|magic"):
                FilePersistence(path).load()

    def test_trailing_bytes(self, path: Path, record: bytes) -> None:
        write_raw(path, record + b"\0")
        with pytest.raises(PersistError, match="trailing"):
            FilePersistence(path).load()

    @pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
    def test_flipped_byte_at_every_offset(self, path: Path, record: bytes, mask: int) -> None:
        for offset in range(len(record)):
            damaged = bytearray(record)
            damaged[offset] ^= mask
            write_raw(path, bytes(damaged))
            with pytest.raises(PersistError):
                FilePersistence(path).load()

    def test_torn_file_never_loads_a_mix(self, path: Path, record: bytes) -> None:
        FilePersistence(path).save(state_object(Counter(value=54321, tags=["y"] * 3), age=2), None)
        newer = path.read_bytes()
        assert len(newer) == len(record)
        outcomes = set()
        for split in range(len(record) + 1):
            write_raw(path, newer[:split] + record[split:])
            try:
                loaded = FilePersistence(path).load()
            except PersistError:
                outcomes.add("error")
                continue
            assert loaded is not None
            assert (loaded.generation.age, loaded.value["value"]) in {(1, 12345), (2, 54321)}
            outcomes.add(loaded.generation.age)
        assert "error" in outcomes

    def test_unknown_format_version(self, path: Path, record: bytes) -> None:
        damaged = bytearray(record)
        damaged[4] = 2
        import zlib

        damaged[-4:] = zlib.crc32(bytes(damaged[:-4])).to_bytes(4, "big")
        write_raw(path, bytes(damaged))
        with pytest.raises(PersistError, match="format version 2"):
            FilePersistence(path).load()

    def test_not_a_record(self, path: Path) -> None:
        write_raw(path, b"hello, this is not a dstate record at all")
        with pytest.raises(PersistError, match="magic") as info:
            FilePersistence(path).load()
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ([1, 2], "payload is a list"),
            ({"name": "counter"}, "'state' is missing"),
            ({"name": "", "state": {}}, "'name'"),
            ({"name": "counter", "state": []}, "'state' is a list"),
            (
                {"name": "counter", "state": {}, "generation": [1], "storage_version": 1},
                "'generation'",
            ),
            (
                {
                    "name": "counter",
                    "state": {},
                    "generation": [1, 2],
                    "storage_version": 0,
                    "created_time": 0,
                    "modified_time": 0,
                },
                "'storage_version'",
            ),
            (
                {
                    "name": "counter",
                    "state": {},
                    "generation": [1, 2],
                    "storage_version": 1,
                    "created_time": True,
                    "modified_time": 0,
                },
                "'created_time'",
            ),
        ],
    )
    def test_malformed_payload_with_valid_checksum(
        self, path: Path, payload: Any, message: str
    ) -> None:
        write_raw(path, encode_frame(STATE_MAGIC, payload, "test"))
        with pytest.raises(PersistError, match=message):
            FilePersistence(path).load()

    def test_undecodable_payload_with_valid_checksum(self) -> None:
        import struct
        import zlib

        body = b"\xc1"  # reserved msgpack byte
        head = struct.pack(">4sB3xQ", STATE_MAGIC, 1, len(body))
        data = head + body + zlib.crc32(head + body).to_bytes(4, "big")
        with pytest.raises(PersistError, match="undecodable"):
            decode_frame(data, STATE_MAGIC, "test")


class TestNames:
    def test_bound_backend_refuses_other_record(self, path: Path) -> None:
        FilePersistence(path).save(state_object(Counter(value=1)), None)
        with pytest.raises(PersistError, match="'counter', not 'gauge'"):
            FilePersistence(path, state_name="gauge").load()

    def test_bound_backend_refuses_saving_other_state(self, path: Path) -> None:
        store = FilePersistence(path, state_name="counter")
        with pytest.raises(PersistError, match=r"bound to state 'counter'.*'gauge'"):
            store.save(state_object(Gauge(level=1.0)), None)
        assert store.load() is None

    def test_first_save_binds(self, path: Path) -> None:
        store = FilePersistence(path)
        store.save(state_object(Counter(value=1)), None)
        assert store.state_name == "counter"
        with pytest.raises(PersistError):
            store.save(state_object(Gauge()), None)

    def test_load_binds(self, path: Path) -> None:
        FilePersistence(path).save(state_object(Counter(value=1)), None)
        store = FilePersistence(path)
        assert store.load() is not None
        with pytest.raises(PersistError, match="cannot store state 'gauge'"):
            store.save(state_object(Gauge()), None)

    def test_bind(self, path: Path) -> None:
        store = FilePersistence(path)
        store.bind(Counter)
        store.bind("counter")
        with pytest.raises(PersistError, match="own file"):
            store.bind(Gauge)
        with pytest.raises(PersistError, match="no NAME"):
            store.bind(DistributedState)

    def test_plain_dict_needs_a_name(self, path: Path) -> None:
        with pytest.raises(PersistError, match="state_name="):
            FilePersistence(path).save(state_object({"value": 1}), None)

    def test_unencodable_state(self, path: Path) -> None:
        with pytest.raises(PersistError, match="cannot encode"):
            FilePersistence(path, "x").save(state_object({"v": object()}), None)
        assert not list(path.parent.iterdir())

    def test_to_storage_must_give_a_dict(self, path: Path) -> None:
        class Odd(Counter):
            NAME = "odd"

            def to_storage(self) -> dict[str, Any]:
                return [1]  # type: ignore[return-value]

        with pytest.raises(PersistError, match="expected a dict"):
            FilePersistence(path).save(state_object(Odd()), None)
        with pytest.raises(PersistError, match="no to_storage"):
            FilePersistence(path).save(state_object(3), None)


class TestBadLocations:
    def test_missing_directory_fails_in_constructor(self, tmp_path: Path) -> None:
        target = tmp_path / "nope" / "state.bin"
        with pytest.raises(PersistError, match="does not exist") as info:
            FilePersistence(target)
        assert str(tmp_path / "nope") in str(info.value)

    def test_parent_is_a_regular_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        with pytest.raises(PersistError, match="is not a directory") as info:
            FilePersistence(tmp_path / "file" / "state.bin")
        assert str(tmp_path / "file") in str(info.value)

    def test_path_is_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PersistError, match="is a directory"):
            FilePersistence(tmp_path)

    def test_directory_removed_after_construction(self, tmp_path: Path) -> None:
        directory = tmp_path / "d"
        directory.mkdir()
        store = FilePersistence(directory / "state.bin")
        directory.rmdir()
        with pytest.raises(PersistError, match="does not exist"):
            store.check_writable()
        with pytest.raises(PersistError, match="cannot write") as info:
            store.save(state_object(Counter()), None)
        assert str(directory) in str(info.value)

    def test_read_only_directory(self, tmp_path: Path) -> None:
        assert_read_only_refused(tmp_path, FilePersistence)

    def test_read_only_file_system(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # Root ignores permission bits, and no read-only mount is available, so the
        # EROFS a read-only mount gives is simulated at the os.open call.
        real_open = os.open

        def read_only_open(file: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            if flags & os.O_CREAT:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
            return real_open(file, flags, mode, **kw)

        monkeypatch.setattr(os, "open", read_only_open)
        store = FilePersistence(path)
        with pytest.raises(PersistError, match="Read-only file system") as info:
            store.check_writable()
        assert str(path.parent) in str(info.value)

    def test_unreadable_record(self, path: Path) -> None:
        store = FilePersistence(path)
        path.mkdir()
        with pytest.raises(PersistError, match="cannot read") as info:
            store.load()
        assert str(path) in str(info.value)


def assert_read_only_refused(directory: Path, backend: Any) -> None:
    """``backend(path).check_writable()`` raises naming the path, in a read-only directory.

    chmod cannot stop root, so as root the check runs in a forked child that
    drops to the unprivileged ``nobody`` user first: the refusal then comes from
    the kernel, as it would for a real service account.
    """
    del directory  # pytest's tmp_path is private to root (0700): use a traversable one
    base = Path(tempfile.mkdtemp(prefix="dstate-ro-"))
    base.chmod(0o755)
    read_only = base / "ro"
    read_only.mkdir()
    target = read_only / "state.bin"
    store = backend(target)
    read_only.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(PersistError, match="not writable") as info:
                store.check_writable()
            assert str(read_only) in str(info.value)
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    store.check_writable()
                except PersistError as exc:
                    os.write(write_end, str(exc).encode())
                    code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "check_writable() did not refuse"
        assert "not writable" in message
        assert str(read_only) in message
    finally:
        read_only.chmod(0o755)
        shutil.rmtree(base)


class TestTempFiles:
    def test_leftovers_are_ignored_and_cleaned(self, path: Path) -> None:
        FilePersistence(path).save(state_object(Counter(value=5)), None)
        dead = path.with_name(f".{path.name}.999999999.0.tmp")
        dead.write_bytes(b"half a record")
        alive = path.with_name(f".{path.name}.{os.getppid()}.0.tmp")
        alive.write_bytes(b"someone else's write in flight")
        mine = path.with_name(f".{path.name}.{os.getpid()}.12345.tmp")
        mine.write_bytes(b"from an earlier life of this pid")
        loaded = FilePersistence(path).load()
        assert loaded is not None
        assert loaded.value["value"] == 5
        FilePersistence(path).check_writable()
        assert not dead.exists()
        assert not mine.exists()
        assert alive.exists()

    def test_first_save_cleans(self, path: Path) -> None:
        dead = path.with_name(f".{path.name}.999999999.0.tmp")
        dead.write_bytes(b"x")
        FilePersistence(path).save(state_object(Counter()), None)
        assert not dead.exists()

    def test_failed_save_keeps_old_record_and_no_temp(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FilePersistence(path)
        store.save(state_object(Counter(value=1), age=1), None)

        def broken_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(PersistError, match="Input/output error") as info:
            store.save(state_object(Counter(value=2), age=2), None)
        assert str(path) in str(info.value)
        monkeypatch.undo()
        loaded = store.load()
        assert loaded is not None
        assert loaded.generation.age == 1
        assert [p.name for p in path.parent.iterdir()] == [path.name]

    def test_directory_fsync_failure_is_reported(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import dstate_core.persistence._atomic as module

        def broken(directory: Path) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(module, "fsync_directory", broken)
        with pytest.raises(PersistError, match="fsync its directory"):
            FilePersistence(path).save(state_object(Counter()), None)

    def test_repr(self, path: Path) -> None:
        assert "counter.state" in repr(FilePersistence(path, "counter"))
        assert FilePersistence(path).path == path
