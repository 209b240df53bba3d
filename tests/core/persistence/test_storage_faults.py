"""Storage faults through a real node: a disk that fills up, a read-only data directory.

Full disk. Primary: a real 1 MiB tmpfs mounted for the test (root, as this
suite runs), filled with a filler file until the kernel says ENOSPC, then
emptied. Fallback (always run, so the behaviour is tested even where mounting
is not permitted): ENOSPC injected at ``os.write`` / ``os.fsync`` for the files
under the store's directory (``FilePersistence``), or SQLite's own SQLITE_FULL,
the code it reports for ENOSPC, produced with ``PRAGMA max_page_count``
(SQLite's C code does not go through Python's ``os``).

Read-only. Primary: a tmpfs remounted read-only (``mount -o remount,ro``), so
the kernel answers EROFS (root ignores permission bits, so chmod would not do).
Fallback: ``os.open`` raising EROFS for files created under the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dstate_core import (
    DStateNode,
    FilePersistence,
    Generation,
    MutationError,
    PersistError,
    SqlitePersistence,
    StateConfig,
    SyncStrategy,
)
from dstate_core.testing import (
    SimNetwork,
    TestClock,
    TestDeltaState,
    TestState,
    local_cluster,
)

# -- a state whose delta log the SQLite backend can replay --------------------------


class LoggedDeltaState(TestDeltaState):
    """TestDeltaState with the replay hook, so SqlitePersistence appends deltas."""

    NAME = "logged_delta_state"

    @classmethod
    def apply_state_delta(cls, state: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
        old = state["counters"].get(delta["key"], 0)
        counters = {**state["counters"], delta["key"]: delta["value"]}
        history = [*state["history"], delta["value"] - old]
        return {**state, "counters": counters, "total": delta["total"], "history": history}


# -- file systems ---------------------------------------------------------------------


def _mount_tmpfs(target: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` on ``target``; the reason it failed, or None."""
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run mount: {exc}"
    if done.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {done.stderr.strip() or done.returncode}"
    return None


def _umount(target: Path) -> None:
    for args in (["umount", str(target)], ["umount", "-l", str(target)]):
        if subprocess.run(args, capture_output=True, check=False, timeout=10).returncode == 0:
            return


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size``; skips the test (saying why) if mounting is not permitted."""
    base = Path(tempfile.mkdtemp(prefix="dstate-fs-"))
    reason = _mount_tmpfs(base, size)
    if reason is not None:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(reason)
    try:
        yield base
    finally:
        _umount(base)
        shutil.rmtree(base, ignore_errors=True)


class Disk:
    """A directory whose file system can be filled up and emptied again."""

    directory: Path

    def fill(self, slack: int = 0) -> None:
        """Use up the space, leaving about ``slack`` bytes free."""
        raise NotImplementedError

    def free(self) -> None:
        raise NotImplementedError

    def attach(self, store: Any) -> None:
        """Called with the backend once it is built (the SQLite fallback needs it)."""


class TmpfsDisk(Disk):
    """A real small tmpfs, filled with a filler file until write() fails with ENOSPC."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.filler = directory / "filler"

    def fill(self, slack: int = 0) -> None:
        chunk = b"\xff" * 4096
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (len(chunk), 512, 1):
                while True:
                    try:
                        os.write(fd, chunk[:size])
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        probe = self.directory / "probe"
        with pytest.raises(OSError, match="No space left on device"):  # really full
            probe.write_bytes(b"x")
        probe.unlink(missing_ok=True)
        if slack:  # give back a few pages: some saves fit, later ones do not
            os.truncate(self.filler, max(0, self.filler.stat().st_size - slack))

    def free(self) -> None:
        self.filler.unlink()


