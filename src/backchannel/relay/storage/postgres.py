"""The PostgreSQL mailbox store: the production choice, the same contract as the SQLite one.

Theory of operation
-------------------
One connection (psycopg 3), used from the server's single DB worker thread. Each batch of
writes runs in one transaction; PostgreSQL's default ``synchronous_commit = on`` makes a
commit durable (flushed to the write-ahead log) when ``COMMIT`` returns, which is the moment
the server may answer STORED. Reads run in autocommit, so they never hold a snapshot open.

The schema lives in numbered files ``schema_postgres/NNN_*.sql`` (the tables of the SQLite
schema with PostgreSQL types); ``schema_version`` records which have run. Migrations take a
transaction-level advisory lock, so relays starting together against one database apply
each script once. Every ``psycopg`` exception leaves this module as a ``StorageError``, with
the password of the connection string never in the message.

Several relay processes may serve one database (docs/OPERATIONS.md, "Several relay processes
on one PostgreSQL"): every batch that stores frames also sends, inside its transaction, one
``NOTIFY`` per stored frame on :data:`CHANNEL` (``ORIGIN RECV_ID SEQ MSG_ID``, ids in hex).
PostgreSQL delivers a notification only once its transaction has committed, so a process that
hears one can read the frame; ``relay/peers.py`` listens, and :meth:`survey` is its catch-up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from backchannel.errors import StorageError
from backchannel.relay.mailbox import QueueLimits
from backchannel.relay.storage.base import (
    MailboxRecord,
    Outcome,
    PutMessage,
    StoredMessage,
    WriteOp,
    WriteResult,
)
from backchannel.relay.storage.batch import Batch
from backchannel.schema import migrate as run_migrations
from backchannel.schema import numbered_scripts

#: An arbitrary constant naming the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x6263_7265_6C61_79  # "bcrelay"
#: The channel on which a batch announces the frames it stored to the other relay processes.
CHANNEL = "backchannel_relay_stored"
#: URL schemes that select this store instead of an SQLite file.
URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str) -> bool:
    return location.startswith(URL_SCHEMES)


class PostgresMailboxStore:
    """``MailboxStore`` on a PostgreSQL database (``postgresql://user@host:port/dbname``)."""

    def __init__(self, url: str, origin: str = "") -> None:
        self.url = url
        #: Names this process in its notifications, so it can ignore its own.
        self.origin = origin
        self._db = _connect(url)
        try:
            migrate(self._db, url)
        except StorageError:
            self._db.close()
            raise

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, opened again if the server closed it (a restart, a failover): the
        relay's requests fail while the database is away and succeed again once it is back."""
        if self._db.closed or self._db.broken:
            self._db = _connect(self.url)
        return self._db

    # ---- writes ------------------------------------------------------------------------

    def apply(self, ops: Sequence[WriteOp], now: float, limits: QueueLimits) -> list[WriteResult]:
        db = self._live()
        with _mapped("write", self.url), db.transaction():
            batch = Batch(_PostgresTables(db), now, limits)
            results = [batch.run(op) for op in ops]
            notices = [
                f"{self.origin} {op.recv_id.hex()} {result.count} {result.msg_id.hex()}"
                for op, result in zip(ops, results, strict=True)
                if isinstance(op, PutMessage) and result.outcome is Outcome.STORED
            ]
            if notices:  # (sent by PostgreSQL at COMMIT, and only if it commits)
                db.execute("SELECT pg_notify(%s, n) FROM unnest(%s::text[]) AS n", (CHANNEL, notices))
            return results

    # ---- reads -------------------------------------------------------------------------

    def mailbox_by_recv(self, recv_id: bytes) -> MailboxRecord | None:
        return self._mailbox("recv_id", recv_id)

    def mailbox_by_send(self, send_id: bytes) -> MailboxRecord | None:
        return self._mailbox("send_id", send_id)

    def messages_after(self, recv_id: bytes, after_seq: int, limit: int) -> list[StoredMessage]:
        rows = self._rows(
            "SELECT seq, msg_id, payload, stored_at FROM messages"
            " WHERE recv_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (recv_id, after_seq, limit),
        )
        return [StoredMessage(seq, recv_id, bytes(mid), bytes(payload), at) for seq, mid, payload, at in rows]

    def messages_by_seq(self, recv_id: bytes, seqs: Sequence[int]) -> list[StoredMessage]:
        rows = self._rows(
            "SELECT seq, msg_id, payload, stored_at FROM messages"
            " WHERE recv_id = %s AND seq = ANY(%s) ORDER BY seq",
            (recv_id, sorted(set(seqs))),
        )
        return [StoredMessage(seq, recv_id, bytes(mid), bytes(payload), at) for seq, mid, payload, at in rows]

    def survey(self, cursors: Sequence[tuple[bytes, int]]) -> list[tuple[bytes, int, int]]:
        """For each ``(recv_id, cursor)``: how many frames wait at or before the cursor, and the
        newest frame's sequence number (0: none). A subscription whose count exceeds what it
        awaits, or whose newest frame lies beyond what it pushed, missed a frame (the
        catch-up read of ``relay/peers.py``)."""
        if not cursors:
            return []
        rows = self._rows(
            "SELECT c.recv_id,"
            " (SELECT COUNT(*) FROM messages m WHERE m.recv_id = c.recv_id AND m.seq <= c.cursor),"
            " (SELECT COALESCE(MAX(m.seq), 0) FROM messages m WHERE m.recv_id = c.recv_id)"
            " FROM unnest(%s::bytea[], %s::bigint[]) AS c(recv_id, cursor)",
            ([r for r, _ in cursors], [c for _, c in cursors]),
        )
        return [(bytes(recv_id), int(behind), int(newest)) for recv_id, behind, newest in rows]

    def depth_summary(self) -> tuple[int, int, int]:
        rows = self._rows(
            "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM mailboxes),"
            " (SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM messages GROUP BY recv_id) AS d)",
            (),
        )
        return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])

    def depth(self, recv_id: bytes) -> int:
        db = self._live()
        with _mapped("count messages", self.url):
            return _PostgresTables(db).depth(recv_id)

    def find_messages(self, keys: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], int]:
        found: dict[tuple[bytes, bytes], int] = {}
        db = self._live()
        with _mapped("read messages", self.url):
            tables = _PostgresTables(db)
            for recv_id, msg_id in keys:
                seq = tables.message_seq(recv_id, msg_id)
                if seq is not None:
                    found[(recv_id, msg_id)] = seq
        return found

    def close(self) -> None:
        with _mapped("close the connection", self.url):
            self._db.close()

    # ---- internals ---------------------------------------------------------------------

    def _mailbox(self, column: str, value: bytes) -> MailboxRecord | None:
        rows = self._rows(
            f"SELECT recv_id, send_id, recv_key, send_key, created_at FROM mailboxes WHERE {column} = %s",
            (value,),
        )
        if not rows:
            return None
        recv_id, send_id, recv_key, send_key, created_at = rows[0]
        return MailboxRecord(bytes(recv_id), bytes(send_id), bytes(recv_key), bytes(send_key), created_at)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        db = self._live()
        with _mapped("read", self.url):
            return db.execute(sql, params).fetchall()


