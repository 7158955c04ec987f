"""The Lines page (every line, its health and what waits for this station) and a line's conversation.

A conversation shows sent and received messages, and drafts held for release, in one list;
acknowledging a received message is one button, as the logged-in operator.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from backchannel.console.pages import Pages
from backchannel.console.views import local_time, release_scope, unacknowledged_flash
from backchannel.errors import UnknownMessage
from backchannel.station.operators import Session
from backchannel.station.views import DraftView, MessageView


class LinePages(Pages):
    async def lines_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        lines = self.station.lines()
        held: dict[str, int] = {}
        for d in self.station.drafts():
            held[d.line] = held.get(d.line, 0) + 1
        flash: dict[str, int] = {}
        for alert in unacknowledged_flash(self.station):
            flash[alert.line] = flash.get(alert.line, 0) + 1
        return self.render(
            "lines.html",
            session,
            title="Lines",
            nav="lines",
            lines=lines,
            held=held,
            flash=flash,
            release_scope=lambda name: release_scope(self.station, name),
        )

    async def line_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        oldest_first = request.query_params.get("order") == "oldest"
        messages = self.station.inbox(line.line_id, limit=200) + self.station.outbox(line.line_id, limit=200)
        entries: list[tuple[float, MessageView | DraftView]] = [(local_time(m), m) for m in messages]
        entries += [(d.created_at, d) for d in self.station.drafts(line.line_id)]
        entries.sort(key=lambda entry: entry[0], reverse=not oldest_first)
        deadlines = self.station.config.deadlines_for(line.name)
        notice = ""
        if (sent := request.query_params.get("sent", "")).isdigit():
            notice = f"Message {line.name}:{sent} is stored and going out on every circuit."
        elif (released := request.query_params.get("released", "")).isdigit():
            notice = f"Released: message {line.name}:{released} is stored and going out on every circuit."
        elif self._held_here(request.query_params.get("held", ""), line.name):
            notice = (
                f"Held for release: line {line.name} needs a second operator (releaser) to release "
                f"{release_scope(self.station, line.name)}. It is shown below as awaiting release; "
                "nothing has left this station."
            )
        return self.render(
            "line.html",
            session,
            title=f"Line {line.name}",
            nav="lines",
            line=line,
            entries=entries,
            oldest_first=oldest_first,
            deadlines=deadlines,
            notice=notice,
            local_time=local_time,
        )

    def _held_here(self, draft_id: str, line_name: str) -> bool:
        """Whether ``draft_id`` names a draft of this line (for the notice after drafting)."""
        if not draft_id:
            return False
        try:
            return self.station.draft(draft_id).line == line_name
        except UnknownMessage:
            return False

    async def ack(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        seq = int(request.path_params["seq"])
        before = self.station.message(line.line_id, seq, "in")
        await self.station.ack(line.line_id, seq, session.operator)
        if before.acknowledged_at is None:
            self.audit(session, "acknowledge", f"{line.name}:{seq} {before.precedence}")
        order = "?order=oldest" if form is not None and form.get("order") == "oldest" else ""
        return RedirectResponse(f"/line/{line.line_id}{order}#in-{seq}", 303)