class InjectedDisk(Disk):
    """ENOSPC injected where the kernel would report it.

    Files: ``os.write`` (and ``os.fsync``, as delayed-allocation file systems
    report it) fail with ENOSPC for descriptors opened under ``directory``.
    SQLite: its C code does its own I/O, so the fallback is ``PRAGMA
    max_page_count`` at the current size, which makes SQLite fail with
    SQLITE_FULL ("database or disk is full"), the same error it gives on ENOSPC.
    """

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch, at: str) -> None:
        self.directory = directory
        self.full = False
        self.budget = 0
        self.at = at
        self._overflowed: set[int] = set()
        self.store: Any = None
        self._fds: set[int] = set()
        real_open, real_write, real_fsync, real_close = os.open, os.write, os.fsync, os.close
        root = str(directory)

        def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            fd = real_open(path, flags, mode, **kw)
            if os.fspath(path).startswith(root):
                self._fds.add(fd)
            return fd

        def fake_write(fd: int, data: Any) -> int:
            if self.full and fd in self._fds:
                if len(data) > self.budget:
                    if self.at == "write":
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    self._overflowed.add(fd)  # delayed allocation: reported at fsync
                self.budget = max(0, self.budget - len(data))
            return real_write(fd, data)

        def fake_fsync(fd: Any) -> None:
            if fd in self._overflowed:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        def fake_close(fd: int) -> None:
            self._fds.discard(fd)
            self._overflowed.discard(fd)
            real_close(fd)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "write", fake_write)
        monkeypatch.setattr(os, "fsync", fake_fsync)
        monkeypatch.setattr(os, "close", fake_close)

    def attach(self, store: Any) -> None:
        self.store = store

    def _sqlite(self) -> sqlite3.Connection | None:
        if isinstance(self.store, SqlitePersistence):
            return self.store._db.connection()  # the backend's own connection
        return None

    def fill(self, slack: int = 0) -> None:
        self.full = True
        self.budget = slack
        conn = self._sqlite()
        if conn is not None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + slack // 4096}")

    def free(self) -> None:
        self.full = False
        conn = self._sqlite()
        if conn is not None:
            conn.execute("PRAGMA max_page_count = 1073741823")


@pytest.fixture(params=["tmpfs", "injected-write", "injected-fsync"])
def disk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    if request.param == "tmpfs":
        with tmpfs("1m") as directory:
            yield TmpfsDisk(directory)
    else:
        with tempfile.TemporaryDirectory(prefix="dstate-inj-") as directory:
            yield InjectedDisk(Path(directory), monkeypatch, request.param.split("-")[1])


# -- backends -------------------------------------------------------------------------

#: kind -> (state type, backend factory, fresh reader of what is stored)
Backend = tuple[type[Any], Callable[[Path], Any], Callable[[Path], Any]]


def _file_reader(directory: Path) -> Any:
    return FilePersistence(directory / "state.rec").load()


def _sqlite_reader(state_type: type[Any]) -> Callable[[Path], Any]:
    def read(directory: Path) -> Any:
        with SqlitePersistence(directory / "node.db", state_type=state_type) as fresh:
            return fresh.load()

    return read


BACKENDS: dict[str, Backend] = {
    "file": (TestState, lambda d: FilePersistence(d / "state.rec"), _file_reader),
    "file-delta": (
        LoggedDeltaState,
        lambda d: FilePersistence(d / "state.rec"),
        _file_reader,
    ),
    "sqlite": (
        TestState,
        lambda d: SqlitePersistence(d / "node.db"),
        _sqlite_reader(TestState),
    ),
    "sqlite-delta-log": (
        LoggedDeltaState,
        lambda d: SqlitePersistence(d / "node.db", state_type=LoggedDeltaState),
        _sqlite_reader(LoggedDeltaState),
    ),
}


def mutate(shard: Any, step: int) -> Generation:
    """One mutation that makes the stored state grow (so a full disk must refuse it)."""
    if shard.state_type is TestState:

        def grow(state: TestState) -> None:
            state.value += 1
            state.items[f"k{step}"] = step
            state.label += "x" * 200

        return shard.mutate(grow)  # type: ignore[no-any-return]
    key = f"k{step}-" + "x" * 200  # a new, long counter name: the state grows
    return shard.mutate_with_delta(LoggedDeltaState.bump(key, step))  # type: ignore[no-any-return]


