"""Small readings of the station's state that several console pages show the same way."""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.station.station import Station
from backchannel.station.views import MessageView

#: How many unacknowledged received messages are searched for FLASH on each page (newest first).
FLASH_SCAN = 1000


@dataclass(frozen=True)
class FlashAlert:
    """An incoming FLASH nobody at this station has acknowledged: the banner names and links it."""

    line: str
    line_id: str
    seq: int
    received_at: float

    @property
    def ref(self) -> str:
        return f"{self.line}:in/{self.seq}"  # the form the CLI prints and ack/show take


def unacknowledged_flash(station: Station) -> list[FlashAlert]:
    """Every received FLASH still waiting for an acknowledgement, newest first.

    Read on every page a logged-in operator sees (the banner, the title) and by the live feed,
    so a FLASH draws attention wherever the operator is, until someone acknowledges it.
    """
    waiting = [m for m in station.inbox(unacknowledged=True, limit=FLASH_SCAN) if m.precedence == "FLASH"]
    if not waiting:
        return []
    ids = {line.name: line.line_id for line in station.lines()}
    return [
        FlashAlert(m.line, ids.get(m.line, m.line), m.seq, m.delivered_at or m.created_at) for m in waiting
    ]


def local_time(message: MessageView) -> float:
    """When this station saw the message: sent (queued) here, or received here."""
    if message.direction == "in":
        return message.delivered_at or message.created_at
    return message.created_at


def release_scope(station: Station, line_name: str) -> str:
    """What a line's two-person rule holds, in words: "FLASH messages", "every message"."""
    rule = station.config.line_release.get(line_name, "none")
    return {"flash": "FLASH messages", "all": "every message"}.get(rule, "")


def sentence(text: str) -> str:
    return (text[:1].upper() + text[1:]).rstrip(".") + "."
