"""The record: the hash-chained entries of both directions, the checkpoints exchanged over
them, and drafts awaiting release (a message is on the record once it is released)."""

from __future__ import annotations

from typing import Any

from backchannel.station.store.base import StoreBase
from backchannel.station.store.rows import DraftRow, EntryRow, build, columns


class RecordRoom(StoreBase):
    # ---- entries -----------------------------------------------------------------------

    def add_entry(
        self, line_id: bytes, direction: int, seq: int, chain_hash: bytes, entry_sealed: bytes, at: float
    ) -> None:
        self._x(
            "INSERT OR REPLACE INTO entries (line_id, direction, seq, hash, entry_sealed, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (line_id, direction, seq, chain_hash, entry_sealed, at),
        )

    def entry_hashes(self, line_id: bytes, direction: int) -> list[bytes]:
        rows = self._x(
            "SELECT hash FROM entries WHERE line_id = ? AND direction = ? ORDER BY seq", (line_id, direction)
        ).fetchall()
        return [bytes(r["hash"]) for r in rows]

    def entry_hash(self, line_id: bytes, direction: int, seq: int) -> bytes | None:
        row = self._x(
            "SELECT hash FROM entries WHERE line_id = ? AND direction = ? AND seq = ?",
            (line_id, direction, seq),
        ).fetchone()
        return None if row is None else bytes(row["hash"])

    def latest_entries(self, line_id: bytes, direction: int, limit: int) -> list[tuple[int, bytes]]:
        """(seq, sealed entry) of the last ``limit`` entries of one direction, newest first."""
        rows = self._x(
            "SELECT seq, entry_sealed FROM entries WHERE line_id = ? AND direction = ? ORDER BY seq DESC"
            " LIMIT ?",
            (line_id, direction, limit),
        ).fetchall()
        return [(r["seq"], bytes(r["entry_sealed"])) for r in rows]

    def entries(self, line_id: bytes) -> list[EntryRow]:
        """(direction, seq, hash, sealed entry, time) in the order this station recorded them."""
        rows = self._x(
            f"SELECT {columns(EntryRow)} FROM entries WHERE line_id = ? ORDER BY rowid", (line_id,)
        ).fetchall()
        return [build(EntryRow, r) for r in rows]

    def entry_time(self, line_id: bytes, direction: int, seq: int) -> float | None:
        row = self._x(
            "SELECT at FROM entries WHERE line_id = ? AND direction = ? AND seq = ?",
            (line_id, direction, seq),
        ).fetchone()
        return None if row is None else float(row["at"])

    # ---- checkpoints -------------------------------------------------------------------

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
                "by": r["by_direction"],
                "seq": r["seq"],
                "counts": [r["n0"], r["n1"]],
                "heads": [bytes(r["h0"]).hex(), bytes(r["h1"]).hex()],
                "mldsa65": bytes(r["pq_signature"]).hex(),
                "status": r["status"],
                "detail": r["detail"],
                "at": r["at"],
            }
            for r in rows
        ]

    # ---- release authority -------------------------------------------------------------

    def add_draft(
        self,
        draft_id: str,
        line_id: bytes,
        precedence: str,
        body_sealed: bytes,
        drafted_by: str,
        at: float,
        idempotency_key: str | None = None,
    ) -> None:
        self._x(
            "INSERT INTO drafts (id, line_id, precedence, body_sealed, drafted_by, created_at,"
            " idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (draft_id, line_id, precedence, body_sealed, drafted_by, at, idempotency_key),
        )

    def drafts(self, line_id: bytes | None = None, pending_only: bool = True) -> list[DraftRow]:
        """(id, line, precedence, sealed body, drafted by, created, released by, released at, seq)."""
        clauses = (["released_at IS NULL"] if pending_only else []) + (["line_id = ?"] if line_id else [])
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._x(
            f"SELECT {columns(DraftRow)} FROM drafts{where} ORDER BY created_at",
            (line_id,) if line_id else (),
        ).fetchall()
        return [build(DraftRow, r) for r in rows]

    def draft(self, draft_id: str) -> DraftRow | None:
        row = self._x(f"SELECT {columns(DraftRow)} FROM drafts WHERE id = ?", (draft_id,)).fetchone()
        return None if row is None else build(DraftRow, row)

    def mark_released(self, draft_id: str, operator: str, at: float, seq: int) -> None:
        self._x(
            "UPDATE drafts SET released_by = ?, released_at = ?, seq = ? WHERE id = ?",
            (operator, at, seq, draft_id),
        )
