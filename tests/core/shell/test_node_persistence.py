"""Persistence as a node uses it: upgrades, early errors, incarnations."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dstate_core import (
    DistributedState,
    DStateNode,
    FilePersistence,
    Generation,
    IncarnationFile,
    NewerRecordError,
    PersistError,
    SqlitePersistence,
    StateConfig,
    StateNotRegisteredError,
    StateObject,
)
from dstate_core.testing import SimNetwork, TestClock, local_cluster


class ProfileV1(DistributedState):
    NAME: ClassVar[str] = "profile"
    STORAGE_VERSION: ClassVar[int] = 1
    full_name: str = ""


class ProfileV2(DistributedState):
    """Version 2 splits the name; migrate_state upgrades version-1 records."""

    NAME: ClassVar[str] = "profile"
    STORAGE_VERSION: ClassVar[int] = 2
    first: str = ""
    last: str = ""

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> ProfileV2:
        first, _, last = data["full_name"].partition(" ")
        return cls(first=first, last=last)


class ProfileV2NoMigration(DistributedState):
    NAME: ClassVar[str] = "profile"
    STORAGE_VERSION: ClassVar[int] = 2
    first: str = ""


def set_name(name: str) -> Any:
    def apply(state: ProfileV1) -> None:
        state.full_name = name

    return apply


BACKENDS = {
    "file": lambda tmp: FilePersistence(tmp / "profile.rec"),
    "sqlite": lambda tmp: SqlitePersistence(tmp / "node.db"),
}


def write_v1(tmp_path: Path, kind: str) -> Generation:
    """Run a node at version 1, mutate twice, return the committed generation."""
    with local_cluster(["a"]) as cluster:
        store = BACKENDS[kind](tmp_path)
        shard = cluster.node("a").register(ProfileV1, StateConfig(persistence=store))
        shard.mutate(set_name("Ada"))
        generation = shard.mutate(set_name("Ada Lovelace"))
        if isinstance(store, SqlitePersistence):
            store.close()
        return generation


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_version_1_record_migrates_into_version_2(tmp_path: Path, kind: str) -> None:
    written = write_v1(tmp_path, kind)
    with local_cluster(["a"], clock=TestClock(wall_ms=1_800_000_000_000)) as cluster:
        store = BACKENDS[kind](tmp_path)
        shard = cluster.node("a").register(ProfileV2, StateConfig(persistence=store))
        assert shard.state.generation == written  # the generation survives the upgrade
        assert shard.state.storage_version == 2
        assert (shard.state.value.first, shard.state.value.last) == ("Ada", "Lovelace")
        shard.mutate(lambda s: s.model_copy(update={"last": "King"}))
    reloaded = BACKENDS[kind](tmp_path).load()
    assert reloaded is not None
    assert reloaded.storage_version == 2
    assert reloaded.generation == written.next()


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_no_migration_starts_fresh_with_a_larger_incarnation_and_says_why(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_v1(tmp_path, kind)
    caplog.set_level(logging.WARNING, logger="dstate")
    with local_cluster(["a"]) as cluster:  # same wall clock as the writer
        shard = cluster.node("a").register(
            ProfileV2NoMigration, StateConfig(persistence=BACKENDS[kind](tmp_path))
        )
        assert shard.state.generation.age == 0
        assert shard.state.generation.incarnation > written.incarnation
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("storage version 1" in m and "migrate_state" in m for m in warnings), warnings


def stored_record(tmp_path: Path, kind: str) -> tuple[StateObject[Any] | None, bytes | None]:
    """What the backend loads, and the record file's bytes (File only)."""
    store = BACKENDS[kind](tmp_path)
    try:
        loaded = store.load()
    finally:
        if isinstance(store, SqlitePersistence):
            store.close()
    path = tmp_path / "profile.rec"
    return loaded, path.read_bytes() if kind == "file" else None


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_newer_storage_version_is_refused_not_loaded_nor_overwritten(
    tmp_path: Path, kind: str
) -> None:
    """A node rolled back to older code must not start fresh and save over the newer record."""
    with local_cluster(["a"]) as cluster:
        store = BACKENDS[kind](tmp_path)
        shard = cluster.node("a").register(ProfileV2, StateConfig(persistence=store))
        written = shard.mutate(lambda s: s.model_copy(update={"first": "Grace"}))
        if isinstance(store, SqlitePersistence):
            store.close()
    before, raw_before = stored_record(tmp_path, kind)
    assert before is not None and before.generation == written and before.storage_version == 2

    with local_cluster(["a"]) as cluster:  # the rolled-back node
        store = BACKENDS[kind](tmp_path)
        with pytest.raises(NewerRecordError) as refused:
            cluster.node("a").register(ProfileV1, StateConfig(persistence=store))
        assert "profile" not in cluster.node("a").states
        if isinstance(store, SqlitePersistence):
            store.close()
    message = str(refused.value)
    assert isinstance(refused.value, PersistError)
    assert (refused.value.stored_version, refused.value.code_version) == (2, 1)
    for part in ("'profile'", "storage version 2", "STORAGE_VERSION 1", repr(store)):
        assert part in message, message
    assert "Deploy code that reads" in message and "move the record" in message

    after, raw_after = stored_record(tmp_path, kind)
    assert after == before  # the newer record is still there, unchanged
    assert raw_after == raw_before


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_missing_directory_fails_at_construction_naming_the_path(tmp_path: Path, kind: str) -> None:
    """The backends check their directory when built, before any node sees them."""
    with pytest.raises(PersistError, match="no-such-dir"):
        BACKENDS[kind](tmp_path / "no-such-dir")


