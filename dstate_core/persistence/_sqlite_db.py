"""The SQLite database under :class:`~dstate_core.persistence.SqlitePersistence`.

One :class:`Database` per file, shared by the backends of the states stored
in it: it opens the file once, in WAL mode with ``synchronous=FULL``, checks
that the file is an SQLite database and passes ``integrity_check``, creates
the schema, and closes after its last backend is done.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..model._errors import PersistError
from ._atomic import check_location

__all__ = ["Database"]

_SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS dstate_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dstate_state (name TEXT PRIMARY KEY, record BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dstate_delta (name TEXT NOT NULL, age INTEGER NOT NULL, "
    "record BLOB NOT NULL, PRIMARY KEY (name, age)) WITHOUT ROWID",
)


class Database:
    """One connection to one database file, shared by the backends of its states."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.where = f"SqlitePersistence({str(path)!r})"
        self.lock = threading.RLock()
        self.timeout = timeout
        self.users = 0
        self.backends: dict[str, Any] = {}
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def connection(self) -> sqlite3.Connection:
        """The open connection (opened, configured and checked on first use)."""
        if self._closed:
            raise PersistError(f"{self.where} is closed")
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        check_location(self.path, self.where)
        self._check_header()
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise PersistError(f"{self.where}: cannot open the database: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise PersistError(f"{self.where}: cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise PersistError(
                    f"{self.where}: the database is corrupt: {'; '.join(problems[:5])}"
                )
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO dstate_meta VALUES ('schema_version', ?)",
                (_SCHEMA_VERSION,),
            )
            row = conn.execute(
                "SELECT value FROM dstate_meta WHERE key = 'schema_version'"
            ).fetchone()
            conn.execute("COMMIT")
            if row[0] != _SCHEMA_VERSION:
                raise PersistError(
                    f"{self.where}: database schema version {row[0]!r} is not supported "
                    f"(this code reads {_SCHEMA_VERSION})"
                )
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise PersistError(f"{self.where}: cannot open the database: {exc}") from exc
            raise
        return conn

    def _check_header(self) -> None:
        """Refuse a non-empty file that does not start with SQLite's header.

        SQLite itself takes a file of 0 or 1 bytes for an empty database and
        overwrites it on the first write; a stub that short is a truncated
        database (SQLite writes whole pages), so it is refused, not reused.
        A 0-byte file is an empty database: created, never committed to.
        """
        try:
            with self.path.open("rb") as file:
                head = file.read(len(_SQLITE_HEADER))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PersistError(f"{self.where}: cannot read the database file: {exc}") from exc
        if head and head != _SQLITE_HEADER:
            raise PersistError(
                f"{self.where}: the file is not an SQLite database (it does not start with "
                "SQLite's header; it may be truncated or another file): restore it, or move it "
                "away to start its states fresh"
            )

    def release(self) -> None:
        """One backend is done with the database; close it after the last one."""
        with self.lock:
            self.users -= 1
            if self.users <= 0 and not self._closed:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