class _PostgresTables:
    """The statements of a write batch (``storage.batch``) in PostgreSQL's dialect."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def message_seq(self, recv_id: bytes, msg_id: bytes) -> int | None:
        sql = "SELECT seq FROM messages WHERE recv_id = %s AND msg_id = %s"
        row = self._db.execute(sql, (recv_id, msg_id)).fetchone()
        return None if row is None else int(row[0])

    def depth(self, recv_id: bytes) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM messages WHERE recv_id = %s", (recv_id,)).fetchone()
        return int(row[0]) if row else 0

    def insert_message(self, recv_id: bytes, msg_id: bytes, payload: bytes, now: float) -> int:
        row = self._db.execute(
            "INSERT INTO messages (recv_id, msg_id, payload, stored_at)"
            " VALUES (%s, %s, %s, %s) RETURNING seq",
            (recv_id, msg_id, payload, now),
        ).fetchone()
        return int(row[0]) if row else 0

    def delete_message(self, recv_id: bytes, msg_id: bytes) -> bool:
        cur = self._db.execute("DELETE FROM messages WHERE recv_id = %s AND msg_id = %s", (recv_id, msg_id))
        return cur.rowcount > 0

    def count_mailboxes(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM mailboxes").fetchone()
        return int(row[0]) if row else 0

    def insert_mailbox(self, record: MailboxRecord, now: float) -> bool:
        cur = self._db.execute(
            "INSERT INTO mailboxes (recv_id, send_id, recv_key, send_key, created_at, used_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (record.recv_id, record.send_id, record.recv_key, record.send_key, now, now),
        )
        return cur.rowcount > 0

    def expire(self, cutoff: float) -> int:
        return self._db.execute("DELETE FROM messages WHERE stored_at < %s", (cutoff,)).rowcount

    def mailbox_exists(self, recv_id: bytes) -> bool:
        sql = "SELECT 1 FROM mailboxes WHERE recv_id = %s"
        return self._db.execute(sql, (recv_id,)).fetchone() is not None

    def touch_mailboxes(self, recv_ids: list[bytes], now: float) -> int:
        cur = self._db.execute("UPDATE mailboxes SET used_at = %s WHERE recv_id = ANY(%s)", (now, recv_ids))
        return cur.rowcount

    def expire_mailboxes(self, cutoff: float) -> int:
        return self._db.execute(
            "DELETE FROM mailboxes WHERE used_at < %s"
            " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.recv_id = mailboxes.recv_id)",
            (cutoff,),
        ).rowcount

    def delete_mailbox(self, recv_id: bytes) -> tuple[bool, int]:
        gone = self._db.execute("DELETE FROM messages WHERE recv_id = %s", (recv_id,)).rowcount
        found = self._db.execute("DELETE FROM mailboxes WHERE recv_id = %s", (recv_id,)).rowcount > 0
        return found, gone


def _connect(url: str) -> psycopg.Connection[Any]:
    """Connect with durable commits forced on, and TCP keepalives so that a silent network
    partition fails the relay's requests instead of blocking its database thread forever."""
    with _mapped("connect", url):
        db = psycopg.connect(
            url,
            autocommit=True,  # (each batch and migration opens its own transaction)
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
            options="-c synchronous_commit=on",
        )
        row = db.execute("SHOW fsync").fetchone()
    if row is None or row[0] != "on":
        db.close()
        raise StorageError(
            f"relay database {redacted(url)}: the server runs with fsync off, so a commit is not "
            "durable and the relay could answer 'stored' for a frame a crash then loses"
        )
    return db


