"""What the station shows: plain, JSON-ready records returned by the :class:`Station` API.

The CLI, the control socket and (later) the console render these; none of them reaches
into the store. Times are seconds since the epoch (float) or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
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
    state: str  # "pairing", "established", or "failed" (no welcome within the pairing timeout)
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
    #: When the line last rotated its inbound mailboxes (None: never; ``station.rotation``).
    rotated_at: float | None = None

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
    #: ``send --id``: this send repeated an earlier one with the same key; nothing new was sent.
    repeated: bool = False
    #: ``ack``: the message had been acknowledged before (``acknowledged_by``/``_at`` say by
    #: whom and when); nothing new was recorded and the sender was not told again.
    already_acknowledged: bool = False

    @property
    def ref(self) -> str:
        """``LINE:in/SEQ`` or ``LINE:out/SEQ``: sent and received entries are numbered apart.

        SEQ is the line's sequence number in that direction (the record's, the same at both
        ends: ``washington:out/16`` here is ``moscow:in/16`` at the other station), so it
        counts receipts and link tests as well as operators' messages.
        """
        return f"{self.line}:{self.direction}/{self.seq}"

    def marked_repeated(self) -> MessageView:
        return replace(self, repeated=True)

    def marked_already_acknowledged(self) -> MessageView:
        return replace(self, already_acknowledged=True)

    def to_json(self) -> dict[str, Any]:
        out = shallow(self)
        for flag in ("repeated", "already_acknowledged"):  # only when true: most views are neither
            if not out[flag]:
                del out[flag]
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
    """The safety number and what this station knows of its comparison.

    ``verified`` is *this* side's operator confirming the digits matched (``verify
    --confirm``). The peer's confirmation is never sent over the line, so this station cannot
    know it: ``peer_confirmed`` is ``None`` ("not known"), and nothing here may say "both".
    """

    line: str
    peer_name: str
    safety_number: str
    grouped: str
    verified: bool
    verified_at: float | None
    peer_confirmed: bool | None = None

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
