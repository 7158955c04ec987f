"""Operator accounts, console sessions and the audit log (the console's tables).

Rows come back as named tuples; :mod:`backchannel.station.operators` turns them into views.
"""

from __future__ import annotations

from backchannel.station.store.base import StoreBase
from backchannel.station.store.rows import AuditRow, ConsoleSessionRow, OperatorRow, build, columns

_OPERATOR = columns(OperatorRow)


class OperatorsRoom(StoreBase):
    def add_operator(self, name: str, role: str, password_hash: str, at: float) -> bool:
        """Create an operator account; False if the name is taken."""
        if self._x("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
            return False
        self._x(
            "INSERT INTO operators (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (name, role, password_hash, at),
        )
        return True

    def get_operator(self, name: str) -> OperatorRow | None:
        """(name, role, password_hash, created_at, failed_logins, locked_until, last_login)."""
        row = self._x(f"SELECT {_OPERATOR} FROM operators WHERE name = ?", (name,)).fetchone()
        return None if row is None else build(OperatorRow, row)

    def list_operators(self) -> list[OperatorRow]:
        rows = self._x(f"SELECT {_OPERATOR} FROM operators ORDER BY name").fetchall()
        return [build(OperatorRow, r) for r in rows]

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

    def get_console_session(self, token_hash: bytes) -> ConsoleSessionRow | None:
        """(operator, role, csrf, created_at, expires_at) of a session, or None."""
        row = self._x(
            "SELECT s.operator AS operator, o.role AS role, s.csrf AS csrf, s.created_at AS created_at,"
            " s.expires_at AS expires_at FROM console_sessions s"
            " JOIN operators o ON o.name = s.operator WHERE s.token_hash = ?",
            (token_hash,),
        ).fetchone()
        return None if row is None else build(ConsoleSessionRow, row)

    def delete_console_session(self, token_hash: bytes) -> None:
        self._x("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

    def delete_expired_console_sessions(self, now: float) -> int:
        return int(self._x("DELETE FROM console_sessions WHERE expires_at <= ?", (now,)).rowcount)

    def add_audit(self, at: float, operator: str, action: str, detail: str) -> None:
        self._x(
            "INSERT INTO audit (at, operator, action, detail) VALUES (?, ?, ?, ?)",
            (at, operator, action, detail),
        )

    def audit_entries(self, limit: int = 500) -> list[AuditRow]:
        """(id, at, operator, action, detail), newest first."""
        rows = self._x(f"SELECT {columns(AuditRow)} FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [build(AuditRow, r) for r in rows]