def test_directory_removed_after_construction_fails_at_registration(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    store = FilePersistence(folder / "profile.rec")  # the directory exists: accepted
    folder.rmdir()
    with local_cluster(["a"]) as cluster:
        node = cluster.node("a")
        with pytest.raises(PersistError, match=re.escape(str(folder))):
            node.register(ProfileV1, StateConfig(persistence=store))
        assert "profile" not in node.states  # nothing half-registered...
        with pytest.raises(StateNotRegisteredError):
            node.lookup("profile")
        folder.mkdir()  # ...so once the directory is back, the same name registers
        shard = node.register(ProfileV1, StateConfig(persistence=store))
        shard.mutate(set_name("Ada"))
    assert (folder / "profile.rec").exists()


def test_record_of_another_state_is_refused(tmp_path: Path) -> None:
    class Other(DistributedState):
        NAME: ClassVar[str] = "other"
        x: int = 0

    path = tmp_path / "shared.rec"
    with local_cluster(["a"]) as cluster:
        cluster.node("a").register(ProfileV1, StateConfig(persistence=FilePersistence(path)))
        cluster.node("a").lookup("profile").mutate(set_name("x"))
    with local_cluster(["a"]) as cluster, pytest.raises(PersistError, match="profile"):
        cluster.node("a").register(Other, StateConfig(persistence=FilePersistence(path)))


def test_data_dir_incarnations_never_repeat_across_restarts(tmp_path: Path) -> None:
    """A frozen (or stepped-back) clock still yields a new incarnation per start."""
    seen = []
    for _ in range(3):
        clock = TestClock()  # the same wall time on every "process start"
        runtime = SimNetwork(clock).add_runtime("a")
        node = DStateNode(runtime, clock=clock, data_dir=tmp_path)
        shard = node.register(ProfileV1)  # no persistence for the state itself
        seen.append(shard.state.generation.incarnation)
        node.shutdown()
        runtime.shutdown()
    assert seen == sorted(set(seen))
    assert IncarnationFile(tmp_path).load() == seen[-1]


def test_data_dir_and_incarnations_are_exclusive(tmp_path: Path) -> None:
    from dstate_core.model._generation import IncarnationSource

    runtime = SimNetwork(TestClock()).add_runtime("a")
    with pytest.raises(ValueError, match="either"):
        DStateNode(runtime, data_dir=tmp_path, incarnations=IncarnationSource())
