"""Alarms: raised once per (kind, line, subject) while open, cleared, acknowledged."""

from __future__ import annotations

from backchannel.station.store.base import Committed, StoreBase
from backchannel.station.store.rows import AlarmRow, build, columns

_ALARM = columns(AlarmRow)


class AlarmsRoom(StoreBase):
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
        self._note(Committed("alarm", line_id, kind=kind))
        return True

    def close_alarm(self, kind: str, line_id: bytes | None, subject: str, at: float) -> AlarmRow | None:
        row = self._x(
            f"SELECT {_ALARM} FROM alarms"
            " WHERE kind = ? AND line_id IS ? AND subject = ? AND cleared_at IS NULL",
            (kind, line_id, subject),
        ).fetchone()
        if row is None:
            return None
        self._x("UPDATE alarms SET cleared_at = ? WHERE id = ?", (at, row["id"]))
        return build(AlarmRow, row, cleared_at=at)

    def alarms(self, include_cleared: bool = False, limit: int = 200) -> list[AlarmRow]:
        where = "" if include_cleared else " WHERE cleared_at IS NULL"
        rows = self._x(
            f"SELECT {_ALARM} FROM alarms{where} ORDER BY raised_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [build(AlarmRow, r) for r in rows]

    def ack_alarm(self, alarm_id: str, operator: str, at: float) -> tuple[AlarmRow | None, bool]:
        """The alarm after acknowledging it, and whether this call did (the first one stands)."""
        changed = self._x(
            "UPDATE alarms SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL",
            (at, operator, alarm_id),
        ).rowcount
        row = self._x(f"SELECT {_ALARM} FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
        return (None if row is None else build(AlarmRow, row)), changed == 1
