"""Messages in flight: the outbox (our sealed frames and where each is stored), the inbox (the
peer's messages, decrypted and sealed at rest), and frames held back ahead of a gap."""

from __future__ import annotations

from typing import Any

from backchannel.errors import StorageError
from backchannel.station.store.base import Committed, StoreBase
from backchannel.station.store.rows import InboxRow, OutboxRow, SendKeyRow, build, columns

_OUTBOX = columns(OutboxRow)
_INBOX = columns(InboxRow)


class MessagesRoom(StoreBase):
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
        idempotency_key: str | None = None,
    ) -> None:
        self._x(
            "INSERT INTO outbox (line_id, seq, kind, precedence, body_sealed, frame, created_at,"
            " idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (line_id, seq, kind, precedence, body_sealed, frame, created_at, idempotency_key),
        )
        if kind == "msg":
            self._note(Committed("sent", line_id))

    def find_send_key(self, key: str) -> SendKeyRow | None:
        """The message (or the draft held by the two-person rule) a ``send --id`` key names."""
        row = self._x(
            "SELECT line_id, seq, NULL AS draft_id, precedence, body_sealed FROM outbox"
            " WHERE idempotency_key = ?1 UNION ALL"
            " SELECT line_id, seq, id AS draft_id, precedence, body_sealed FROM drafts"
            " WHERE idempotency_key = ?1 LIMIT 1",
            (key,),
        ).fetchone()
        return None if row is None else build(SendKeyRow, row)

    def unsent(self) -> list[tuple[bytes, int, str]]:
        """(line, seq, circuit url) of every frame some circuit of its line has not stored."""
        rows = self._x(
            "SELECT o.line_id, o.seq, p.url FROM outbox o JOIN peer_mailboxes p ON p.line_id = o.line_id"
            " WHERE o.relayed_all = 0 AND NOT EXISTS (SELECT 1 FROM sent s WHERE s.line_id = o.line_id"
            " AND s.url = p.url AND s.seq = o.seq) ORDER BY o.line_id, o.seq"
        ).fetchall()
        return [(bytes(r["line_id"]), r["seq"], r["url"]) for r in rows]

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
            row = self._x(
                "SELECT (SELECT COUNT(*) FROM sent WHERE line_id = ?1 AND seq = ?2) AS stored,"
                " (SELECT COUNT(*) FROM peer_mailboxes WHERE line_id = ?1) AS circuits",
                (line_id, seq),
            ).fetchone()
            if row["stored"] >= row["circuits"]:
                self._x("UPDATE outbox SET relayed_all = 1 WHERE line_id = ? AND seq = ?", (line_id, seq))
                self._x("DELETE FROM sent WHERE line_id = ? AND seq = ?", (line_id, seq))

    def relayed_times(self, line_id: bytes, first: int, last: int) -> list[tuple[int, float | None]]:
        """(seq, when a relay first stored it) of our frames ``first``..``last``, in order."""
        rows = self._x(
            "SELECT seq, relayed_at FROM outbox WHERE line_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (line_id, first, last),
        ).fetchall()
        return [(r["seq"], r["relayed_at"]) for r in rows]

    def overdue(self, now: float, deadlines: dict[str, float]) -> list[tuple[bytes, int, str, float]]:
        """Sent messages past their acknowledgement deadline, not yet escalated."""
        out = []
        for precedence, seconds in deadlines.items():
            rows = self._x(
                "SELECT line_id, seq, created_at FROM outbox WHERE kind = 'msg' AND precedence = ?"
                " AND acked_at IS NULL AND escalated_at IS NULL AND created_at + ? < ?",
                (precedence, seconds, now),
            ).fetchall()
            out += [(bytes(r["line_id"]), r["seq"], precedence, r["created_at"]) for r in rows]
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
        return bytes(row["frame"])

    def mark_delivered(self, line_id: bytes, upto: int, at: float) -> None:
        rows = self._x(
            "UPDATE outbox SET delivered_at = ?, relayed_at = COALESCE(relayed_at, ?)"
            " WHERE line_id = ? AND seq <= ? AND delivered_at IS NULL RETURNING kind, created_at",
            (at, at, line_id, upto),
        ).fetchall()
        for row in rows:
            if row["kind"] == "msg":
                self._note(Committed("delivered", line_id, seconds=at - row["created_at"]))

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
            f"SELECT {_OUTBOX} FROM outbox{where} ORDER BY created_at DESC, seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [build(OutboxRow, r) for r in rows]

    def outbound_one(self, line_id: bytes, seq: int) -> OutboxRow | None:
        row = self._x(
            f"SELECT {_OUTBOX} FROM outbox WHERE line_id = ? AND seq = ?", (line_id, seq)
        ).fetchone()
        return None if row is None else build(OutboxRow, row)

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
        self._note(Committed("received", line_id))

    def inbound(
        self, line_id: bytes | None = None, unacked_only: bool = False, limit: int = 1000
    ) -> list[InboxRow]:
        where, params = _filters(line_id, None)
        if unacked_only:
            where += (" AND" if where else " WHERE") + " acked_at IS NULL"
        rows = self._x(
            f"SELECT {_INBOX} FROM inbox{where} ORDER BY received_at DESC, seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [build(InboxRow, r) for r in rows]

    def inbound_one(self, line_id: bytes, seq: int) -> InboxRow | None:
        row = self._x(f"SELECT {_INBOX} FROM inbox WHERE line_id = ? AND seq = ?", (line_id, seq)).fetchone()
        return None if row is None else build(InboxRow, row)

    def ack_inbound(self, line_id: bytes, seq: int, operator: str, at: float) -> None:
        self._x(
            "UPDATE inbox SET acked_at = ?, acked_by = ? WHERE line_id = ? AND seq = ?",
            (at, operator, line_id, seq),
        )

    # ---- held frames -------------------------------------------------------------------

    def hold(self, line_id: bytes, seq: int, frame: bytes) -> None:
        self._x("INSERT OR IGNORE INTO held (line_id, seq, frame) VALUES (?, ?, ?)", (line_id, seq, frame))

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
        return bytes(row["frame"])

    def count_rows(self, table: str, line_id: bytes, condition: str = "1") -> int:
        assert table in ("inbox", "outbox")
        row = self._x(
            f"SELECT COUNT(*) FROM {table} WHERE line_id = ? AND {condition}", (line_id,)
        ).fetchone()
        return int(row[0])


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