def public(state_type: type[Any], value: Any) -> Any:
    """What a peer holds of ``value``: the whole state, or its projected view."""
    return value.project_view() if state_type is LoggedDeltaState else value


def try_mutate(shard: Any, step: int) -> Generation | MutationError:
    """:func:`mutate`, returning its MutationError instead of raising it."""
    try:
        return mutate(shard, step)
    except MutationError as exc:
        return exc


def leftovers(directory: Path) -> list[str]:
    """Temporary files a failed write left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def peer_view(shard: Any) -> tuple[Generation, Any]:
    view = shard.snapshot()["a"]
    return view.generation, view.value


# -- a full disk ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_full_disk_refuses_mutations_loses_nothing_and_recovers(disk: Disk, kind: str) -> None:
    state_type, make, read_stored = BACKENDS[kind]
    store = make(disk.directory)
    disk.attach(store)
    config = StateConfig(persistence=store, sync_strategy=SyncStrategy.active_push())
    with local_cluster(["a", "b"]) as cluster:
        a = cluster.node("a").register(state_type, config)
        b = cluster.node("b").register(
            state_type, StateConfig(sync_strategy=SyncStrategy.active_push())
        )
        cluster.run_until_idle()
        step = 0
        for step in range(1, 4):
            mutate(a, step)
        acked = a.state
        cluster.run_until_idle()

        disk.fill(slack=16384)  # the disk fills during the next mutations
        failures = 0
        saved_while_filling = 0
        while failures < 3:  # mutate while the disk fills, until three saves are refused
            step += 1
            assert step < 500, "the full disk never refused a save"
            before = a.state
            generation = try_mutate(a, step)
            if isinstance(generation, MutationError):
                failures += 1
                assert isinstance(generation.__cause__, PersistError), generation.__cause__
                assert "not committed" in str(generation)
                assert a.state.generation == before.generation  # nothing changed...
                assert a.state.value == before.value
                cluster.run_until_idle()
                assert peer_view(b) == (acked.generation, public(state_type, acked.value))
                continue
            assert generation == before.generation.next()
            assert failures == 0, "a save went through on a disk that had refused one"
            saved_while_filling += 1
            acked = a.state  # the save went through: acknowledged, must survive
            cluster.run_until_idle()
            assert peer_view(b) == (acked.generation, public(state_type, acked.value))

        assert saved_while_filling > 0, "the slack let no save through"
        assert not leftovers(disk.directory)
        # What is on disk, read by a new backend, is exactly the last acknowledged state.
        disk.free()
        stored = read_stored(disk.directory)
        assert stored is not None and stored.generation == acked.generation
        assert state_type.from_storage(stored.value, stored.storage_version) == acked.value

        # Space is back: mutations go through again and reach the peer.
        for _ in range(2):
            step += 1
            generation = mutate(a, step)
            assert generation == acked.generation.next()
            acked = a.state
        cluster.run_until_idle()
        assert peer_view(b) == (acked.generation, public(state_type, acked.value))

        # A restart on the same store resumes exactly the last acknowledged state,
        # with the same backend object and with a new one on the same path.
        for again in (store, make(disk.directory)):
            cluster.restart("a")
            a = cluster.node("a").register(state_type, StateConfig(persistence=again))
            assert a.state.generation == acked.generation
            assert a.state.value == acked.value
        step += 1
        assert mutate(a, step) == acked.generation.next()
        cluster.run_until_idle()
        assert peer_view(b) == (a.state.generation, public(state_type, a.state.value))
        for backend in (store, again):
            if isinstance(backend, SqlitePersistence):
                backend.close()


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_restart_on_a_still_full_disk_reloads_the_last_acknowledged_state(
    disk: Disk, kind: str
) -> None:
    """A node that crashes right after a refused save comes back at the acknowledged state."""
    state_type, make, _ = BACKENDS[kind]
    store = make(disk.directory)
    disk.attach(store)
    with local_cluster(["a"]) as cluster:
        a = cluster.node("a").register(state_type, StateConfig(persistence=store))
        for step in range(1, 3):
            mutate(a, step)
        acked = a.state
        disk.fill()
        for step in range(3, 500):  # until the full disk refuses a save
            if isinstance(try_mutate(a, step), MutationError):
                break
            acked = a.state
        else:
            pytest.fail("the full disk never refused a save")
        assert (a.state.generation, a.state.value) == (acked.generation, acked.value)
        cluster.restart("a")  # the crash: nothing but the store survives
        with pytest.raises(PersistError, match="No space left on device") as info:
            cluster.node("a").register(state_type, StateConfig(persistence=store))
        assert str(disk.directory) in str(info.value) or isinstance(disk, InjectedDisk)
        assert state_type.NAME not in cluster.node("a").states
        assert not leftovers(disk.directory)  # the failed probe left no temp file
        disk.free()
        a = cluster.node("a").register(state_type, StateConfig(persistence=store))
        assert (a.state.generation, a.state.value) == (acked.generation, acked.value)
        if isinstance(store, SqlitePersistence):
            store.close()


# -- a read-only data directory -----------------------------------------------------


@pytest.fixture(params=["remount-ro", "injected-erofs"])
def read_only(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Path], None]]:
    """A writable directory and a function that makes it read-only (EROFS from then on)."""
    if request.param == "remount-ro":
        with tmpfs("1m") as directory:

            def remount(target: Path) -> None:
                assert target == directory
                subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)

            remount.directory = directory  # type: ignore[attr-defined]
            yield remount
        return
    with tempfile.TemporaryDirectory(prefix="dstate-ro-") as name:
        directory = Path(name)
        real_open = os.open

        def inject(target: Path) -> None:
            def read_only_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
                if os.fspath(path).startswith(str(target)) and flags & (
                    os.O_CREAT | os.O_WRONLY | os.O_RDWR
                ):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
                return real_open(path, flags, mode, **kw)

            monkeypatch.setattr(os, "open", read_only_open)

        inject.directory = directory  # type: ignore[attr-defined]
        yield inject


def _assert_clear(exc: PersistError, path: Path) -> None:
    message = str(exc)
    assert str(path) in message, message
    assert "Read-only file system" in message, message
    assert "remount the file system read-write" in message, message  # says what to do


def test_read_only_data_dir_fails_at_node_construction(read_only: Any) -> None:
    directory: Path = read_only.directory
    read_only(directory)
    network = SimNetwork(TestClock())
    runtime = network.add_runtime("a")
    try:
        with pytest.raises(PersistError) as info:
            DStateNode(runtime, clock=TestClock(), data_dir=directory)
        _assert_clear(info.value, directory)
        assert "incarnation" in str(info.value)
    finally:
        runtime.shutdown()


@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("existing", [False, True], ids=["empty", "with-record"])
def test_read_only_store_fails_at_register_not_at_first_mutation(
    read_only: Any, kind: str, existing: bool
) -> None:
    directory: Path = read_only.directory
    state_type, make, _ = BACKENDS[kind]
    with local_cluster(["a"]) as cluster:
        if existing:  # the store was written before the file system went read-only
            first = make(directory)
            shard = cluster.node("a").register(state_type, StateConfig(persistence=first))
            mutate(shard, 1)
            if isinstance(first, SqlitePersistence):
                first.close()
            cluster.restart("a")
        store = make(directory)  # the constructor only stats; the directory is fine so far
        read_only(directory)
        node = cluster.node("a")
        with pytest.raises(PersistError) as info:
            node.register(state_type, StateConfig(persistence=store))
        _assert_clear(info.value, directory)
        assert state_type.NAME not in node.states  # nothing half-registered
        # The node is still usable: the same state without persistence registers.
        shard = node.register(state_type)
        assert mutate(shard, 1).age == 1
        if isinstance(store, SqlitePersistence):
            store.close()
