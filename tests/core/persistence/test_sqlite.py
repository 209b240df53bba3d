"""SqlitePersistence: rows, checksums, the delta log and its replay."""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel

from dstate_core import (
    DeltaDistributedState,
    DistributedState,
    Generation,
    NewerRecordError,
    PersistError,
    StateObject,
)
from dstate_core.persistence._records import DELTA_MAGIC, STATE_MAGIC, encode_frame
from dstate_core.persistence._sqlite import SqlitePersistence, state_delta_hook

from .test_file import assert_read_only_refused, state_dicts

INCARNATION = 1_700_000_000_123


class Counter(DistributedState):
    NAME = "counter"
    value: int = 0


class Gauge(DistributedState):
    NAME = "gauge"
    level: float = 0.0


class StockView(BaseModel):
    items: dict[str, int] = {}


class StockDelta(BaseModel):
    key: str
    count: int


class StockBase(DeltaDistributedState):
    """A delta state without the replay hook."""

    NAME = "opaque_stock"
    View: ClassVar[type[BaseModel]] = StockView
    Delta: ClassVar[type[BaseModel]] = StockDelta
    items: dict[str, int] = {}
    secret: str = "s3cret"

    def project_view(self) -> StockView:
        return StockView(items=dict(self.items))

    @classmethod
    def project_delta(cls, change: Any) -> StockDelta:
        return StockDelta(key=change[0], count=change[1])

    @classmethod
    def apply_delta(cls, view: Any, delta: Any) -> StockView:
        return StockView(items={**view.items, delta.key: delta.count})


class OpaqueStock(StockBase):
    """Its deltas miss nothing, but it does not say so: every save is a checkpoint."""


