"""The embedded SQLite mailbox store (WAL, ``synchronous=FULL``).

Theory of operation
-------------------
One connection, used from one worker thread at a time (the server's DB executor), in
autocommit mode with explicit ``BEGIN IMMEDIATE``/``COMMIT`` around each batch. WAL with
``synchronous=FULL`` makes a commit durable when ``COMMIT`` returns, which is the moment
the server may answer STORED. The schema lives in numbered files ``schema/NNN_*.sql``;
``schema_version`` records which have run, and :func:`migrate` applies the rest in order.
Every ``sqlite3`` exception leaves this module as a ``StorageError``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from backchannel.errors import StorageError
from backchannel.relay.mailbox import QueueLimits
from backchannel.relay.storage.base import (
    MailboxRecord,
    StoredMessage,
    WriteOp,
    WriteResult,
)
from backchannel.relay.storage.batch import Batch
from backchannel.schema import SqliteMigrations, numbered_scripts
from backchannel.schema import migrate as run_migrations

#: Sequence numbers per ``IN (...)`` query (well under SQLite's bound-parameter limit).
_IN_CHUNK = 500


class SqliteMailboxStore:
    """``MailboxStore`` on one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = _open(path)
        #: A write failed as read-only: SQLite keeps a connection opened on a read-only file
        #: system read-only for ever, so the next write opens the database again (it works
        #: once the file system is writable again, without restarting the relay).
        self._reopen = False
        migrate(self._db)

    # ---- writes ------------------------------------------------------------------------

    def apply(self, ops: Sequence[WriteOp], now: float, limits: QueueLimits) -> list[WriteResult]:
        if self._reopen:
            # Closed first: connections of one process to one file share SQLite's file state,
            # so a new one opened beside the old would inherit its read-only handles.
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = _open(self.path)  # (if this fails, reads fail too until it works)
            self._reopen = False
        try:
            with self._transaction():
                batch = Batch(_SqliteTables(self._db), now, limits)
                return [batch.run(op) for op in ops]
        except StorageError as exc:
            self._reopen = exc.kind == "read_only"
            raise

    # ---- reads -------------------------------------------------------------------------

    def mailbox_by_recv(self, recv_id: bytes) -> MailboxRecord | None:
        return self._mailbox("recv_id", recv_id)

    def mailbox_by_send(self, send_id: bytes) -> MailboxRecord | None:
        return self._mailbox("send_id", send_id)

    def messages_after(self, recv_id: bytes, after_seq: int, limit: int) -> list[StoredMessage]:
        with _mapped("read messages"):
            rows = self._db.execute(
                "SELECT seq, msg_id, payload, stored_at FROM messages"
                " WHERE recv_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (recv_id, after_seq, limit),
            ).fetchall()
        return [StoredMessage(seq, recv_id, mid, payload, at) for seq, mid, payload, at in rows]

    def messages_by_seq(self, recv_id: bytes, seqs: Sequence[int]) -> list[StoredMessage]:
        found: list[StoredMessage] = []
        wanted = sorted(set(seqs))
        with _mapped("read messages"):
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT seq, msg_id, payload, stored_at FROM messages"
                    f" WHERE recv_id = ? AND seq IN ({marks}) ORDER BY seq",
                    (recv_id, *chunk),
                ).fetchall()
                found.extend(StoredMessage(seq, recv_id, mid, payload, at) for seq, mid, payload, at in rows)
        return found

    def depth(self, recv_id: bytes) -> int:
        with _mapped("count messages"):
            return _SqliteTables(self._db).depth(recv_id)

    def depth_summary(self) -> tuple[int, int, int]:
        with _mapped("count messages"):
            row = self._db.execute(
                "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM mailboxes),"
                " (SELECT COALESCE(MAX(n), 0)"
                " FROM (SELECT COUNT(*) AS n FROM messages GROUP BY recv_id) AS d)"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def find_messages(self, keys: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], int]:
        found: dict[tuple[bytes, bytes], int] = {}
        with _mapped("read messages"):
            tables = _SqliteTables(self._db)
            for recv_id, msg_id in keys:
                seq = tables.message_seq(recv_id, msg_id)
                if seq is not None:
                    found[(recv_id, msg_id)] = seq
        return found

    def close(self) -> None:
        with _mapped("close the database"):
            self._db.close()

    # ---- internals ---------------------------------------------------------------------

    def _mailbox(self, column: str, value: bytes) -> MailboxRecord | None:
        with _mapped("read a mailbox"):
            row = self._db.execute(
                f"SELECT recv_id, send_id, recv_key, send_key, created_at FROM mailboxes WHERE {column} = ?",
                (value,),
            ).fetchone()
        return None if row is None else MailboxRecord(*row)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with _mapped("write"):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield
                self._db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (a full disk leaves the transaction open): a
                # transaction left open would make every later batch fail to BEGIN.
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise


