"""Reading: the views of lines and messages the operator facade returns.

Read-only: nothing here changes the store or the lines. Message bodies are opened from their
at-rest seal only here, when shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from backchannel.errors import UnknownMessage
from backchannel.proto import line as proto_line
from backchannel.proto.safety import grouped, safety_number
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.liveline import LiveLine
from backchannel.station.relay_url import shown
from backchannel.station.store import InboxRow, OutboxRow, Store
from backchannel.station.views import LineView, MessageView, TranscriptView, VerificationView


class Views:
    def __init__(self, lines: Lines, links: Links, store: Store) -> None:
        self._lines = lines
        self._links = links
        self._store = store
        #: A circuit's cover traffic and costs (the pacer's ``circuit_view``), when it has one.
        self.cover: Callable[[bytes, str], dict[str, Any]] | None = None
    def lines(self) -> list[LineView]:
        return [
            self.line_view(self._lines[r.line_id])
            for r in self._store.list_lines()
            if r.line_id in self._lines
        ]

    def line_view(self, live: LiveLine) -> LineView:
        row = live.row
        relays = sorted({url for _, url, _, _ in self._store.peer_mailboxes(row.line_id)})
        watch = live.watch  # (the core's link watch, once the monitor started it)
        circuits = []
        for url in relays:
            health = watch.circuit(url) if watch else None
            info: dict[str, Any] = (
                health.to_json()
                if health
                else {
                    "url": url,
                    "state": "unknown",
                    "connected": self._links.connected(url),
                    "rtt_ms": None,
                    "last_in": None,
                    "last_out": None,
                }
            )
            info["url"] = shown(url)
            info["pending"] = self._store.pending_on_circuit(row.line_id, url)
            if self.cover is not None:
                info.update(self.cover(row.line_id, url))
            circuits.append(info)
        open_alarms = sum(1 for a in self._store.alarms() if a.line_id == row.line_id)
        return LineView(
            line_id=row.line_id.hex(),
            name=row.name,
            peer_name=row.peer_name,
            role="inviter" if row.role == proto_line.INVITER else "accepter",
            state=row.state,
            verified=row.verified_at is not None,
            verified_at=row.verified_at,
            on_record=bool(row.on_record),
            relays=[shown(u) for u in relays],  # (never the relay's access token)
            relays_connected=[shown(u) for u in relays if self._links.connected(u)],
            sent=self._store.count_rows("outbox", row.line_id, "kind = 'msg'"),
            received=self._store.count_rows("inbox", row.line_id),
            unacknowledged=self._store.count_rows("inbox", row.line_id, "acked_at IS NULL"),
            last_contact=row.last_contact,
            transcript_head=live.state.transcript.head().hex(),
            health=(watch.state.value if watch else ("up" if relays else "down"))
            if live.established
            else row.state,  # pairing, or failed (the welcome never came: see pairing.py)
            circuits=circuits,
            open_alarms=open_alarms,
            rotated_at=rotated[0] if (rotated := self._store.rotation(row.line_id)) else None,
        )

    def pending_invitations(self) -> list[dict[str, object]]:
        return [
            {"line_id": lid.hex(), "name": name, "created_at": at}
            for lid, name, at in self._store.pending_invitations()
        ]

    def inbox(
        self, line: str | None = None, unacknowledged: bool = False, limit: int = 100
    ) -> list[MessageView]:
        line_id = self._lines.find(line).line_id if line else None
        return [self._in_view(r) for r in self._store.inbound(line_id, unacknowledged, limit)]

    def outbox(self, line: str | None = None, limit: int = 100) -> list[MessageView]:
        line_id = self._lines.find(line).line_id if line else None
        return [self._out_view(r) for r in self._store.outbound(line_id, "msg", limit)]

    def message(self, line: str, seq: int, direction: str) -> MessageView:
        live = self._lines.find(line)
        if direction == "out":
            out = self._store.outbound_one(live.line_id, seq)
            if out is None or out.kind != "msg":
                raise UnknownMessage(f"no sent message {seq} on line {live.row.name!r}")
            return self._out_view(out)
        inn = self._store.inbound_one(live.line_id, seq)
        if inn is None:
            raise UnknownMessage(f"no received message {seq} on line {live.row.name!r}")
        return self._in_view(inn)

    def _out_view(self, r: OutboxRow) -> MessageView:
        status = (
            "acknowledged"
            if r.acked_at
            else "delivered"
            if r.delivered_at
            else "relayed"
            if r.relayed_at
            else "queued"
        )
        text = self._lines.text(r.line_id, "out", r.seq, r.body_sealed) if r.body_sealed else ""
        return MessageView(
            self._lines.name(r.line_id),
            r.seq,
            "out",
            r.precedence or "",
            text,
            status,
            r.created_at,
            r.relayed_at,
            r.delivered_at,
            r.acked_at,
            r.acked_by,
        )

    def _in_view(self, r: InboxRow) -> MessageView:
        return MessageView(
            self._lines.name(r.line_id),
            r.seq,
            "in",
            r.precedence,
            self._lines.text(r.line_id, "in", r.seq, r.body_sealed),
            "acknowledged" if r.acked_at else "received",
            r.sent_at,
            None,
            r.received_at,
            r.acked_at,
            r.acked_by,
        )

    def verify(self, live: LiveLine, confirm: bool, pq_public: bytes) -> VerificationView:
        """The safety number; with ``confirm``, record that the operators compared it."""
        # On the record the record keys are bound too (an arbiter compares a station's identity
        # file with its half); off the record no record key is exchanged, so none is bound.
        on = live.state.on_record
        ours = self._lines.identity
        number = safety_number(
            (ours.identity_key, ours.signing_key, pq_public if on else b""),
            (live.row.peer_identity, live.row.peer_signing, (live.row.peer_pq or b"") if on else b""),
        )
        if confirm and live.row.verified_at is None:
            now = self._lines.clock.now()
            with self._lines.mutation():
                self._store.update_line(live.line_id, verified_at=now)
                live.row = replace(live.row, verified_at=now)
        return VerificationView(
            live.row.name,
            live.row.peer_name,
            number,
            grouped(number),
            live.row.verified_at is not None,
            live.row.verified_at,
        )

    def transcript(self, live: LiveLine) -> TranscriptView:
        t = live.state.transcript
        return TranscriptView(
            live.row.name,
            t.head().hex(),
            t.counts[live.state.out_direction],
            t.counts[live.state.in_direction],
        )
