"""Helpers of the mailbox-rotation tests: what each station and the relay hold, read from disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from backchannel.proto import frames

from support.relays import RelayProcess
from support.stations import StationProcess
from support.wiretap import WireTap, ws_payloads

#: Stations that rotate only when told, and drain fast (a test's pace).
TOML = "[station]\nrotate_every = 0\nrotation_drain_seconds = 0.3\nrelay_request_timeout = 3.0\n"


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql).fetchall()


def current_mailboxes(station: StationProcess) -> set[bytes]:
    """The recv_ids of the station's mailboxes that are its lines' circuits now."""
    return {bytes(r[0]) for r in _rows(station.home / "station.db", "SELECT recv_id FROM mailboxes")}


def rotated_mailboxes(station: StationProcess) -> set[bytes]:
    """The recv_ids of rotated mailboxes not yet deleted at their relay."""
    sql = "SELECT recv_id FROM retired_mailboxes WHERE reason = 'rotated'"
    return {bytes(r[0]) for r in _rows(station.home / "station.db", sql)}


def relay_mailboxes(relay: RelayProcess) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(recv_id, send_id, recv_key, send_key) of every mailbox the relay holds."""
    rows = _rows(relay.db_path, "SELECT recv_id, send_id, recv_key, send_key FROM mailboxes")
    return [(bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]


def relay_frame_count(relay: RelayProcess) -> int:
    return int(_rows(relay.db_path, "SELECT COUNT(*) FROM messages")[0][0])


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
                except Exception:  # (a WebSocket control frame: ping, pong, close)
                    continue
    return out
