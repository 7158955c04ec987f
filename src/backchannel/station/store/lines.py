"""Lines and how they are reached: invitations, the lines themselves, their circuits (our
mailboxes and the peer's), retired mailboxes still read for a while, and circuit proposals."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from backchannel.station.store.base import StoreBase
from backchannel.station.store.rows import (
    InvitationRow,
    LineRow,
    MailboxRow,
    PeerMailboxRow,
    PendingInvitationRow,
    ProposalRow,
    build,
    columns,
)

_LINE = columns(LineRow)


class LinesRoom(StoreBase):
    # ---- invitations -------------------------------------------------------------------

    def add_invitation(
        self, line_id: bytes, local_name: str, blob: bytes, secrets_sealed: bytes, created_at: float
    ) -> None:
        self._x(
            "INSERT INTO invitations (line_id, local_name, blob, secrets_sealed, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (line_id, local_name, blob, secrets_sealed, created_at),
        )

    def get_invitation(self, line_id: bytes) -> InvitationRow | None:
        row = self._x(
            f"SELECT {columns(InvitationRow)} FROM invitations WHERE line_id = ?", (line_id,)
        ).fetchone()
        return None if row is None else build(InvitationRow, row, used=bool(row["used"]))

    def mark_invitation_used(self, line_id: bytes) -> None:
        self._x("UPDATE invitations SET used = 1, secrets_sealed = X'' WHERE line_id = ?", (line_id,))

    def pending_invitations(self) -> list[PendingInvitationRow]:
        rows = self._x(
            f"SELECT {columns(PendingInvitationRow)} FROM invitations WHERE used = 0 ORDER BY created_at"
        ).fetchall()
        return [build(PendingInvitationRow, r) for r in rows]

    def name_taken(self, name: str) -> bool:
        if self._x("SELECT 1 FROM lines WHERE name = ?", (name,)).fetchone():
            return True
        return bool(
            self._x("SELECT 1 FROM invitations WHERE local_name = ? AND used = 0", (name,)).fetchone()
        )

    # ---- lines -------------------------------------------------------------------------

    def add_line(self, row: LineRow) -> None:
        values = asdict(row)
        marks = ", ".join("?" * len(values))
        self._x(f"INSERT INTO lines ({', '.join(values)}) VALUES ({marks})", tuple(values.values()))

    def update_line(self, line_id: bytes, **fields: Any) -> None:
        assigns = ", ".join(f"{k} = ?" for k in fields)
        self._x(f"UPDATE lines SET {assigns} WHERE line_id = ?", (*fields.values(), line_id))

    def get_line(self, line_id: bytes) -> LineRow | None:
        row = self._x(f"SELECT {_LINE} FROM lines WHERE line_id = ?", (line_id,)).fetchone()
        return None if row is None else build(LineRow, row)

    def find_line(self, name_or_id: str) -> LineRow | None:
        row = self._x(f"SELECT {_LINE} FROM lines WHERE name = ?", (name_or_id,)).fetchone()
        if row is None and name_or_id:
            row = self._x(
                f"SELECT {_LINE} FROM lines WHERE lower(hex(line_id)) LIKE ?", (name_or_id.lower() + "%",)
            ).fetchone()
        return None if row is None else build(LineRow, row)

    def list_lines(self) -> list[LineRow]:
        return [build(LineRow, r) for r in self._x(f"SELECT {_LINE} FROM lines ORDER BY created_at")]

    # ---- mailboxes ---------------------------------------------------------------------

    def add_mailbox(self, line_id: bytes, url: str, recv_id: bytes, recv_key_sealed: bytes) -> None:
        self._x(
            "INSERT INTO mailboxes (line_id, url, recv_id, recv_key_sealed) VALUES (?, ?, ?, ?)",
            (line_id, url, recv_id, recv_key_sealed),
        )

    def prune_retired(self, before: float) -> int:
        """Forget mailboxes of removed circuits retired before ``before``; returns how many.
        (A rotated one stays until the relay deleted it: :meth:`forget_rotated`.)"""
        sql = "DELETE FROM retired_mailboxes WHERE retired_at < ? AND reason = 'removed'"
        return self._x(sql, (before,)).rowcount

    # ---- rotation ----------------------------------------------------------------------

    def rotate_mailbox(
        self, line_id: bytes, url: str, recv_id: bytes, recv_key_sealed: bytes, change_seq: int, at: float
    ) -> None:
        """Our mailbox on ``url`` becomes ``recv_id``; the old one is retired as 'rotated' by
        our circuits change ``change_seq`` (read on until the relay deleted it)."""
        self._x(
            "INSERT INTO retired_mailboxes (line_id, url, recv_id, recv_key_sealed, retired_at, reason,"
            " change_seq) SELECT line_id, url, recv_id, recv_key_sealed, ?, 'rotated', ?"
            " FROM mailboxes WHERE line_id = ? AND url = ?",
            (at, change_seq, line_id, url),
        )
        self._x("DELETE FROM mailboxes WHERE line_id = ? AND url = ?", (line_id, url))
        self.add_mailbox(line_id, url, recv_id, recv_key_sealed)

    def rotation_applied(self, line_id: bytes, seen: int, at: float) -> int:
        """The peer has ``seen`` our entries up to this count: every rotation of the line whose
        change is among them is applied (its drain starts ``at``); returns how many."""
        return self._x(
            "UPDATE retired_mailboxes SET applied_at = ? WHERE line_id = ? AND reason = 'rotated'"
            " AND applied_at IS NULL AND change_seq <= ?",
            (at, line_id, seen),
        ).rowcount

    def rotated_mailboxes(self) -> list[tuple[bytes, str, bytes, int, float | None]]:
        """Rotated mailboxes not yet deleted at their relay: (line, url, recv_id, change seq,
        applied at or None)."""
        rows = self._x(
            "SELECT line_id, url, recv_id, change_seq, applied_at FROM retired_mailboxes"
            " WHERE reason = 'rotated' ORDER BY retired_at"
        ).fetchall()
        return [(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]

    def forget_rotated(self, recv_id: bytes) -> bool:
        """The relay deleted this rotated mailbox: nothing more to read there."""
        sql = "DELETE FROM retired_mailboxes WHERE recv_id = ? AND reason = 'rotated'"
        return self._x(sql, (recv_id,)).rowcount > 0

    def rotation(self, line_id: bytes) -> tuple[float | None, float] | None:
        """(last rotated at or None, next due at) of a line; None: no schedule yet."""
        row = self._x(
            "SELECT rotated_at, due_at FROM line_rotations WHERE line_id = ?", (line_id,)
        ).fetchone()
        return None if row is None else (row[0], float(row[1]))

    def set_rotation(self, line_id: bytes, rotated_at: float | None, due_at: float) -> None:
        self._x(
            "INSERT INTO line_rotations (line_id, rotated_at, due_at) VALUES (?, ?, ?)"
            " ON CONFLICT (line_id) DO UPDATE SET rotated_at = COALESCE(excluded.rotated_at, rotated_at),"
            " due_at = excluded.due_at",
            (line_id, rotated_at, due_at),
        )

    def mailboxes(self, retired: bool = False) -> list[MailboxRow]:
        """Our own mailboxes: (line, relay url, recv_id, sealed receive key); those of the
        lines' circuits, or with ``retired`` those of removed circuits."""
        table = "retired_mailboxes" if retired else "mailboxes"
        rows = self._x(f"SELECT {columns(MailboxRow)} FROM {table}").fetchall()
        return [build(MailboxRow, r) for r in rows]

    def add_peer_mailbox(self, line_id: bytes, url: str, send_id: bytes, send_key_sealed: bytes) -> None:
        self._x(
            "INSERT OR REPLACE INTO peer_mailboxes (line_id, url, send_id, send_key_sealed)"
            " VALUES (?, ?, ?, ?)",
            (line_id, url, send_id, send_key_sealed),
        )

    def peer_mailboxes(self, line_id: bytes | None = None) -> list[PeerMailboxRow]:
        sql = f"SELECT {columns(PeerMailboxRow)} FROM peer_mailboxes"
        rows = (self._x(sql + " WHERE line_id = ?", (line_id,)) if line_id else self._x(sql)).fetchall()
        return [build(PeerMailboxRow, r) for r in rows]

    def remove_circuit(self, line_id: bytes, url: str, at: float, retire: bool) -> None:
        """The line stops using this relay: no more sending there. Our own mailbox there is
        forgotten, or with ``retire`` kept to be read for a while (no longer the line's circuit)."""
        self._x("DELETE FROM peer_mailboxes WHERE line_id = ? AND url = ?", (line_id, url))
        if retire:
            self._x(
                "INSERT INTO retired_mailboxes (line_id, url, recv_id, recv_key_sealed, retired_at)"
                " SELECT line_id, url, recv_id, recv_key_sealed, ?"
                " FROM mailboxes WHERE line_id = ? AND url = ?",
                (at, line_id, url),
            )
        self._x("DELETE FROM mailboxes WHERE line_id = ? AND url = ?", (line_id, url))
        self._x("DELETE FROM sent WHERE line_id = ? AND url = ?", (line_id, url))

    # ---- circuits proposed by the peer, awaiting approval -------------------------------

    def add_proposal(
        self, proposal_id: str, line_id: bytes, url: str, send_id: bytes, send_key_sealed: bytes, at: float
    ) -> None:
        """Hold a proposal (a newer one for the same line and relay replaces the older)."""
        self._x("DELETE FROM circuit_proposals WHERE line_id = ? AND url = ?", (line_id, url))
        self._x(
            f"INSERT INTO circuit_proposals ({columns(ProposalRow)}) VALUES (?, ?, ?, ?, ?, ?)",
            (proposal_id, line_id, url, send_id, send_key_sealed, at),
        )

    def proposals(self, line_id: bytes | None = None) -> list[ProposalRow]:
        """(id, line, url, send_id, sealed send key, proposed at), oldest first."""
        sql = f"SELECT {columns(ProposalRow)} FROM circuit_proposals"
        rows = (
            self._x(sql + " WHERE line_id = ? ORDER BY proposed_at", (line_id,))
            if line_id
            else self._x(sql + " ORDER BY proposed_at")
        ).fetchall()
        return [build(ProposalRow, r) for r in rows]

    def delete_proposal(self, proposal_id: str) -> bool:
        return self._x("DELETE FROM circuit_proposals WHERE id = ?", (proposal_id,)).rowcount > 0

    def delete_proposals(self, line_id: bytes, url: str) -> bool:
        sql = "DELETE FROM circuit_proposals WHERE line_id = ? AND url = ?"
        return self._x(sql, (line_id, url)).rowcount > 0
