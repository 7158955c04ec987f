"""Alarms: something on a line needs a person's attention. Raised once, cleared once.

An alarm is identified by its kind, its line and its subject (a circuit URL, a message
reference, or nothing). Raising an alarm that is already open does nothing; clearing one
that is not open does nothing. So the periodic checks can simply say what is true on every
tick, and the operators and the sinks see one *raised* and one *cleared* event per incident.
Alarms are stored (shown by ``backchannel alarms`` and ``status``) before their events go
to the sinks (a command and/or a webhook, :mod:`backchannel.station.alarm_sinks`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from backchannel.clock import Clock, Rng
from backchannel.errors import BackchannelError
from backchannel.station.alarm_dispatch import AlarmDispatcher
from backchannel.station.alarm_sinks import sinks_from_config
from backchannel.station.config import StationConfig
from backchannel.station.store import AlarmRow, Store
from backchannel.station.views import shallow

log = logging.getLogger("backchannel.station")

KINDS = (
    "circuit_down",
    "line_down",
    "deadline_passed",
    "sequence_gap",
    "frames_lost",
    "record_divergence",
    "flash_received",
    "pairing_failed",
    "invitation_reused",
    "relay_refused",
)


@dataclass(frozen=True)
class AlarmView:
    id: str
    kind: str
    state: str  # raised or cleared
    station: str
    line: str | None
    subject: str
    message: str
    raised_at: float
    cleared_at: float | None
    acknowledged_at: float | None
    acknowledged_by: str | None
    #: ``alarm-ack``: someone had acknowledged it before (``acknowledged_by``/``_at``); the
    #: first acknowledgement stands and this one changed nothing.
    already_acknowledged: bool = False

    def to_json(self) -> dict[str, Any]:
        out = shallow(self)
        if not self.already_acknowledged:  # only when true: most views are plain alarms
            del out["already_acknowledged"]
        return out


class Alarms:
    def __init__(
        self,
        store: Store,
        station: str,
        clock: Clock,
        rng: Rng,
        line_name: Callable[[bytes], str],
        dispatch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._store = store
        self._station = station
        self._clock = clock
        self._rng = rng
        self._line_name = line_name
        self._dispatch = dispatch

    def raise_alarm(self, kind: str, line_id: bytes | None, subject: str, message: str) -> bool:
        """Open the alarm unless it is open already; True if this call raised it."""
        now = self._clock.now()
        alarm_id = self._rng.bytes(6).hex()
        with self._store.transaction():
            opened = self._store.open_alarm(alarm_id, kind, line_id, subject, message, now)
        if opened:
            self._emit(AlarmRow(alarm_id, kind, line_id, subject, message, now, None, None, None))
        return opened

    def clear_alarm(self, kind: str, line_id: bytes | None, subject: str) -> bool:
        """Clear the alarm if it is open; True if this call cleared it."""
        with self._store.transaction():
            row = self._store.close_alarm(kind, line_id, subject, self._clock.now())
        if row is not None:
            self._emit(row)
        return row is not None

    def is_open(self, kind: str, line_id: bytes | None, subject: str) -> bool:
        return any(
            a.kind == kind and a.line_id == line_id and a.subject == subject for a in self._store.alarms()
        )

    def list(self, include_cleared: bool = False) -> list[AlarmView]:
        return [self.view(row) for row in self._store.alarms(include_cleared)]

    def acknowledge(self, alarm_id: str, operator: str) -> AlarmView | None:
        """Record who saw the alarm and when, on its row (shown by ``alarms``); the first
        acknowledgement stands, and a later one is reported as ``already_acknowledged``."""
        with self._store.transaction():
            row, first = self._store.ack_alarm(alarm_id, operator, self._clock.now())
        if row is None:
            return None
        return self.view(row) if first else replace(self.view(row), already_acknowledged=True)

    def view(self, row: AlarmRow) -> AlarmView:
        return AlarmView(
            id=row.id,
            kind=row.kind,
            state="cleared" if row.cleared_at else "raised",
            station=self._station,
            line=self._line_name(row.line_id) if row.line_id else None,
            subject=row.subject,
            message=row.message,
            raised_at=row.raised_at,
            cleared_at=row.cleared_at,
            acknowledged_at=row.acked_at,
            acknowledged_by=row.acked_by,
        )

    def _emit(self, row: AlarmRow) -> None:
        if self._dispatch is not None:
            self._dispatch(self.view(row).to_json())


class AlarmOutlet:
    """Where raised and cleared alarms go beyond the log: the configured sinks (a command, a
    webhook; ``station.alarm_sinks``). A sink that fails is logged and counted, never fatal."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.dispatcher: AlarmDispatcher | None = None

    def start(self, config: StationConfig) -> None:
        sinks = sinks_from_config(list(config.alarm_command) or None, config.alarm_webhook)
        if sinks:
            self.dispatcher = AlarmDispatcher(sinks, on_result=self._delivery_result)

    def dispatch(self, event: dict[str, object]) -> None:
        log.warning("alarm %s: %s", event["state"], event["message"])
        if self.dispatcher is not None:
            self.dispatcher.dispatch(event)

    def _delivery_result(self, event: dict[str, object], sink: str, ok: bool, detail: str) -> None:
        if not ok:
            log.error("alarm %s could not be delivered to %s: %s", event.get("id"), sink, detail)
            with contextlib.suppress(BackchannelError), self._store.transaction(durable=False):
                self._store.count("alarm_delivery_failed")

    async def close(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.close(5.0)
