"""Composing a message: the form, the preview of exactly what will be sent, and sending it once.

The server keeps the previewed draft under a random token and sends exactly that text when
the operator confirms. The send carries the draft's own idempotency key, so a second
confirmation of the same draft (a double click, a resent form) returns the first message and
sends nothing more; the draft is forgotten only once the station took it, so a send the
station refuses (a FLASH refused on an unverified line, a line that closed) keeps its text
on the preview page. Drafts expire after an hour and are bounded in number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from backchannel.console.login import new_token
from backchannel.console.pages import Pages
from backchannel.console.views import release_scope
from backchannel.errors import BackchannelError, UnknownLine, UnknownMessage
from backchannel.proto.payloads import MAX_TEXT_BYTES
from backchannel.station.config import PRECEDENCES
from backchannel.station.operators import Session
from backchannel.station.views import DraftView, LineView

if TYPE_CHECKING:
    from backchannel.console.app import Console

DRAFT_SECONDS = 3600.0
MAX_DRAFTS = 1000


@dataclass(frozen=True)
class Draft:
    operator: str
    line_id: str
    precedence: str
    text: str
    created_at: float
    #: The idempotency key of this draft's send: a second confirmation returns the first message.
    key: str = field(default_factory=lambda: "console-" + new_token()[:32])


class ComposePages(Pages):
    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._drafts: dict[str, Draft] = {}

    async def compose_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        draft = self._drafts.get(request.query_params.get("draft", ""))
        if draft is not None and (draft.operator != session.operator or draft.line_id != line.line_id):
            draft = None
        return self._compose(
            session, line.line_id, draft.text if draft else "", draft.precedence if draft else "ROUTINE"
        )

    def _compose(
        self, session: Session, line_id: str, text: str, precedence: str, error: str = "", status: int = 200
    ) -> Response:
        line = self.station.line(line_id)
        return self.render(
            "compose.html",
            session,
            status,
            title=f"Compose on {line.name}",
            nav="lines",
            line=line,
            text=text,
            precedence=precedence,
            precedences=PRECEDENCES,
            deadlines=self.station.config.deadlines_for(line.name),
            error=error,
            max_bytes=MAX_TEXT_BYTES,
        )

    async def preview(self, request: Request, session: Session, form: FormData | None) -> Response:
        assert form is not None
        line = self.station.line(request.path_params["line"])
        text = str(form.get("text") or "").replace("\r\n", "\n").replace("\r", "\n")
        precedence = str(form.get("precedence") or "")
        error = ""
        if precedence not in PRECEDENCES:
            error, precedence = "Choose a precedence.", "ROUTINE"
        elif not text.strip():
            error = "The message is empty."
        elif len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            error = f"The message is longer than {MAX_TEXT_BYTES} bytes; split it into several."
        if error:
            return self._compose(session, line.line_id, text, precedence, error, 400)
        token = new_token()
        self._prune_drafts()
        self._drafts[token] = draft = Draft(session.operator, line.line_id, precedence, text, time.time())
        return self._preview(session, line, token, draft)

    def _preview(
        self, session: Session, line: LineView, token: str, draft: Draft, error: str = "", status: int = 200
    ) -> Response:
        return self.render(
            "preview.html",
            session,
            status,
            title=f"Preview on {line.name}",
            nav="lines",
            line=line,
            draft=token,
            text=draft.text,
            precedence=draft.precedence,
            size=len(draft.text.encode("utf-8")),
            deadline=self.station.config.deadlines_for(line.name).get(draft.precedence),
            held=self.station.config.needs_release(line.name, draft.precedence),
            release_scope=release_scope(self.station, line.name),
            confirm_unverified=needs_unverified_confirmation(line, draft.precedence),
            error=error,
        )

    def _prune_drafts(self) -> None:
        cutoff = time.time() - DRAFT_SECONDS
        for key in [k for k, d in self._drafts.items() if d.created_at < cutoff]:
            del self._drafts[key]
        while len(self._drafts) >= MAX_DRAFTS:
            del self._drafts[next(iter(self._drafts))]

    async def send(self, request: Request, session: Session, form: FormData | None) -> Response:
        assert form is not None
        line = self.station.line(request.path_params["line"])
        draft = self._drafts.get(str(form.get("draft") or ""))
        if draft is None or draft.operator != session.operator or draft.line_id != line.line_id:
            return self.refused(
                session,
                409,
                "Not sent",
                "This draft was already sent, or it has expired. Nothing was sent now. "
                "Check the conversation before writing it again.",
            )
        confirmed = ""
        if needs_unverified_confirmation(line, draft.precedence):
            if form.get("unverified") != "yes":  # the draft is kept: the operator may still confirm
                error = (
                    f"Not sent: line {line.name} is not verified. Tick the box to confirm you send this "
                    "FLASH anyway, or compare the safety number first."
                )
                return self._preview(session, line, str(form.get("draft")), draft, error, 400)
            confirmed = " (line not verified: sent anyway, confirmed)"
        token = str(form.get("draft"))
        try:
            sent = await self.station.send(
                line.line_id,
                draft.text,
                draft.precedence,
                operator=session.operator,
                idempotency_key=draft.key,
            )
        except (UnknownLine, UnknownMessage):
            raise
        except BackchannelError as exc:  # refused by the station: the draft is kept, so is its text
            return self._preview(session, line, token, draft, f"Not sent: {exc}", 400)
        self._drafts.pop(token, None)
        if isinstance(sent, DraftView):
            self.audit(
                session,
                "draft",
                f"{line.name} {sent.precedence} held for release as draft {sent.id}{confirmed}",
            )
            return RedirectResponse(f"/line/{line.line_id}?held={sent.id}#draft-{sent.id}", 303)
        self.audit(session, "send", f"{line.name}:{sent.seq} {draft.precedence}{confirmed}")
        return RedirectResponse(f"/line/{line.line_id}?sent={sent.seq}", 303)


def needs_unverified_confirmation(line: LineView, precedence: str) -> bool:
    """A FLASH on a line whose safety number nobody compared needs the operator's explicit yes.

    Until the operators compared the safety number, a party that sat between the stations at
    pairing could read and change the traffic; a FLASH is the message most worth that attack,
    and the one most likely to be sent in haste. Other precedences get the warning only.
    """
    return precedence == "FLASH" and not line.verified
