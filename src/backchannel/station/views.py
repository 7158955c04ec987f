"""What the station shows: plain, JSON-ready records returned by the :class:`Station` API.

The CLI, the control socket and (later) the console render these; none of them reaches
into the store. Times are seconds since the epoch (float) or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def shallow(view: Any) -> dict[str, Any]:
    """A dataclass as a dict, without ``asdict``'s deep copies (views hold only plain data)."""
    return {f.name: getattr(view, f.name) for f in fields(view)}


@dataclass(frozen=True)
class InvitationView:
    line_id: str
    name: str
    text: str
    expires_at: float
    relays: list[str]

    def to_json(self) -> dict[str, Any]:
        return shallow(self)


@dataclass(frozen=True)
class LineView:
    line_id: str
    name: str
    peer_name: str
    role: str  # "inviter" or "accepter"
    state: str  # "pairing", "established"
    verified: bool
    verified_at: float | None
    on_record: bool
    relays: list[str]
    relays_connected: list[str]
    sent: int
    received: int
    unacknowledged: int  # received messages no operator has acknowledged
    last_contact: float | None
    transcript_head: str
    health: str = "up"  # up, degraded or down: from the circuits
    circuits: list[dict[str, Any]] = field(default_factory=list)
    open_alarms: int = 0

    def to_json(self) -> dict[str, Any]:
        return shallow(self)


@dataclass(frozen=True)
class MessageView:
    line: str
    seq: int
    direction: str  # "out" or "in"
    precedence: str
    text: str
    status: str  # out: queued, relayed, delivered, acknowledged; in: received, acknowledged
    created_at: float  # out: when queued; in: the sender's time
    relayed_at: float | None
    delivered_at: float | None
    acknowledged_at: float | None
    acknowledged_by: str | None

    @property
    def ref(self) -> str:
        """``LINE:in/SEQ`` or ``LINE:out/SEQ``: sent and received entries are numbered apart.

        SEQ is the line's sequence number in that direction (the record's, the same at both
        ends: ``washington:out/16`` here is ``moscow:in/16`` at the other station), so it
        counts receipts and link tests as well as operators' messages.
        """
        return f"{self.line}:{self.direction}/{self.seq}"

    def to_json(self) -> dict[str, Any]:
        out = shallow(self)
        out["ref"] = self.ref
        return out


@dataclass(frozen=True)
class DraftView:
    """A message held by the two-person rule until a second operator releases it."""

    id: str
    line: str
    precedence: str
    text: str
    drafted_by: str
    created_at: float
    status: str  # "awaiting release" or "released"
    released_by: str | None
    released_at: float | None
    seq: int | None  # the message's sequence number once released

    def to_json(self) -> dict[str, Any]:
        return shallow(self)


@dataclass(frozen=True)
class VerificationView:
    line: str
    peer_name: str
    safety_number: str
    grouped: str
    verified: bool
    verified_at: float | None

    def to_json(self) -> dict[str, Any]:
        return shallow(self)


@dataclass(frozen=True)
class TranscriptView:
    line: str
    head: str
    sent_entries: int
    received_entries: int

    def to_json(self) -> dict[str, Any]:
        return shallow(self)