def redacted(url: str) -> str:
    """The connection string without its password (for error messages and logs)."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


@contextmanager
def _mapped(what: str, url: str) -> Iterator[None]:
    """Turn psycopg exceptions into ``StorageError`` at this boundary."""
    try:
        yield
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"relay database {redacted(url)}: cannot {what}: {detail}", _kind(exc)) from None


def _kind(exc: psycopg.Error) -> str:
    """What failed, for the relay's metrics (``StorageError.kind``)."""
    if isinstance(exc, psycopg.errors.DiskFull):
        return "disk_full"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "read_only"
    if isinstance(exc, psycopg.OperationalError):
        return "connection"
    return "other"


def schema_files() -> list[tuple[int, str]]:
    """The numbered PostgreSQL schema scripts shipped with the relay, in order."""
    return numbered_scripts("backchannel.relay.schema_postgres")


def migrate(db: psycopg.Connection[Any], url: str = "") -> int:
    """Apply every schema script newer than the database; return the resulting version.

    All of it runs in one transaction under an advisory lock, so two relays starting on one
    database at once migrate it once."""
    with _mapped("migrate the schema", url), db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        return run_migrations(_PostgresMigrations(db), schema_files(), "relay database")


class _PostgresMigrations:
    """:class:`backchannel.schema.Migratable` inside the caller's transaction."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def current_version(self) -> int:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        row = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def apply(self, version: int, script: str) -> None:
        self._db.execute(script.encode("utf-8"))
        self._db.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, time.time()))
