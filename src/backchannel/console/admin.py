"""Administrators' pages: the audit log and the operator accounts (managed at the station)."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from backchannel.console.pages import Pages
from backchannel.station.operators import Session


class AdminPages(Pages):
    async def audit_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        entries = self.operators.audit_log(500)
        return self.render("audit.html", session, title="Audit log", nav="audit", entries=entries)

    async def operators_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        return self.render(
            "operators.html", session, title="Operators", nav="operators", operators=self.operators.all()
        )
