"""Verification: the line's safety number, read aloud by the two operators, and their confirmation."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from backchannel.console.pages import Pages
from backchannel.errors import InvalidArgument
from backchannel.station.operators import Session


class VerificationPages(Pages):
    async def verify_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        view = self.station.verify(line.line_id)
        return self.render(
            "verify.html", session, title=f"Verify {line.name}", nav="lines", line=line, v=view
        )

    async def verify(self, request: Request, session: Session, form: FormData | None) -> Response:
        assert form is not None
        line = self.station.line(request.path_params["line"])
        if form.get("match") != "yes":
            raise InvalidArgument(
                "tick the box to say you read the digits aloud with the other station and they match"
            )
        if not line.verified:
            self.station.verify(line.line_id, confirm=True)
            self.audit(session, "verify_confirm", line.name)
        return RedirectResponse(f"/line/{line.line_id}/verify", 303)
