"""An SQLite persistence backend with an optional delta log (``docs/persistence.md``).

One database file per node holds every state of that node, one row per state
``NAME``. The connection runs in WAL mode with ``synchronous=FULL``, so a
committed save survives a crash or a power loss, and a crash mid-save leaves
the previous row.

Tables::

    dstate_meta(key TEXT PRIMARY KEY, value INTEGER)      -- schema_version = 1
    dstate_state(name TEXT PRIMARY KEY, record BLOB)      -- the checkpoint
    dstate_delta(name TEXT, age INTEGER, record BLOB,     -- the delta log
                 PRIMARY KEY (name, age))

Each ``record`` is a framed record of :mod:`dstate_core.persistence._records`
(header + msgpack + CRC-32), so every row carries its own checksum and names its
state. A checkpoint is a state record; a delta row's payload is ``{"name",
"storage_version", "generation": [incarnation, age], "modified_time",
"delta"}`` with ``delta`` the delta model's ``model_dump()``.

Delta log. Saving a whole large state on every mutation costs what the state
weighs; a delta costs what changed. To replay deltas on load, the backend must
turn a state dict and a delta into the next state dict, which only the state
type knows. A state class opts in with the classmethod hook::

    @classmethod
    def apply_state_delta(cls, state: dict, delta: dict) -> dict: ...

It receives plain (msgpack round-tripped) dicts, the ``to_storage()`` form of
the state and the ``model_dump()`` of the delta, and returns the next state's
``to_storage()`` form. Only define it when the delta captures *every* change a
mutation makes, private fields included; otherwise leave it out.

A save appends one delta row when the delta log is on, the state type (given
as ``state_type=`` or through :meth:`SqlitePersistence.bind`) has the hook, a
delta is passed, the generation follows the last one this backend wrote, and
fewer than ``checkpoint_every`` deltas are pending. Any other save writes a
checkpoint and deletes the log in the same transaction. Without the hook every
save is a checkpoint, which is always correct. ``load`` reads the checkpoint
and replays the log, checking that the ages follow one another.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model._errors import PersistError, a_or_an
from ..model._generation import Generation, StateObject
from ._atomic import PathArg, check_location, probe_writable
from ._records import (
    DELTA_MAGIC,
    STATE_MAGIC,
    check_record_name,
    decode_frame,
    encode_frame,
    field_of,
    generation_field,
    int_field,
    name_field,
    name_of_binding,
    parse_state_payload,
    plain_delta,
    state_name_of,
    state_payload,
    storage_dict_of,
)
from ._sqlite_db import Database

if TYPE_CHECKING:
    from ..model._state import DistributedState

__all__ = ["STATE_DELTA_HOOK", "SqlitePersistence", "StateDeltaHook", "state_delta_hook"]

#: The name of the optional classmethod a state defines to allow delta-log replay.
STATE_DELTA_HOOK = "apply_state_delta"

#: ``apply_state_delta(state_dict, delta_dict) -> next_state_dict``.
StateDeltaHook = Callable[[dict[str, Any], Any], Mapping[str, Any]]


def state_delta_hook(state_type: object) -> StateDeltaHook | None:
    """The state type's ``apply_state_delta`` hook, or ``None`` if it has none."""
    hook = getattr(state_type, STATE_DELTA_HOOK, None)
    return hook if callable(hook) else None


