"""What every group of console pages shares: the station, the operators, rendering and the audit.

Each page module (login, lines, compose, release, verification, transcript, alarms, admin)
holds one :class:`Pages` subclass; its handlers take ``(request, session, form)`` and are
wrapped by :meth:`Console.guarded`, which has already checked the session, the role's
permission and, on POST, the CSRF token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from backchannel.station.operators import Session

if TYPE_CHECKING:
    from backchannel.console.app import Console

Handler = Callable[[Request, Session, FormData | None], Awaitable[Response]]


class Pages:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.station = console.station
        self.operators = console.operators

    def render(
        self, template: str, session: Session | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        return self.console.render(template, session, status, **context)

    def refused(self, session: Session | None, status: int, title: str, message: str) -> HTMLResponse:
        return self.console.refused(session, status, title, message)

    def audit(self, session: Session, action: str, detail: str = "") -> None:
        self.operators.record(session.operator, action, detail)
