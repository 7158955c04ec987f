"""The station's durable store (SQLite, WAL, ``synchronous=FULL``).

Theory of operation
-------------------
This is the only module that speaks SQL for the station. Every state change that matters
(a frame sealed, a frame decrypted, a receipt applied) happens inside one
:meth:`Store.transaction`, together with the new Olm session state, so a crash at any
instant leaves either all of it or none of it on disk. Nothing is sent and nothing is
acknowledged to a relay before that transaction commits.

The schema lives in versioned files ``schema/NNN_*.sql``; :meth:`Store.open` applies the
missing ones in order and records the version, backing the database file up first when an
existing database is migrated.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from backchannel.errors import StorageError
from backchannel.station.private import create_private


@dataclass(frozen=True)
class LineRow:
    line_id: bytes
    name: str
    role: int
    state: str
    peer_name: str
    peer_identity: bytes
    peer_signing: bytes
    keys_sealed: bytes
    session_pickle: str
    next_seq: int
    delivered_upto: int
    tx_count0: int
    tx_head0: bytes
    tx_count1: int
    tx_head1: bytes
    on_record: int
    verified_at: float | None
    created_at: float
    last_contact: float | None
    peer_pq: bytes | None = None


@dataclass(frozen=True)
class OutboxRow:
    line_id: bytes
    seq: int
    kind: str
    precedence: str | None
    body_sealed: bytes | None
    frame: bytes
    created_at: float
    relayed_at: float | None
    delivered_at: float | None
    acked_at: float | None
    acked_by: str | None
    relayed_all: int = 0
    escalated_at: float | None = None


@dataclass(frozen=True)
class InboxRow:
    line_id: bytes
    seq: int
    precedence: str
    body_sealed: bytes
    sent_at: float
    received_at: float
    acked_at: float | None
    acked_by: str | None


def _schema_files() -> list[tuple[int, str]]:
    files = []
    for entry in resources.files("backchannel.station").joinpath("schema").iterdir():
        if entry.name.endswith(".sql"):
            files.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(files)


class Store:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._depth = 0

    @classmethod
    def open(cls, path: Path) -> Store:
        existed = path.exists()
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
            raise StorageError(f"the station database {path} cannot be opened: {exc}") from None
        return store

    def _migrate(self, path: Path, existed: bool) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        pending = [(v, sql) for v, sql in _schema_files() if v > current]
        if pending and existed and current > 0:
            backup = path.with_suffix(f".v{current}.bak")
            create_private(backup)
            shutil.copyfile(path, backup)
        for version, sql in pending:
            try:
                record = f"INSERT INTO schema_version (version) VALUES ({version})"
                self._conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;{record};\nCOMMIT;")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One atomic unit of work. Nested calls join the outer transaction.

        ``durable=False`` skips the disk flush at commit (``synchronous=NORMAL``): the
        transaction still survives a process crash and is flushed by the next durable one,
        but a power cut may lose it. Only for bookkeeping that is safe to redo.
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
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            if not durable:
                self._conn.execute("PRAGMA synchronous=FULL")
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot commit: {exc}") from None
        finally:
            if not durable:
                self._conn.execute("PRAGMA synchronous=FULL")

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

    # ---- meta --------------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._x("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        self._x("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ---- invitations -------------------------------------------------------------------

    def add_invitation(
        self, line_id: bytes, local_name: str, blob: bytes, secrets_sealed: bytes, created_at: float
    ) -> None:
        self._x(
            "INSERT INTO invitations (line_id, local_name, blob, secrets_sealed, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (line_id, local_name, blob, secrets_sealed, created_at),
        )

    def get_invitation(self, line_id: bytes) -> tuple[str, bytes, bytes, bool] | None:
        row = self._x(
            "SELECT local_name, blob, secrets_sealed, used FROM invitations WHERE line_id = ?",
            (line_id,),
        ).fetchone()
        if row is None:
            return None
        return row[0], bytes(row[1]), bytes(row[2]), bool(row[3])

    def mark_invitation_used(self, line_id: bytes) -> None:
        self._x("UPDATE invitations SET used = 1, secrets_sealed = X'' WHERE line_id = ?", (line_id,))

    def pending_invitations(self) -> list[tuple[bytes, str, float]]:
        rows = self._x(
            "SELECT line_id, local_name, created_at FROM invitations WHERE used = 0 ORDER BY created_at"
        ).fetchall()
        return [(bytes(r[0]), r[1], r[2]) for r in rows]

    def name_taken(self, name: str) -> bool:
        if self._x("SELECT 1 FROM lines WHERE name = ?", (name,)).fetchone():
            return True
        return bool(
            self._x("SELECT 1 FROM invitations WHERE local_name = ? AND used = 0", (name,)).fetchone()
        )

    # ---- lines -------------------------------------------------------------------------

    def add_line(self, row: LineRow) -> None:
        columns = ", ".join(row.__dict__)
        marks = ", ".join("?" * len(row.__dict__))
        self._x(f"INSERT INTO lines ({columns}) VALUES ({marks})", tuple(row.__dict__.values()))

    def update_line(self, line_id: bytes, **fields: Any) -> None:
        assigns = ", ".join(f"{k} = ?" for k in fields)
        self._x(f"UPDATE lines SET {assigns} WHERE line_id = ?", (*fields.values(), line_id))

    def get_line(self, line_id: bytes) -> LineRow | None:
        row = self._x("SELECT * FROM lines WHERE line_id = ?", (line_id,)).fetchone()
        return None if row is None else _line(row)

    def find_line(self, name_or_id: str) -> LineRow | None:
        row = self._x("SELECT * FROM lines WHERE name = ?", (name_or_id,)).fetchone()
        if row is None and name_or_id:
            row = self._x(
                "SELECT * FROM lines WHERE lower(hex(line_id)) LIKE ?", (name_or_id.lower() + "%",)
            ).fetchone()
        return None if row is None else _line(row)

    def list_lines(self) -> list[LineRow]:
        return [_line(r) for r in self._x("SELECT * FROM lines ORDER BY created_at").fetchall()]

    # ---- mailboxes ---------------------------------------------------------------------

    def add_mailbox(self, line_id: bytes, url: str, recv_id: bytes, recv_key_sealed: bytes) -> None:
        self._x("INSERT INTO mailboxes VALUES (?, ?, ?, ?)", (line_id, url, recv_id, recv_key_sealed))

    def prune_retired(self, before: float) -> int:
        """Forget mailboxes retired before ``before``; returns how many."""
        return self._x("DELETE FROM retired_mailboxes WHERE retired_at < ?", (before,)).rowcount

    def mailboxes(self, retired: bool = False) -> list[tuple[bytes, str, bytes, bytes]]:
        """Our own mailboxes: (line, relay url, recv_id, sealed receive key); those of the
        lines' circuits, or with ``retired`` those of removed circuits."""
        table = "retired_mailboxes" if retired else "mailboxes"
        rows = self._x(f"SELECT line_id, url, recv_id, recv_key_sealed FROM {table}").fetchall()
        return [(bytes(r[0]), r[1], bytes(r[2]), bytes(r[3])) for r in rows]

    def add_peer_mailbox(self, line_id: bytes, url: str, send_id: bytes, send_key_sealed: bytes) -> None:
        self._x(
            "INSERT OR REPLACE INTO peer_mailboxes VALUES (?, ?, ?, ?)",
            (line_id, url, send_id, send_key_sealed),
        )

    def peer_mailboxes(self, line_id: bytes | None = None) -> list[tuple[bytes, str, bytes, bytes]]:
        sql = "SELECT line_id, url, send_id, send_key_sealed FROM peer_mailboxes"
        rows = (self._x(sql + " WHERE line_id = ?", (line_id,)) if line_id else self._x(sql)).fetchall()
        return [(bytes(r[0]), r[1], bytes(r[2]), bytes(r[3])) for r in rows]

    # ---- circuits proposed by the peer, awaiting approval -------------------------------

    def add_proposal(
        self, proposal_id: str, line_id: bytes, url: str, send_id: bytes, send_key_sealed: bytes, at: float
    ) -> None:
        """Hold a proposal (a newer one for the same line and relay replaces the older)."""
        self._x("DELETE FROM circuit_proposals WHERE line_id = ? AND url = ?", (line_id, url))
        self._x(
            "INSERT INTO circuit_proposals VALUES (?, ?, ?, ?, ?, ?)",
            (proposal_id, line_id, url, send_id, send_key_sealed, at),
        )

    def proposals(self, line_id: bytes | None = None) -> list[tuple[str, bytes, str, bytes, bytes, float]]:
        """(id, line, url, send_id, sealed send key, proposed at), oldest first."""
        sql = "SELECT id, line_id, url, send_id, send_key_sealed, proposed_at FROM circuit_proposals"
        rows = (
            self._x(sql + " WHERE line_id = ? ORDER BY proposed_at", (line_id,))
            if line_id
            else self._x(sql + " ORDER BY proposed_at")
        ).fetchall()
        return [(r[0], bytes(r[1]), r[2], bytes(r[3]), bytes(r[4]), r[5]) for r in rows]

    def delete_proposal(self, proposal_id: str) -> bool:
        return self._x("DELETE FROM circuit_proposals WHERE id = ?", (proposal_id,)).rowcount > 0

    def delete_proposals(self, line_id: bytes, url: str) -> bool:
        sql = "DELETE FROM circuit_proposals WHERE line_id = ? AND url = ?"
        return self._x(sql, (line_id, url)).rowcount > 0

    # ---- outbox ------------------------------------------------------------------------

    def add_outbound(
        self,
        line_id: bytes,
        seq: int,
        kind: str,
        frame: bytes,
        created_at: float,
        precedence: str | None = None,
        body_sealed: bytes | None = None,
    ) -> None:
        self._x(
            "INSERT INTO outbox (line_id, seq, kind, precedence, body_sealed, frame, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (line_id, seq, kind, precedence, body_sealed, frame, created_at),
        )

    def unsent(self) -> list[tuple[bytes, int, str]]:
        """(line, seq, circuit url) of every frame some circuit of its line has not stored."""
        rows = self._x(
            "SELECT o.line_id, o.seq, p.url FROM outbox o JOIN peer_mailboxes p ON p.line_id = o.line_id"
            " WHERE o.relayed_all = 0 AND NOT EXISTS (SELECT 1 FROM sent s WHERE s.line_id = o.line_id"
            " AND s.url = p.url AND s.seq = o.seq) ORDER BY o.line_id, o.seq"
        ).fetchall()
        return [(bytes(r[0]), r[1], r[2]) for r in rows]

    def record_sent(self, items: list[tuple[bytes, int, str]], at: float) -> None:
        """Circuits that stored frames; a frame stored on every circuit leaves the tracking."""
        self._many(
            "INSERT OR IGNORE INTO sent (line_id, url, seq) VALUES (?, ?, ?)",
            [(line_id, url, seq) for line_id, seq, url in items],
        )
        self._many(
            "UPDATE outbox SET relayed_at = ? WHERE line_id = ? AND seq = ? AND relayed_at IS NULL",
            [(at, line_id, seq) for line_id, seq, _ in items],
        )
        for line_id, seq in {(line_id, seq) for line_id, seq, _ in items}:
            stored, circuits = self._x(
                "SELECT (SELECT COUNT(*) FROM sent WHERE line_id = ?1 AND seq = ?2),"
                " (SELECT COUNT(*) FROM peer_mailboxes WHERE line_id = ?1)",
                (line_id, seq),
            ).fetchone()
            if stored >= circuits:
                self._x("UPDATE outbox SET relayed_all = 1 WHERE line_id = ? AND seq = ?", (line_id, seq))
                self._x("DELETE FROM sent WHERE line_id = ? AND seq = ?", (line_id, seq))

    def relayed_times(self, line_id: bytes, first: int, last: int) -> list[tuple[int, float | None]]:
        """(seq, when a relay first stored it) of our frames ``first``..``last``, in order."""
        rows = self._x(
            "SELECT seq, relayed_at FROM outbox WHERE line_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (line_id, first, last),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def remove_circuit(self, line_id: bytes, url: str, at: float, retire: bool) -> None:
        """The line stops using this relay: no more sending there. Our own mailbox there is
        forgotten, or with ``retire`` kept to be read for a while (no longer the line's circuit)."""
        self._x("DELETE FROM peer_mailboxes WHERE line_id = ? AND url = ?", (line_id, url))
        if retire:
            self._x(
                "INSERT INTO retired_mailboxes SELECT line_id, url, recv_id, recv_key_sealed, ?"
                " FROM mailboxes WHERE line_id = ? AND url = ?",
                (at, line_id, url),
            )
        self._x("DELETE FROM mailboxes WHERE line_id = ? AND url = ?", (line_id, url))
        self._x("DELETE FROM sent WHERE line_id = ? AND url = ?", (line_id, url))

    def overdue(self, now: float, deadlines: dict[str, float]) -> list[tuple[bytes, int, str, float]]:
        """Sent messages past their acknowledgement deadline, not yet escalated."""
        out = []
        for precedence, seconds in deadlines.items():
            rows = self._x(
                "SELECT line_id, seq, created_at FROM outbox WHERE kind = 'msg' AND precedence = ?"
                " AND acked_at IS NULL AND escalated_at IS NULL AND created_at + ? < ?",
                (precedence, seconds, now),
            ).fetchall()
            out += [(bytes(r[0]), r[1], precedence, r[2]) for r in rows]
        return out

    def mark_escalated(self, line_id: bytes, seq: int, at: float) -> None:
        self._x("UPDATE outbox SET escalated_at = ? WHERE line_id = ? AND seq = ?", (at, line_id, seq))

    def pending_on_circuit(self, line_id: bytes, url: str) -> int:
        row = self._x(
            "SELECT COUNT(*) FROM outbox o WHERE o.line_id = ?1 AND o.relayed_all = 0 AND NOT EXISTS"
            " (SELECT 1 FROM sent s WHERE s.line_id = ?1 AND s.url = ?2 AND s.seq = o.seq)",
            (line_id, url),
        ).fetchone()
        return int(row[0])

    def frame(self, line_id: bytes, seq: int) -> bytes:
        row = self._x("SELECT frame FROM outbox WHERE line_id = ? AND seq = ?", (line_id, seq)).fetchone()
        if row is None:
            raise StorageError(f"outbound frame {seq} is missing")
        return bytes(row[0])

    def mark_delivered(self, line_id: bytes, upto: int, at: float) -> None:
        self._x(
            "UPDATE outbox SET delivered_at = ?, relayed_at = COALESCE(relayed_at, ?)"
            " WHERE line_id = ? AND seq <= ? AND delivered_at IS NULL",
            (at, at, line_id, upto),
        )

    def mark_acknowledged(self, line_id: bytes, seq: int, operator: str, at: float) -> None:
        self._x(
            "UPDATE outbox SET acked_at = ?, acked_by = ? WHERE line_id = ? AND seq = ? AND kind = 'msg'"
            " AND acked_at IS NULL",
            (at, operator, line_id, seq),
        )

    def outbound(
        self, line_id: bytes | None = None, kind: str | None = "msg", limit: int = 1000
    ) -> list[OutboxRow]:
        where, params = _filters(line_id, kind)
        rows = self._x(
            f"SELECT * FROM outbox{where} ORDER BY created_at DESC, seq DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [_outbox(r) for r in rows]

    def outbound_one(self, line_id: bytes, seq: int) -> OutboxRow | None:
        row = self._x("SELECT * FROM outbox WHERE line_id = ? AND seq = ?", (line_id, seq)).fetchone()
        return None if row is None else _outbox(row)

    # ---- inbox -------------------------------------------------------------------------

    def add_inbound(
        self,
        line_id: bytes,
        seq: int,
        precedence: str,
        body_sealed: bytes,
        sent_at: float,
        received_at: float,
    ) -> None:
        self._x(
            "INSERT INTO inbox (line_id, seq, precedence, body_sealed, sent_at, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (line_id, seq, precedence, body_sealed, sent_at, received_at),
        )

    def inbound(
        self, line_id: bytes | None = None, unacked_only: bool = False, limit: int = 1000
    ) -> list[InboxRow]:
        where, params = _filters(line_id, None)
        if unacked_only:
            where += (" AND" if where else " WHERE") + " acked_at IS NULL"
        rows = self._x(
            f"SELECT * FROM inbox{where} ORDER BY received_at DESC, seq DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [_inbox(r) for r in rows]

    def inbound_one(self, line_id: bytes, seq: int) -> InboxRow | None:
        row = self._x("SELECT * FROM inbox WHERE line_id = ? AND seq = ?", (line_id, seq)).fetchone()
        return None if row is None else _inbox(row)

    def ack_inbound(self, line_id: bytes, seq: int, operator: str, at: float) -> None:
        self._x(
            "UPDATE inbox SET acked_at = ?, acked_by = ? WHERE line_id = ? AND seq = ?",
            (at, operator, line_id, seq),
        )

    # ---- held frames -------------------------------------------------------------------

    def hold(self, line_id: bytes, seq: int, frame: bytes) -> None:
        self._x("INSERT OR IGNORE INTO held VALUES (?, ?, ?)", (line_id, seq, frame))

    def is_held(self, line_id: bytes, seq: int) -> bool:
        return (
            self._x("SELECT 1 FROM held WHERE line_id = ? AND seq = ?", (line_id, seq)).fetchone() is not None
        )

    def held_count(self, line_id: bytes) -> int:
        return int(self._x("SELECT COUNT(*) FROM held WHERE line_id = ?", (line_id,)).fetchone()[0])

    def has_held(self, line_id: bytes) -> bool:
        return self._x("SELECT 1 FROM held WHERE line_id = ? LIMIT 1", (line_id,)).fetchone() is not None

    def take_held(self, line_id: bytes, seq: int) -> bytes | None:
        row = self._x("SELECT frame FROM held WHERE line_id = ? AND seq = ?", (line_id, seq)).fetchone()
        if row is None:
            return None
        self._x("DELETE FROM held WHERE line_id = ? AND seq = ?", (line_id, seq))
        return bytes(row[0])

    def count_rows(self, table: str, line_id: bytes, condition: str = "1") -> int:
        assert table in ("inbox", "outbox")
        row = self._x(
            f"SELECT COUNT(*) FROM {table} WHERE line_id = ? AND {condition}", (line_id,)
        ).fetchone()
        return int(row[0])

    # ---- the record --------------------------------------------------------------------

    def add_entry(
        self, line_id: bytes, direction: int, seq: int, chain_hash: bytes, entry_sealed: bytes, at: float
    ) -> None:
        self._x(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
            (line_id, direction, seq, chain_hash, entry_sealed, at),
        )

    def entry_hashes(self, line_id: bytes, direction: int) -> list[bytes]:
        rows = self._x(
            "SELECT hash FROM entries WHERE line_id = ? AND direction = ? ORDER BY seq", (line_id, direction)
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def entry_hash(self, line_id: bytes, direction: int, seq: int) -> bytes | None:
        row = self._x(
            "SELECT hash FROM entries WHERE line_id = ? AND direction = ? AND seq = ?",
            (line_id, direction, seq),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def latest_entries(self, line_id: bytes, direction: int, limit: int) -> list[tuple[int, bytes]]:
        """(seq, sealed entry) of the last ``limit`` entries of one direction, newest first."""
        rows = self._x(
            "SELECT seq, entry_sealed FROM entries WHERE line_id = ? AND direction = ? ORDER BY seq DESC"
            " LIMIT ?",
            (line_id, direction, limit),
        ).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    def entries(self, line_id: bytes) -> list[tuple[int, int, bytes, bytes, float]]:
        """(direction, seq, hash, sealed entry, time) in the order this station recorded them."""
        rows = self._x(
            "SELECT direction, seq, hash, entry_sealed, at FROM entries WHERE line_id = ? ORDER BY rowid",
            (line_id,),
        ).fetchall()
        return [(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4]) for r in rows]

    def entry_time(self, line_id: bytes, direction: int, seq: int) -> float | None:
        row = self._x(
            "SELECT at FROM entries WHERE line_id = ? AND direction = ? AND seq = ?",
            (line_id, direction, seq),
        ).fetchone()
        return None if row is None else float(row[0])

    def add_checkpoint(
        self,
        line_id: bytes,
        by_direction: int,
        seq: int,
        counts: tuple[int, int],
        heads: tuple[bytes, bytes],
        pq_signature: bytes,
        status: str,
        detail: str,
        at: float,
    ) -> None:
        self._x(
            "INSERT INTO checkpoints (line_id, by_direction, seq, n0, h0, n1, h1, pq_signature, status,"
            " detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                line_id,
                by_direction,
                seq,
                counts[0],
                heads[0],
                counts[1],
                heads[1],
                pq_signature,
                status,
                detail,
                at,
            ),
        )

    def checkpoints(self, line_id: bytes) -> list[dict[str, Any]]:
        rows = self._x(
            "SELECT by_direction, seq, n0, h0, n1, h1, pq_signature, status, detail, at"
            " FROM checkpoints WHERE line_id = ? ORDER BY id",
            (line_id,),
        ).fetchall()
        return [
            {
                "by": r[0],
                "seq": r[1],
                "counts": [r[2], r[4]],
                "heads": [bytes(r[3]).hex(), bytes(r[5]).hex()],
                "mldsa65": bytes(r[6]).hex(),
                "status": r[7],
                "detail": r[8],
                "at": r[9],
            }
            for r in rows
        ]

    # ---- release authority -----------------------------------------------------------------

    def add_draft(
        self, draft_id: str, line_id: bytes, precedence: str, body_sealed: bytes, drafted_by: str, at: float
    ) -> None:
        self._x(
            "INSERT INTO drafts (id, line_id, precedence, body_sealed, drafted_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (draft_id, line_id, precedence, body_sealed, drafted_by, at),
        )

    def drafts(self, line_id: bytes | None = None, pending_only: bool = True) -> list[tuple[Any, ...]]:
        """(id, line, precedence, sealed body, drafted by, created, released by, released at, seq)."""
        clauses = (["released_at IS NULL"] if pending_only else []) + (["line_id = ?"] if line_id else [])
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._x(
            "SELECT id, line_id, precedence, body_sealed, drafted_by, created_at, released_by, released_at,"
            f" seq FROM drafts{where} ORDER BY created_at",
            (line_id,) if line_id else (),
        ).fetchall()
        return [(r[0], bytes(r[1]), r[2], bytes(r[3]), *r[4:]) for r in rows]

    def draft(self, draft_id: str) -> tuple[Any, ...] | None:
        found = [d for d in self.drafts(pending_only=False) if d[0] == draft_id]
        return found[0] if found else None

    def mark_released(self, draft_id: str, operator: str, at: float, seq: int) -> None:
        self._x(
            "UPDATE drafts SET released_by = ?, released_at = ?, seq = ? WHERE id = ?",
            (operator, at, seq, draft_id),
        )

    # ---- alarms ------------------------------------------------------------------------

    def open_alarm(
        self, alarm_id: str, kind: str, line_id: bytes | None, subject: str, message: str, at: float
    ) -> bool:
        """Record a newly raised alarm; False if the same alarm is already open."""
        existing = self._x(
            "SELECT 1 FROM alarms WHERE kind = ? AND line_id IS ? AND subject = ? AND cleared_at IS NULL",
            (kind, line_id, subject),
        ).fetchone()
        if existing:
            return False
        self._x(
            "INSERT INTO alarms (id, kind, line_id, subject, message, raised_at) VALUES (?, ?, ?, ?, ?, ?)",
            (alarm_id, kind, line_id, subject, message, at),
        )
        return True

    def close_alarm(self, kind: str, line_id: bytes | None, subject: str, at: float) -> AlarmRow | None:
        row = self._x(
            "SELECT * FROM alarms WHERE kind = ? AND line_id IS ? AND subject = ? AND cleared_at IS NULL",
            (kind, line_id, subject),
        ).fetchone()
        if row is None:
            return None
        self._x("UPDATE alarms SET cleared_at = ? WHERE id = ?", (at, row[0]))
        return _alarm(row, cleared_at=at)

    def alarms(self, include_cleared: bool = False, limit: int = 200) -> list[AlarmRow]:
        where = "" if include_cleared else " WHERE cleared_at IS NULL"
        rows = self._x(f"SELECT * FROM alarms{where} ORDER BY raised_at DESC LIMIT ?", (limit,)).fetchall()
        return [_alarm(r) for r in rows]

    def ack_alarm(self, alarm_id: str, operator: str, at: float) -> AlarmRow | None:
        self._x(
            "UPDATE alarms SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL",
            (at, operator, alarm_id),
        )
        row = self._x("SELECT * FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
        return None if row is None else _alarm(row)

    # ---- counters ----------------------------------------------------------------------

    def count(self, name: str, by: int = 1) -> None:
        self._x(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )

    def counters(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._x("SELECT name, value FROM counters").fetchall()}

    # ---- operators and audit (console) ----------------------------------------------------
    # Rows come back as plain tuples; backchannel.station.operators gives them names.

    def add_operator(self, name: str, role: str, password_hash: str, at: float) -> bool:
        """Create an operator account; False if the name is taken."""
        if self._x("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
            return False
        self._x(
            "INSERT INTO operators (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (name, role, password_hash, at),
        )
        return True

    def get_operator(self, name: str) -> tuple[Any, ...] | None:
        """(name, role, password_hash, created_at, failed_logins, locked_until, last_login)."""
        row = self._x(
            "SELECT name, role, password_hash, created_at, failed_logins, locked_until, last_login"
            " FROM operators WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else tuple(row)

    def list_operators(self) -> list[tuple[Any, ...]]:
        rows = self._x(
            "SELECT name, role, password_hash, created_at, failed_logins, locked_until, last_login"
            " FROM operators ORDER BY name"
        ).fetchall()
        return [tuple(r) for r in rows]

    def remove_operator(self, name: str) -> bool:
        """Delete the account (its sessions go with it); False if there was none."""
        return self._x("DELETE FROM operators WHERE name = ?", (name,)).rowcount > 0

    def set_operator_password(self, name: str, password_hash: str) -> bool:
        """New password; clears a lockout and ends the operator's sessions."""
        changed = self._x(
            "UPDATE operators SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE name = ?",
            (password_hash, name),
        ).rowcount
        self._x("DELETE FROM console_sessions WHERE operator = ?", (name,))
        return changed > 0

    def set_login_state(
        self, name: str, failed_logins: int, locked_until: float | None, last_login: float | None = None
    ) -> None:
        self._x(
            "UPDATE operators SET failed_logins = ?, locked_until = ?,"
            " last_login = COALESCE(?, last_login) WHERE name = ?",
            (failed_logins, locked_until, last_login, name),
        )

    def add_console_session(
        self, token_hash: bytes, operator: str, csrf: str, created_at: float, expires_at: float
    ) -> None:
        self._x(
            "INSERT INTO console_sessions (token_hash, operator, csrf, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (token_hash, operator, csrf, created_at, expires_at),
        )

    def get_console_session(self, token_hash: bytes) -> tuple[Any, ...] | None:
        """(operator, role, csrf, created_at, expires_at) of a session, or None."""
        row = self._x(
            "SELECT s.operator, o.role, s.csrf, s.created_at, s.expires_at FROM console_sessions s"
            " JOIN operators o ON o.name = s.operator WHERE s.token_hash = ?",
            (token_hash,),
        ).fetchone()
        return None if row is None else tuple(row)

    def delete_console_session(self, token_hash: bytes) -> None:
        self._x("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

    def delete_expired_console_sessions(self, now: float) -> int:
        return int(self._x("DELETE FROM console_sessions WHERE expires_at <= ?", (now,)).rowcount)

    def add_audit(self, at: float, operator: str, action: str, detail: str) -> None:
        self._x(
            "INSERT INTO audit (at, operator, action, detail) VALUES (?, ?, ?, ?)",
            (at, operator, action, detail),
        )

    def audit_entries(self, limit: int = 500) -> list[tuple[Any, ...]]:
        """(id, at, operator, action, detail), newest first."""
        rows = self._x(
            "SELECT id, at, operator, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [tuple(r) for r in rows]


@dataclass(frozen=True)
class AlarmRow:
    id: str
    kind: str
    line_id: bytes | None
    subject: str
    message: str
    raised_at: float
    cleared_at: float | None
    acked_at: float | None
    acked_by: str | None


def _alarm(row: tuple[Any, ...], cleared_at: float | None = None) -> AlarmRow:
    values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    alarm = AlarmRow(*values)
    return alarm if cleared_at is None else replace(alarm, cleared_at=cleared_at)


def _filters(line_id: bytes | None, kind: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if line_id is not None:
        clauses.append("line_id = ?")
        params.append(line_id)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    return ((" WHERE " + " AND ".join(clauses)) if clauses else ""), tuple(params)


def _line(row: tuple[Any, ...]) -> LineRow:
    values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    return LineRow(*values)


def _outbox(row: tuple[Any, ...]) -> OutboxRow:
    return OutboxRow(*row)


def _inbox(row: tuple[Any, ...]) -> InboxRow:
    return InboxRow(*row)