class _SqliteTables:
    """The statements of a write batch (``storage.batch``) in SQLite's dialect."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def message_seq(self, recv_id: bytes, msg_id: bytes) -> int | None:
        sql = "SELECT seq FROM messages WHERE recv_id = ? AND msg_id = ?"
        row = self._db.execute(sql, (recv_id, msg_id)).fetchone()
        return None if row is None else int(row[0])

    def depth(self, recv_id: bytes) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM messages WHERE recv_id = ?", (recv_id,)).fetchone()
        return int(row[0])

    def insert_message(self, recv_id: bytes, msg_id: bytes, payload: bytes, now: float) -> int:
        cur = self._db.execute(
            "INSERT INTO messages (recv_id, msg_id, payload, stored_at) VALUES (?, ?, ?, ?)",
            (recv_id, msg_id, payload, now),
        )
        return cur.lastrowid or 0

    def delete_message(self, recv_id: bytes, msg_id: bytes) -> bool:
        cur = self._db.execute("DELETE FROM messages WHERE recv_id = ? AND msg_id = ?", (recv_id, msg_id))
        return cur.rowcount > 0

    def count_mailboxes(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM mailboxes").fetchone()[0])

    def insert_mailbox(self, record: MailboxRecord, now: float) -> bool:
        cur = self._db.execute(
            "INSERT OR IGNORE INTO mailboxes (recv_id, send_id, recv_key, send_key, created_at, used_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (record.recv_id, record.send_id, record.recv_key, record.send_key, now, now),
        )
        return cur.rowcount > 0

    def expire(self, cutoff: float) -> int:
        return self._db.execute("DELETE FROM messages WHERE stored_at < ?", (cutoff,)).rowcount

    def mailbox_exists(self, recv_id: bytes) -> bool:
        return (
            self._db.execute("SELECT 1 FROM mailboxes WHERE recv_id = ?", (recv_id,)).fetchone() is not None
        )

    def touch_mailboxes(self, recv_ids: list[bytes], now: float) -> int:
        cur = self._db.executemany(
            "UPDATE mailboxes SET used_at = ? WHERE recv_id = ?", [(now, r) for r in recv_ids]
        )
        return cur.rowcount

    def expire_mailboxes(self, cutoff: float) -> int:
        return self._db.execute(
            "DELETE FROM mailboxes WHERE used_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.recv_id = mailboxes.recv_id)",
            (cutoff,),
        ).rowcount

    def delete_mailbox(self, recv_id: bytes) -> tuple[bool, int]:
        gone = self._db.execute("DELETE FROM messages WHERE recv_id = ?", (recv_id,)).rowcount
        found = self._db.execute("DELETE FROM mailboxes WHERE recv_id = ?", (recv_id,)).rowcount > 0
        return found, gone


def _open(path: str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open relay database {path!r}: {exc}", _kind(exc)) from exc
    return db


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Turn sqlite3 exceptions into ``StorageError`` at this boundary."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"relay database: cannot {what}: {exc}", _kind(exc)) from exc


def _kind(exc: sqlite3.Error) -> str:
    """What failed, for the relay's metrics (``StorageError.kind``)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    kinds = {sqlite3.SQLITE_FULL: "disk_full", sqlite3.SQLITE_READONLY: "read_only"}
    kinds[sqlite3.SQLITE_IOERR] = "io"
    return kinds.get(code, "other")


def schema_files() -> list[tuple[int, str]]:
    """The numbered schema scripts shipped with the relay, in order."""
    return numbered_scripts("backchannel.relay.schema")


def migrate(db: sqlite3.Connection) -> int:
    """Apply every schema script newer than the database; return the resulting version."""
    with _mapped("migrate the schema"):
        return run_migrations(SqliteMigrations(db, stamped=True), schema_files(), "relay database")