class SqlitePersistence:
    """Stores a node's owned shards in one SQLite database, one row per state.

    Args:
        path: the database file; its directory must exist.
        state_name: the state this backend stores. ``None`` takes it from the
            first saved state's ``NAME`` (or, on load, from a database holding
            exactly one state).
        state_type: the state class; gives the name and, if the class defines
            ``apply_state_delta``, enables the delta log.
        checkpoint_every: the most deltas kept in the log before a checkpoint.
        delta_log: ``False`` writes a checkpoint on every save.
        timeout: seconds to wait for another process's lock on the file.

    Use :meth:`for_state` to store more states in the same file; they share one
    connection. :meth:`close` (or a ``with`` block) closes it after the last user.

    Raises:
        PersistError: the directory is missing or ``path`` is a directory (a
            stat-only check; the database is opened on first use or by
            :meth:`check_writable`).

    Concurrency: thread-safe (one connection behind a lock, usable from any
    thread); a save blocks its caller for one transaction and its WAL fsync.
    One writer per state row.
    """

    def __init__(
        self,
        path: PathArg,
        state_name: str | None = None,
        *,
        state_type: type[DistributedState] | None = None,
        checkpoint_every: int = 100,
        delta_log: bool = True,
        timeout: float = 5.0,
    ) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int):
            raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
        db_path = Path(os.fspath(path))
        check_location(db_path, f"SqlitePersistence({str(db_path)!r})")
        self._setup(Database(db_path, timeout), checkpoint_every, bool(delta_log))
        if state_type is not None:
            self.bind(state_type)
            if state_name is not None and state_name != self._name:
                raise ValueError(
                    f"state_name={state_name!r} does not match {state_type.__qualname__}.NAME "
                    f"{self._name!r}"
                )
        elif state_name is not None:
            self.bind(state_name)

    def _setup(self, db: Database, checkpoint_every: int, delta_log: bool) -> None:
        self._db = db
        self._checkpoint_every = checkpoint_every
        self._delta_log = delta_log
        self._name: str | None = None
        self._hook: StateDeltaHook | None = None
        self._storage_version: int | None = None
        self._last: Generation | None = None
        self._pending = 0
        self._closed = False
        db.users += 1

    def _check_open(self) -> sqlite3.Connection:
        if self._closed:
            raise PersistError(f"{self._db.where} is closed")
        return self._db.connection()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    @property
    def state_name(self) -> str | None:
        """The state this backend is bound to, if known yet."""
        return self._name

    @property
    def pending_deltas(self) -> int:
        """Deltas this backend appended since its last checkpoint."""
        return self._pending

    def for_state(self, state: str | type[DistributedState]) -> SqlitePersistence:
        """The backend of another state in the same database (one per name, cached).

        Raises:
            PersistError: the database is closed.
        """
        name = name_of_binding(state)
        with self._db.lock:
            if self._closed:
                raise PersistError(f"{self._db.where} is closed")
            if self._name == name:
                self.bind(state)
                return self
            existing = self._db.backends.get(name)
            if existing is None or existing._closed:
                existing = object.__new__(SqlitePersistence)
                existing._setup(self._db, self._checkpoint_every, self._delta_log)
            existing.bind(state)
            return existing

    def bind(self, state: str | type[DistributedState]) -> None:
        """Bind to a state (a name or a state class); the node calls it at registration.

        A class also provides the ``apply_state_delta`` replay hook, if it has one.

        Raises:
            PersistError: already bound to another state, or another backend
                of this database stores that state.
        """
        name = name_of_binding(state)
        with self._db.lock:
            if self._name is not None and self._name != name:
                raise PersistError(
                    f"{self._db.where} is bound to state {self._name!r} and cannot also store "
                    f"{name!r}; use .for_state({name!r}) for another state in the same file"
                )
            other = self._db.backends.get(name)
            if other is not None and other is not self and not other._closed:
                raise PersistError(
                    f"{self._db.where}: state {name!r} is already stored by another backend "
                    f"of this database; use .for_state({name!r})"
                )
            self._name = name
            self._db.backends[name] = self
            if not isinstance(state, str):
                self._hook = state_delta_hook(state)

    def check_writable(self) -> None:
        """Fail early when the database cannot be written.

        Probes the directory with a temporary file, then opens the database
        (creating it and its tables), runs ``PRAGMA integrity_check`` and a write
        transaction.

        Raises:
            PersistError: naming the path and the reason.
        """
        with self._db.lock:
            if self._closed:
                raise PersistError(f"{self._db.where} is closed")
            probe_writable(self._db.path, self._db.where)
            conn = self._db.connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE dstate_meta SET value = value WHERE key = 'schema_version'")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise PersistError(
                    f"{self._db.where}: the database is not writable: {exc}"
                ) from exc

    def save(self, state: StateObject[Any], state_delta: Any) -> None:
        """Store ``state``: append ``state_delta`` to the log, or write a checkpoint.

        Raises:
            PersistError: nothing was stored (the transaction rolled back).
        """
        where = self._db.where
        name = state_name_of(state.value)
        with self._db.lock:
            conn = self._check_open()
            if name is None:
                name = self._name
                if name is None:
                    raise PersistError(
                        f"{where}: cannot tell which state a plain dict belongs to; "
                        "pass state_name="
                    )
            if self._name != name:
                self.bind(name)
            as_delta = self._appends_delta(state, state_delta)
            if as_delta:
                record = encode_frame(
                    DELTA_MAGIC,
                    {
                        "name": name,
                        "storage_version": state.storage_version,
                        "generation": [state.generation.incarnation, state.generation.age],
                        "modified_time": state.modified_time,
                        "delta": plain_delta(state_delta),
                    },
                    where,
                )
            else:
                data = storage_dict_of(state.value, where)
                record = encode_frame(STATE_MAGIC, state_payload(name, state, data), where)
            try:
                conn.execute("BEGIN IMMEDIATE")
                if as_delta:
                    conn.execute(
                        "INSERT INTO dstate_delta (name, age, record) VALUES (?, ?, ?)",
                        (name, state.generation.age, record),
                    )
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO dstate_state (name, record) VALUES (?, ?)",
                        (name, record),
                    )
                    conn.execute("DELETE FROM dstate_delta WHERE name = ?", (name,))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                self._last = None
                raise PersistError(f"{where}: cannot save state {name!r}: {exc}") from exc
            self._last = state.generation
            self._storage_version = state.storage_version
            self._pending = self._pending + 1 if as_delta else 0

    def _appends_delta(self, state: StateObject[Any], state_delta: Any) -> bool:
        return (
            self._delta_log
            and state_delta is not None
            and self._hook is not None
            and self._last is not None
            and state.generation == self._last.next()
            and state.storage_version == self._storage_version
            and self._pending < self._checkpoint_every
        )

    def load(self) -> StateObject[dict[str, Any]] | None:
        """The stored state (checkpoint plus replayed log) as a plain dict, or ``None``.

        ``storage_version`` is returned as stored; migrating or refusing a newer
        one is the state type's job (``from_storage``).

        Raises:
            PersistError: the database or a row is corrupt, the row belongs to
                another state, or the log cannot be replayed.
        """
        where = self._db.where
        with self._db.lock:
            conn = self._check_open()
            self._last = None
            self._pending = 0
            try:
                conn.execute("BEGIN")
                try:
                    name = self._name if self._name is not None else self._sole_name(conn)
                    if name is None:
                        return None
                    row = conn.execute(
                        "SELECT record FROM dstate_state WHERE name = ?", (name,)
                    ).fetchone()
                    deltas = conn.execute(
                        "SELECT age, record FROM dstate_delta WHERE name = ? ORDER BY age",
                        (name,),
                    ).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise PersistError(f"{where}: cannot read the database: {exc}") from exc
            if self._name is None:
                self.bind(name)
            where = f"{where} state {name!r}"
            if row is None:
                if deltas:
                    raise PersistError(f"{where}: a delta log without a checkpoint")
                return None
            if not isinstance(row[0], bytes):
                raise PersistError(f"{where}: malformed row, record is a {type(row[0]).__name__}")
            found, state = parse_state_payload(decode_frame(row[0], STATE_MAGIC, where), where)
            check_record_name(found, name, where)
            if deltas:
                state = self._replay(state, name, deltas, where)
            self._last = state.generation
            self._storage_version = state.storage_version
            self._pending = len(deltas)
            return state

    def _sole_name(self, conn: sqlite3.Connection) -> str | None:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM dstate_state UNION SELECT name FROM dstate_delta"
            )
        ]
        if len(names) > 1:
            raise PersistError(
                f"{self._db.where} holds states {sorted(map(str, names))}; pass state_name= "
                "or use .for_state(name) to pick one"
            )
        return str(names[0]) if names else None

    def _replay(
        self,
        state: StateObject[dict[str, Any]],
        name: str,
        deltas: list[tuple[Any, Any]],
        where: str,
    ) -> StateObject[dict[str, Any]]:
        if self._hook is None:
            raise PersistError(
                f"{where}: {len(deltas)} logged deltas need the state class's "
                f"{STATE_DELTA_HOOK}() to replay; pass state_type= or call bind(StateType)"
            )
        data = state.value
        generation = state.generation
        modified = state.modified_time
        for row_age, record in deltas:
            if not isinstance(record, bytes):
                raise PersistError(f"{where}: malformed delta row at age {row_age!r}")
            payload = decode_frame(record, DELTA_MAGIC, where)
            check_record_name(name_field(payload, where), name, where)
            found = generation_field(payload, where)
            if found != generation.next() or row_age != found.age:
                raise PersistError(
                    f"{where}: delta log out of sequence: {found} (row age {row_age!r}) "
                    f"does not follow {generation}"
                )
            version = int_field(payload, "storage_version", where, minimum=1)
            if version != state.storage_version:
                raise PersistError(
                    f"{where}: delta {found} has storage version {version}, the checkpoint "
                    f"{state.storage_version}; the log cannot be replayed"
                )
            try:
                result = self._hook(data, field_of(payload, "delta", where))
            except PersistError:
                raise
            except Exception as exc:
                raise PersistError(
                    f"{where}: {STATE_DELTA_HOOK}() failed on delta {found}: {exc}"
                ) from exc
            if not isinstance(result, Mapping):
                raise PersistError(
                    f"{where}: {STATE_DELTA_HOOK}() returned {a_or_an(type(result).__name__)}, "
                    "expected a dict"
                )
            data = dict(result)
            generation = found
            modified = int_field(payload, "modified_time", where)
        return StateObject(
            generation=generation,
            storage_version=state.storage_version,
            value=data,
            created_time=state.created_time,
            modified_time=modified,
        )

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def close(self) -> None:
        """Stop using the database; the connection closes after its last backend."""
        with self._db.lock:
            if self._closed:
                return
            self._closed = True
            if self._name is not None and self._db.backends.get(self._name) is self:
                del self._db.backends[self._name]
            self._db.release()

    def __enter__(self) -> SqlitePersistence:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SqlitePersistence({str(self._db.path)!r}, state_name={self._name!r}, "
            f"checkpoint_every={self._checkpoint_every}, delta_log={self._delta_log})"
        )