class Stock(StockBase):
    """A delta state whose deltas capture every change, so it opts in to replay."""

    NAME = "stock"

    @classmethod
    def apply_state_delta(cls, state: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
        return {**state, "items": {**state["items"], delta["key"]: delta["count"]}}


def obj(value: Any, age: int, *, incarnation: int = INCARNATION, version: int = 1) -> Any:
    return StateObject(
        generation=Generation(incarnation, age),
        storage_version=version,
        value=value,
        created_time=1_700_000_000_000,
        modified_time=1_700_000_000_000 + age,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


def rows(db_path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))


def mutate_stock(store: SqlitePersistence, state: Stock, age: int, key: str, count: int) -> Stock:
    new = state.model_copy(update={"items": {**state.items, key: count}})
    store.save(obj(new, age), Stock.project_delta((key, count)))
    return new


class TestRoundTrip:
    def test_model_round_trip(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as store:
            store.save(obj(Counter(value=7), 3), None)
        with SqlitePersistence(db_path, "counter") as store:
            loaded = store.load()
        assert loaded is not None
        assert loaded.generation == Generation(INCARNATION, 3)
        assert loaded.storage_version == 1
        assert (loaded.created_time, loaded.modified_time) == (1_700_000_000_000, 1_700_000_000_003)
        assert Counter.from_storage(loaded.value, 1) == Counter(value=7)

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=state_dicts)
    def test_plain_dict_round_trip(self, db_path: Path, data: dict[str, Any]) -> None:
        with SqlitePersistence(db_path, "counter") as store:
            store.save(obj(data, 1), None)
        with SqlitePersistence(db_path, "counter") as store:
            loaded = store.load()
        assert loaded is not None
        assert loaded.value == data

    def test_nothing_stored(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as store:
            assert store.load() is None
        with SqlitePersistence(db_path, "counter") as store:
            assert store.load() is None

    def test_wal_mode_and_tables(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, "counter") as store:
            store.check_writable()
            with sqlite3.connect(db_path) as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            assert {"dstate_meta", "dstate_state", "dstate_delta"} <= tables

    def test_newer_storage_version_is_returned_as_stored(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as store:
            store.save(obj(Counter(value=1), 1, version=5), None)
        with SqlitePersistence(db_path, "counter") as store:
            loaded = store.load()
        assert loaded is not None
        assert loaded.storage_version == 5
        with pytest.raises(NewerRecordError, match="newer"):
            Counter.from_storage(loaded.value, loaded.storage_version)


class TestStatesAndNames:
    def test_states_share_one_file(self, db_path: Path) -> None:
        db = SqlitePersistence(db_path)
        counter = db.for_state(Counter)
        gauge = db.for_state("gauge")
        assert db.for_state(Counter) is counter
        counter.save(obj(Counter(value=1), 1), None)
        gauge.save(obj(Gauge(level=2.5), 4), None)
        assert [r[0] for r in rows(db_path, "dstate_state")] == ["counter", "gauge"]
        counter_loaded = SqlitePersistence(db_path, "counter").load()
        gauge_loaded = SqlitePersistence(db_path, state_type=Gauge).load()
        assert counter_loaded is not None
        assert gauge_loaded is not None
        assert counter_loaded.value == {"value": 1}
        assert gauge_loaded.value == {"level": 2.5}
        assert gauge_loaded.generation.age == 4
        db.close()
        counter.close()
        gauge.save(obj(Gauge(level=3.0), 5), None)  # still open: gauge holds it
        gauge.close()
        with pytest.raises(PersistError, match="closed"):
            gauge.load()

    def test_first_save_names_the_backend(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as store:
            store.save(obj(Counter(value=1), 1), None)
            assert store.state_name == "counter"
            with pytest.raises(PersistError, match=r"for_state\('gauge'\)"):
                store.save(obj(Gauge(), 1), None)
            assert store.for_state("counter") is store

    def test_unbound_load_of_a_single_state(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as store:
            store.save(obj(Counter(value=2), 1), None)
        with SqlitePersistence(db_path) as store:
            loaded = store.load()
            assert loaded is not None
            assert store.state_name == "counter"

    def test_unbound_load_of_many_states_is_refused(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as db:
            db.for_state("counter").save(obj(Counter(), 1), None)
            db.for_state("gauge").save(obj(Gauge(), 1), None)
        with (
            SqlitePersistence(db_path) as store,
            pytest.raises(PersistError, match=r"\['counter', 'gauge'\]"),
        ):
            store.load()

    def test_wrong_name_in_row_is_refused(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, "counter") as store:
            store.save(obj(Counter(value=1), 1), None)
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE dstate_state SET name = 'gauge'")
        with (
            SqlitePersistence(db_path, "gauge") as store,
            pytest.raises(PersistError, match="belongs to state 'counter', not 'gauge'"),
        ):
            store.load()

    def test_bound_backend_refuses_other_state(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, state_type=Counter) as store:
            with pytest.raises(PersistError, match="'counter'"):
                store.save(obj(Gauge(), 1), None)
            with pytest.raises(PersistError, match="bound to state 'counter'"):
                store.bind(Gauge)

    def test_bind_refuses_a_state_owned_by_a_sibling(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as db:
            sibling = db.for_state("counter")
            with pytest.raises(PersistError, match="another backend"):
                db.bind("counter")
            sibling.close()
            db.bind("counter")

    def test_constructor_arguments(self, db_path: Path) -> None:
        with pytest.raises(ValueError, match="does not match"):
            SqlitePersistence(db_path, "other", state_type=Counter)
        with pytest.raises(ValueError, match="checkpoint_every"):
            SqlitePersistence(db_path, checkpoint_every=0)
        with pytest.raises(ValueError, match="checkpoint_every"):
            SqlitePersistence(db_path, checkpoint_every=True)
        assert "node.db" in repr(SqlitePersistence(db_path, "x"))

    def test_plain_dict_needs_a_name(self, db_path: Path) -> None:
        with SqlitePersistence(db_path) as store, pytest.raises(PersistError, match="state_name"):
            store.save(obj({"value": 1}, 1), None)

    def test_threads_save_different_states(self, db_path: Path) -> None:
        db = SqlitePersistence(db_path)
        errors: list[BaseException] = []

        def run(name: str) -> None:
            store = db.for_state(name)
            try:
                for age in range(1, 31):
                    store.save(obj({"value": age}, age), None)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(f"s{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for i in range(4):
            loaded = db.for_state(f"s{i}").load()
            assert loaded is not None
            assert loaded.value == {"value": 30}
        db.close()


class TestDeltaLog:
    def test_hook_detection(self) -> None:
        assert state_delta_hook(Stock) is not None
        assert state_delta_hook(OpaqueStock) is None
        assert state_delta_hook(Counter) is None

    def test_replay_and_compaction(self, db_path: Path) -> None:
        store = SqlitePersistence(db_path, state_type=Stock, checkpoint_every=5)
        state = Stock(items={"a": 1})
        store.save(obj(state, 1), None)  # a plain mutation: checkpoint
        expected_log = []
        for age in range(2, 15):
            state = mutate_stock(store, state, age, f"k{age % 4}", age)
            expected_log.append(store.pending_deltas)
            assert len(rows(db_path, "dstate_delta")) == store.pending_deltas
        # Five deltas, a checkpoint, five deltas, a checkpoint, one delta.
        assert expected_log == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1]
        store.close()
        with SqlitePersistence(db_path, state_type=Stock) as again:
            loaded = again.load()
            assert again.pending_deltas == 1
        assert loaded is not None
        assert loaded.generation == Generation(INCARNATION, 14)
        assert loaded.modified_time == 1_700_000_000_014
        assert Stock.from_storage(loaded.value, 1) == state
        assert loaded.value["secret"] == "s3cret"

    def test_resume_appends_to_loaded_log(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, state_type=Stock, checkpoint_every=3) as store:
            state = Stock()
            store.save(obj(state, 1), None)
            state = mutate_stock(store, state, 2, "a", 1)
            state = mutate_stock(store, state, 3, "b", 2)
        with SqlitePersistence(db_path, state_type=Stock, checkpoint_every=3) as store:
            loaded = store.load()
            assert loaded is not None
            assert store.pending_deltas == 2
            state = mutate_stock(store, state, 4, "c", 3)  # the third delta
            assert store.pending_deltas == 3
            state = mutate_stock(store, state, 5, "d", 4)  # the limit: a checkpoint
            assert store.pending_deltas == 0
        with SqlitePersistence(db_path, state_type=Stock) as store:
            loaded = store.load()
        assert loaded is not None
        assert Stock.from_storage(loaded.value, 1) == state

    def test_no_hook_means_checkpoints(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, state_type=OpaqueStock) as store:
            state = OpaqueStock()
            store.save(obj(state, 1), None)
            for age in range(2, 6):
                new = state.model_copy(update={"items": {"x": age}})
                store.save(obj(new, age), StockDelta(key="x", count=age))
                state = new
            assert rows(db_path, "dstate_delta") == []
            loaded = store.load()
        assert loaded is not None
        assert loaded.value["items"] == {"x": 5}

    def test_delta_log_off_means_checkpoints(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, state_type=Stock, delta_log=False) as store:
            state = Stock()
            store.save(obj(state, 1), None)
            mutate_stock(store, state, 2, "a", 1)
            assert rows(db_path, "dstate_delta") == []

    def test_name_only_backend_writes_checkpoints(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, "stock") as store:
            state = Stock()
            store.save(obj(state, 1), None)
            mutate_stock(store, state, 2, "a", 1)
            assert rows(db_path, "dstate_delta") == []

    def test_generation_jump_writes_a_checkpoint(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, state_type=Stock) as store:
            state = Stock()
            store.save(obj(state, 1), None)
            state = mutate_stock(store, state, 2, "a", 1)
            assert store.pending_deltas == 1
            # A fresh start: new incarnation, age 0 (e.g. after a failed migration).
            state = Stock()
            store.save(obj(state, 1, incarnation=INCARNATION + 1), StockDelta(key="z", count=0))
            assert store.pending_deltas == 0
            state = mutate_stock(store, state, 5, "b", 1)  # not age + 1
            assert store.pending_deltas == 0

    def test_replay_needs_the_hook(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, state_type=Stock) as store:
            state = Stock()
            store.save(obj(state, 1), None)
            mutate_stock(store, state, 2, "a", 1)
        with (
            SqlitePersistence(db_path, "stock") as store,
            pytest.raises(PersistError, match="apply_state_delta"),
        ):
            store.load()

    @pytest.fixture
    def logged(self, db_path: Path) -> Path:
        with SqlitePersistence(db_path, state_type=Stock) as store:
            state = Stock()
            store.save(obj(state, 1), None)
            for age in range(2, 6):
                state = mutate_stock(store, state, age, f"k{age}", age)
        return db_path

    def load_stock(self, db_path: Path) -> Any:
        with SqlitePersistence(db_path, state_type=Stock) as store:
            return store.load()

    @pytest.mark.parametrize(
        ("hook", "message"),
        [
            (lambda state, delta: {}["boom"], "failed on delta"),
            (lambda state, delta: [1], "expected a dict"),
        ],
    )
    def test_hook_failure(self, logged: Path, hook: Any, message: str) -> None:
        replayer = type("Replayer", (), {"NAME": "stock", "apply_state_delta": staticmethod(hook)})
        with (
            SqlitePersistence(logged, state_type=replayer) as store,
            pytest.raises(PersistError, match=message),
        ):
            store.load()

    def test_gap_in_log(self, logged: Path) -> None:
        with sqlite3.connect(logged) as conn:
            conn.execute("DELETE FROM dstate_delta WHERE age = 3")
        with pytest.raises(PersistError, match="out of sequence"):
            self.load_stock(logged)

    def test_log_without_checkpoint(self, logged: Path) -> None:
        with sqlite3.connect(logged) as conn:
            conn.execute("DELETE FROM dstate_state")
        with pytest.raises(PersistError, match="without a checkpoint"):
            self.load_stock(logged)

    @pytest.mark.parametrize("offset", [0, 5, 17, 40, -3])
    def test_corrupt_delta_row(self, logged: Path, offset: int) -> None:
        with sqlite3.connect(logged) as conn:
            record = bytearray(
                conn.execute("SELECT record FROM dstate_delta WHERE age = 4").fetchone()[0]
            )
            record[offset] ^= 0x10
            conn.execute("UPDATE dstate_delta SET record = ? WHERE age = 4", (bytes(record),))
        with pytest.raises(PersistError, match=r"stock"):
            self.load_stock(logged)

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ({"name": "other", "generation": [INCARNATION, 6]}, "belongs to state 'other'"),
            ({"name": "stock", "generation": [INCARNATION + 1, 6]}, "out of sequence"),
            (
                {"name": "stock", "generation": [INCARNATION, 6], "storage_version": 2},
                "storage version 2",
            ),
            (
                {"name": "stock", "generation": [INCARNATION, 6], "storage_version": 1},
                "'delta' is missing",
            ),
        ],
    )
    def test_bad_delta_payload(self, logged: Path, payload: dict[str, Any], message: str) -> None:
        record = encode_frame(DELTA_MAGIC, payload, "test")
        with sqlite3.connect(logged) as conn:
            conn.execute("INSERT INTO dstate_delta VALUES ('stock', 6, ?)", (record,))
        with pytest.raises(PersistError, match=message):
            self.load_stock(logged)

    def test_row_of_wrong_type(self, logged: Path) -> None:
        with sqlite3.connect(logged) as conn:
            conn.execute("UPDATE dstate_delta SET record = 'text' WHERE age = 5")
        with pytest.raises(PersistError, match="malformed delta row"):
            self.load_stock(logged)
        with sqlite3.connect(logged) as conn:
            conn.execute("UPDATE dstate_state SET record = 42")
        with pytest.raises(PersistError, match="malformed row"):
            self.load_stock(logged)

    def test_failed_save_rolls_back_and_next_save_checkpoints(self, db_path: Path) -> None:
        store = SqlitePersistence(db_path, state_type=Stock, timeout=0.05)
        state = Stock()
        store.save(obj(state, 1), None)
        state = mutate_stock(store, state, 2, "a", 1)
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(PersistError, match="locked") as info:
            mutate_stock(store, state, 3, "b", 2)
        assert str(db_path) in str(info.value)
        blocker.execute("ROLLBACK")
        blocker.close()
        loaded = store.load()
        assert loaded is not None
        assert loaded.generation.age == 2
        state = mutate_stock(store, state, 3, "c", 3)  # retried: follows the loaded log
        assert store.pending_deltas == 2
        store.close()


class TestCorruptDatabase:
    @pytest.fixture
    def saved(self, db_path: Path) -> dict[str, Any]:
        with (
            SqlitePersistence(db_path) as db,
            db.for_state("counter") as counter,
            db.for_state("gauge") as gauge,
            db.for_state(Stock) as stock,
        ):
            counter.save(obj({"value": 1, "pad": "p" * 3000}, 9), None)
            gauge.save(obj({"level": 2.0}, 4), None)
            state = Stock()
            stock.save(obj(state, 1), None)
            for age in range(2, 6):
                state = mutate_stock(stock, state, age, f"k{age}", age)
            assert stock.pending_deltas == 4
        assert not db_path.with_name("node.db-wal").exists()
        return {"value": 1, "pad": "p" * 3000, "stock": state.to_storage()}

    def test_corrupt_row_checksum(self, db_path: Path, saved: dict[str, Any]) -> None:
        with sqlite3.connect(db_path) as conn:
            record = bytearray(
                conn.execute("SELECT record FROM dstate_state WHERE name='counter'").fetchone()[0]
            )
            record[100] ^= 0x01
            conn.execute("UPDATE dstate_state SET record = ? WHERE name='counter'", (record,))
        with (
            SqlitePersistence(db_path, "counter") as store,
            pytest.raises(PersistError, match="checksum mismatch"),
        ):
            store.load()

    def test_flipped_bytes_in_file_never_load_a_wrong_record(
        self, db_path: Path, saved: dict[str, Any], tmp_path: Path
    ) -> None:
        # integrity_check at open matters here: a flip in the name index would
        # otherwise hide the row, and the state would silently load as "nothing".
        original = db_path.read_bytes()
        copy = tmp_path / "copy.db"
        outcomes = {"error": 0, "clean": 0}
        for offset in range(0, len(original), 11):
            damaged = bytearray(original)
            damaged[offset] ^= 0x5A
            copy.write_bytes(bytes(damaged))
            for suffix in ("-wal", "-shm"):
                copy.with_name(copy.name + suffix).unlink(missing_ok=True)
            with SqlitePersistence(copy) as db:
                for name, age, expected in (
                    ("counter", 9, {"value": 1, "pad": "p" * 3000}),
                    ("stock", 5, saved["stock"]),
                ):
                    store = db.for_state(Stock if name == "stock" else name)
                    try:
                        loaded = store.load()
                    except PersistError:
                        outcomes["error"] += 1
                        continue
                    assert loaded is not None, f"flip at {offset} lost {name} silently"
                    assert loaded.value == expected, f"flip at {offset} changed {name}"
                    assert loaded.generation == Generation(INCARNATION, age)
                    outcomes["clean"] += 1
        assert outcomes["error"] > 100
        assert outcomes["clean"] > 100  # flips in unused space are harmless

    def test_garbage_file_is_refused(self, db_path: Path, saved: dict[str, Any]) -> None:
        db_path.write_bytes(b"not a database" * 100)
        with (
            SqlitePersistence(db_path, "counter") as store,
            pytest.raises(PersistError, match=re.escape(str(db_path))),
        ):
            store.load()

    def test_truncated_file_is_refused_never_loaded_as_nothing(
        self, db_path: Path, saved: dict[str, Any], tmp_path: Path
    ) -> None:
        """Every cut raises for the state it damages; an intact state loads exactly as saved.

        A cut before the last page fails ``integrity_check`` at open, so every
        state is refused. A cut in the tail of the last page leaves the b-tree
        valid (SQLite reads the missing bytes as zeros) but breaks the CRC of
        the record stored there; the states on intact pages load as committed.
        """
        original = db_path.read_bytes()
        copy = tmp_path / "copy.db"
        expected = {
            "counter": ({"value": 1, "pad": "p" * 3000}, 9),
            "gauge": ({"level": 2.0}, 4),
            "stock": (saved["stock"], 5),
        }
        sizes = [*range(1, len(original) - 200, 41), *range(len(original) - 200, len(original))]
        outcomes: dict[str, set[str]] = {"error": set(), "intact": set()}
        for size in sizes:
            refused = []
            for name, (value, age) in expected.items():
                copy.write_bytes(original[:size])
                for suffix in ("-wal", "-shm"):
                    copy.with_name(copy.name + suffix).unlink(missing_ok=True)
                store = (
                    SqlitePersistence(copy, state_type=Stock)
                    if name == "stock"
                    else SqlitePersistence(copy, name)
                )
                error = ""
                with store:
                    try:
                        loaded = store.load()
                    except PersistError as exc:
                        error = str(exc)
                if error:
                    assert str(copy) in error
                    refused.append(name)
                    outcomes["error"].add(name)
                    continue
                assert loaded is not None, f"cut at {size} of {len(original)} lost {name}"
                assert (loaded.value, loaded.generation) == (value, Generation(INCARNATION, age))
                outcomes["intact"].add(name)
            assert refused, f"a cut at {size} of {len(original)} bytes went unnoticed"
        assert outcomes == {"error": set(expected), "intact": {"counter", "gauge"}}

    @pytest.mark.parametrize("stub", [b"S", b"SQLite format 3"])
    def test_header_stub_is_refused_not_reinitialised(self, db_path: Path, stub: bytes) -> None:
        """SQLite itself would take a 1-byte file for an empty database and overwrite it."""
        db_path.write_bytes(stub)
        with (
            SqlitePersistence(db_path, "counter") as store,
            pytest.raises(PersistError, match=r"not an SQLite database.*move it away"),
        ):
            store.load()
        assert db_path.read_bytes() == stub

    def test_empty_file_is_an_empty_database(self, db_path: Path, saved: dict[str, Any]) -> None:
        """The one cut that loads as nothing: a 0-byte file is an empty database,
        the same as one created and never committed to (SQLite writes whole pages)."""
        db_path.write_bytes(b"")
        with SqlitePersistence(db_path, "counter") as store:
            assert store.load() is None

    def test_newer_schema_is_refused(self, db_path: Path, saved: dict[str, Any]) -> None:
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE dstate_meta SET value = 2")
        with (
            SqlitePersistence(db_path, "counter") as store,
            pytest.raises(PersistError, match="schema version 2"),
        ):
            store.load()

    def test_state_row_of_wrong_kind(self, db_path: Path, saved: dict[str, Any]) -> None:
        record = encode_frame(DELTA_MAGIC, {"name": "counter"}, "test")
        with sqlite3.connect(db_path) as conn:
            conn.execute("UPDATE dstate_state SET record = ? WHERE name='counter'", (record,))
        with (
            SqlitePersistence(db_path, "counter") as store,
            pytest.raises(PersistError, match="magic"),
        ):
            store.load()
        assert encode_frame(STATE_MAGIC, {}, "t")[:4] == STATE_MAGIC


class TestBadLocations:
    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PersistError, match="does not exist") as info:
            SqlitePersistence(tmp_path / "nope" / "node.db")
        assert str(tmp_path / "nope") in str(info.value)

    def test_parent_is_a_regular_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        with pytest.raises(PersistError, match="is not a directory"):
            SqlitePersistence(tmp_path / "file" / "node.db")

    def test_directory_removed_after_construction(self, tmp_path: Path) -> None:
        directory = tmp_path / "d"
        directory.mkdir()
        store = SqlitePersistence(directory / "node.db", "counter")
        shutil.rmtree(directory)
        with pytest.raises(PersistError, match="does not exist"):
            store.check_writable()
        with pytest.raises(PersistError, match="does not exist"):
            store.load()

    def test_read_only_directory(self, tmp_path: Path) -> None:
        assert_read_only_refused(tmp_path, SqlitePersistence)

    def test_read_only_database_file(self, db_path: Path) -> None:
        with SqlitePersistence(db_path, "counter") as store:
            store.save(obj(Counter(), 1), None)
        with SqlitePersistence(db_path, "counter", timeout=0.05) as store:
            store.check_writable()
            store.load()
            # Another process holding the write lock looks like a read-only file.
            blocker = sqlite3.connect(db_path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                with pytest.raises(PersistError, match="not writable"):
                    store.check_writable()
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

    def test_closed_backend(self, db_path: Path) -> None:
        store = SqlitePersistence(db_path, "counter")
        store.close()
        store.close()
        for call in (store.load, store.check_writable, lambda: store.for_state("x")):
            with pytest.raises(PersistError, match="closed"):
                call()
        with pytest.raises(PersistError, match="closed"):
            store.save(obj(Counter(), 1), None)
