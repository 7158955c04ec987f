"""The station database's connection: opening, migrating, transactions, and the SQL seam.

Theory of operation
-------------------
Every state change that matters (a frame sealed, a frame decrypted, a receipt applied) happens
inside one :meth:`StoreBase.transaction`, together with the new Olm session state, so a crash
at any instant leaves either all of it or none of it on disk. Nothing is sent and nothing is
acknowledged to a relay before that transaction commits.

The schema lives in versioned files ``schema/NNN_*.sql``, applied by the runner the relay
shares (:mod:`backchannel.schema`); the database file is backed up first when an existing
database is migrated. Rows come back as ``sqlite3.Row`` so each room reads columns by name.
Every ``sqlite3`` exception leaves through :meth:`StoreBase._x` as a ``StorageError``.

What the station's metrics count (a message sealed, received, delivered; an alarm raised) is
noted by the rooms as :class:`Committed` events while a transaction runs, and handed to
:attr:`StoreBase.on_commit` only once its COMMIT succeeded (with the COMMIT's duration), so a
rolled-back transaction counts nothing. Without ``on_commit`` nothing is noted.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backchannel.errors import StorageError
from backchannel.schema import SqliteMigrations, migrate, numbered_scripts
from backchannel.station.private import create_private

S = TypeVar("S", bound="StoreBase")


@dataclass(frozen=True)
class Committed:
    """One thing a committed transaction did that the metrics count."""

    what: str  # "sent", "received", "delivered" (messages), "alarm" (raised)
    line_id: bytes | None = None
    kind: str = ""  # the alarm's kind
    seconds: float = 0.0  # "delivered": from sealing to the delivered receipt


def _schema_files() -> list[tuple[int, str]]:
    return numbered_scripts("backchannel.station.schema")


class StoreBase:
    """The connection every room of the store shares."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self._depth = 0
        #: Flushed commits that wrote something (see :meth:`transaction`).
        self.durable_commits = 0
        #: Told after each successful COMMIT: (its seconds, durable, what it committed).
        self.on_commit: Callable[[float, bool, list[Committed]], None] | None = None
        self._noted: list[Committed] = []

    @classmethod
    def open(cls: type[S], path: Path) -> S:
        existed = path.exists()
        conn: sqlite3.Connection | None = None
        try:
            # SQLite gives the -wal and -shm files the database file's mode: make that 0600.
            create_private(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            store = cls(conn)
            store._migrate(path, existed)
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StorageError(f"the station database {path} cannot be opened: {exc}") from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return store

    def _migrate(self, path: Path, existed: bool) -> None:
        def backup(current: int) -> None:
            if existed:
                copy = path.with_suffix(f".v{current}.bak")
                create_private(copy)
                shutil.copyfile(path, copy)

        migrate(SqliteMigrations(self._conn, stamped=False), _schema_files(), "the station database", backup)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One atomic unit of work. Nested calls join the outer transaction.

        ``durable=False`` skips the disk flush at commit (``synchronous=NORMAL``): the
        transaction still survives a process crash and is flushed by the next durable one,
        but a power cut may lose it. Only for bookkeeping that is safe to redo, or for work
        that :meth:`flush` makes durable before anything depends on it.
        ``durable_commits`` counts the flushed commits that wrote something: a value later
        than the one read after a commit without flush proves that commit on disk (WAL: one
        sequential file, and a flush covers every frame written before it).
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a transaction: {exc}") from None
        self._depth = 1
        changes = self._conn.total_changes
        try:
            yield
        except BaseException:
            self._depth = 0
            self._noted = []
            self._conn.execute("ROLLBACK")
            if not durable:
                self._conn.execute("PRAGMA synchronous=FULL")
            raise
        self._depth = 0
        noted, self._noted = self._noted, []
        started = time.perf_counter()
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")  # (never leave the connection inside it)
            raise StorageError(f"cannot commit: {exc}") from None
        finally:
            if not durable:
                self._conn.execute("PRAGMA synchronous=FULL")
        if durable and self._conn.total_changes != changes:
            self.durable_commits += 1
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started, durable, noted)

    def flush(self) -> None:
        """Make every commit so far durable: one small flushed commit, which in WAL mode
        covers the commits before it (a sequential file, flushed to its end)."""
        with self.transaction():
            self.set_meta("flushed", b"")

    def _note(self, event: Committed) -> None:
        """Count ``event`` if (and once) the current transaction commits."""
        if self.on_commit is not None and self._depth:
            self._noted.append(event)

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"database error: {exc}") from None

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"database error: {exc}") from None

    # ---- meta and counters -------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._x("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row["value"])

    def set_meta(self, key: str, value: bytes) -> None:
        self._x("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def count(self, name: str, by: int = 1) -> None:
        self._x(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )

    def counters(self) -> dict[str, int]:
        return {r["name"]: r["value"] for r in self._x("SELECT name, value FROM counters").fetchall()}
