"""Helpers of the mailbox-rotation tests: what each station and the relay hold, read from disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from backchannel.proto import frames

from support.relays import RelayProcess
from support.stations import StationProcess
from support.wiretap import WireTap, ws_payloads

#: Stations that rotate only when told, and drain fast (a test's pace).
TOML = "[station]\nrotate_every = 0\nrotation_drain_seconds = 0.3\nrelay_request_timeout = 3.0\n"


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql).fetchall()


def current_mailboxes(station: StationProcess) -> set[bytes]:
    """The recv_ids of the station's mailboxes that are its lines' circuits now."""
    return {bytes(r[0]) for r in _rows(station.home / "station.db", "SELECT recv_id FROM mailboxes")}  # type: ignore[arg-type]


def rotated_mailboxes(station: StationProcess) -> set[bytes]:
    """The recv_ids of rotated mailboxes not yet deleted at their relay."""
    sql = "SELECT recv_id FROM retired_mailboxes WHERE reason = 'rotated'"
    return {bytes(r[0]) for r in _rows(station.home / "station.db", sql)}  # type: ignore[arg-type]


def relay_mailboxes(relay: RelayProcess) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(recv_id, send_id, recv_key, send_key) of every mailbox the relay holds."""
    rows = _rows(relay.db_path, "SELECT recv_id, send_id, recv_key, send_key FROM mailboxes")
    return [tuple(bytes(v) for v in row) for row in rows]  # type: ignore[misc, arg-type]


def relay_frame_count(relay: RelayProcess) -> int:
    return int(_rows(relay.db_path, "SELECT COUNT(*) FROM messages")[0][0])  # type: ignore[call-overload]


def tap_marks(tap: WireTap) -> list[int]:
    """How many WebSocket messages each recorded connection carried so far (client to relay,
    then relay to client, per connection)."""
    marks = []
    for up, down in list(tap.streams):
        marks += [len(ws_payloads(bytes(up))), len(ws_payloads(bytes(down)))]
    return marks


def relay_frames_since(tap: WireTap, marks: list[int]) -> list[frames.Frame]:
    """Every relay frame recorded after ``marks`` (connections opened since: all of theirs)."""
    out: list[frames.Frame] = []
    for i, (up, down) in enumerate(list(tap.streams)):
        for j, stream in enumerate((up, down)):
            skip = marks[2 * i + j] if 2 * i + j < len(marks) else 0
            for payload in ws_payloads(bytes(stream))[skip:]:
                try:
                    out.append(frames.decode(payload, 2**22))
                except Exception:  # noqa: BLE001 (a WebSocket control frame: ping, pong, close)
                    continue
    return out
