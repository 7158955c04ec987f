"""Small readings of the station's state that several console pages show the same way."""

from __future__ import annotations

from backchannel.station.station import Station
from backchannel.station.views import MessageView


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
