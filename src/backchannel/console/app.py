"""The operator console: a web application served by the station for its duty officers.

Theory of operation
-------------------
Pages are rendered on the server (Starlette + Jinja2) from the :class:`Station` facade, which
the console calls directly: it runs on the station's own event loop, in the station process.
Forms are plain HTML forms (POST, then a redirect), so every action works without scripts.
One small script (``static/console.js``) listens to ``/events`` (server-sent events) and, when
the station's state changes, fetches the page again and swaps the regions marked
``data-live``: new messages, receipts and alarms appear without a reload.

Every page but ``/login``, ``/health`` and the static files needs a session
(:mod:`backchannel.station.operators`); every POST needs the session's CSRF token; every
action is checked against the operator's role and written to the audit log as that operator.
Sending goes through a preview: the server keeps the draft and sends exactly what was shown.

Release authority (the two-person rule) is the station's: on a line configured for it, the
station holds a FLASH (or every) message as a draft *awaiting release* instead of sending it,
and refuses a release by the drafter. The console names the drafter (the logged-in operator),
shows held drafts in the conversation and on the Release page, offers the Release button only
to operators whose role allows it (and not to the drafter), and shows the station's refusals.

This module wires the pages together and holds what every page needs (the session check,
rendering, the live feed); each group of pages is a module of its own (login, lines, compose,
release, verification, transcript, alarms, admin).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from backchannel.console.admin import AdminPages
from backchannel.console.alarms import AlarmPages
from backchannel.console.auth import (
    DEVICE_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    allowed,
    cookie_name,
    csrf_ok,
    same_origin,
)
from backchannel.console.compose import ComposePages
from backchannel.console.feed import ChangeFeed
from backchannel.console.guard import Guard
from backchannel.console.lines import LinePages
from backchannel.console.login import LoginPages
from backchannel.console.pages import Handler
from backchannel.console.release import ReleasePages
from backchannel.console.settings import ConsoleSettings
from backchannel.console.templating import environment
from backchannel.console.transcript import TranscriptPages
from backchannel.console.verification import VerificationPages
from backchannel.console.views import unacknowledged_flash
from backchannel.errors import BackchannelError, UnknownLine, UnknownMessage
from backchannel.station.operators import Operators, Session
from backchannel.station.station import Station

log = logging.getLogger("backchannel.console")
STATIC = Path(__file__).parent / "static"


class Console:
    """The console of one station; :meth:`app` is the ASGI application."""

    def __init__(self, station: Station, operators: Operators, settings: ConsoleSettings, port: int) -> None:
        self.station = station
        self.operators = operators
        self.settings = settings
        self.port = port
        self.templates = environment()
        self.feed = ChangeFeed(self.snapshot)
        self.session_cookie = cookie_name(SESSION_COOKIE, port)
        self.login_cookie = cookie_name(LOGIN_COOKIE, port)
        self.device_cookie = cookie_name(DEVICE_COOKIE, port)
        self.keepalive = 5.0

    def app(self) -> ASGIApp:
        g = self.guarded
        login, lines, compose = LoginPages(self), LinePages(self), ComposePages(self)
        release, verification = ReleasePages(self), VerificationPages(self)
        transcript, alarms, admin = TranscriptPages(self), AlarmPages(self), AdminPages(self)
        routes = [
            Route("/health", login.health),
            Route("/login", login.login_page, methods=["GET"]),
            Route("/login", login.login, methods=["POST"]),
            Route("/logout", g("read", login.logout), methods=["POST"]),
            Route("/", g("read", lines.lines_page)),
            Route("/line/{line}", g("read", lines.line_page)),
            Route("/line/{line}/compose", g("send", compose.compose_page)),
            Route("/line/{line}/preview", g("send", compose.preview), methods=["POST"]),
            Route("/line/{line}/send", g("send", compose.send), methods=["POST"]),
            Route("/line/{line}/ack/{seq:int}", g("acknowledge", lines.ack), methods=["POST"]),
            Route("/line/{line}/verify", g("read", verification.verify_page), methods=["GET"]),
            Route("/line/{line}/verify", g("verify", verification.verify), methods=["POST"]),
            Route("/line/{line}/transcript", g("read", transcript.transcript_page)),
            Route("/line/{line}/transcript/export", g("read", transcript.transcript_export)),
            Route("/release", g("read", release.release_page)),
            Route("/release/{draft}", g("release", release.release), methods=["POST"]),
            Route("/alarms", g("read", alarms.alarms_page)),
            Route("/alarms/{alarm}/ack", g("alarm_ack", alarms.alarm_ack), methods=["POST"]),
            Route("/circuits/{proposal}/{verdict}", g("operators", alarms.circuit_verdict), methods=["POST"]),
            Route("/audit", g("audit", admin.audit_page)),
            Route("/operators", g("operators", admin.operators_page)),
            Route("/events", self.events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        app = Starlette(routes=routes, exception_handlers={404: self.not_found, 405: self.not_found})
        return Guard(app, self.settings.host)

    async def close(self) -> None:
        await self.feed.close()

    # ---- plumbing ------------------------------------------------------------------------------

    def snapshot(self) -> object:
        """What the live pages show, for the change feed's digest."""
        s = self.station
        return [
            [v.to_json() for v in s.lines()],
            [(m.line, m.seq, m.status, m.acknowledged_by) for m in s.outbox(limit=50)],
            [(m.line, m.seq, m.status, m.acknowledged_by) for m in s.inbox(limit=50)],
            [(a.id, a.state, a.acknowledged_by) for a in s.list_alarms(include_cleared=True)],
            [(d.id, d.status) for d in s.drafts()],
        ]  # a FLASH arriving or acknowledged changes its line's counts above: the banner follows

    def render(
        self, template: str, session: Session | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        base = {
            "station_name": self.station.name,
            "operator": session,
            "csrf": session.csrf if session else "",
            "can": (lambda p: session is not None and allowed(session.role, p)),
            "open_alarms": len(self.station.list_alarms()) if session else 0,
            "awaiting_release": len(self.station.drafts()) if session else 0,
            "flashes": unacknowledged_flash(self.station) if session else [],
            "flash_sound": self.settings.flash_sound,
            "nav": "",
            "now": time.time(),
        }
        html = self.templates.get_template(template).render({**base, **context})
        return HTMLResponse(html, status, headers={"cache-control": "no-store"})

    def refused(self, session: Session | None, status: int, title: str, message: str) -> HTMLResponse:
        return self.render("refused.html", session, status, title=title, message=message)

    def guarded(self, permission: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a page: a live session, the role's permission, and on POST the CSRF token."""

        async def endpoint(request: Request) -> Response:
            token = request.cookies.get(self.session_cookie)
            session = self.operators.session(token)
            if session is None:
                if request.method == "GET":
                    query = {
                        "next": request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    }
                    if token:
                        query["expired"] = "1"
                    response: Response = RedirectResponse("/login?" + urlencode(query), 303)
                else:
                    response = self.refused(
                        None,
                        401,
                        "Session expired",
                        "You are not logged in, or your session has expired. Nothing was done. "
                        "Log in again, then repeat the action.",
                    )
                if token:
                    response.delete_cookie(self.session_cookie, path="/")
                return response
            if not allowed(session.role, permission):
                if permission == "release":  # every refused release is audited, this one too
                    draft = str(request.path_params.get("draft", ""))[:32]
                    self.audit(
                        session, "release_refused", f"draft {draft}: role {session.role} (via console)"
                    )
                return self.refused(
                    session, 403, "Not allowed", f"Your role ({session.role}) does not allow this."
                )
            form: FormData | None = None
            if request.method == "POST":
                form = await request.form()
                if not same_origin(request.headers.get("origin"), request.headers.get("host")) or not csrf_ok(
                    session.csrf, form.get("csrf")
                ):
                    return self.refused(
                        session,
                        403,
                        "Form refused",
                        "This form was refused: its security token is missing or out of date, so it "
                        "may not have come from this console. Nothing was done. "
                        "Go back, reload the page and try again.",
                    )
            try:
                return await handler(request, session, form)
            except (UnknownLine, UnknownMessage) as exc:
                return self.refused(session, 404, "Not found", str(exc))
            except BackchannelError as exc:
                return self.refused(session, 400, "Not done", str(exc))

        return endpoint

    async def not_found(self, request: Request, exc: Exception) -> Response:
        session = self.operators.session(request.cookies.get(self.session_cookie))
        return self.refused(session, 404, "Not found", "There is no such page on this console.")

    def audit(self, session: Session, action: str, detail: str = "") -> None:
        self.operators.record(session.operator, action, detail)

    # ---- live updates -------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        token = request.cookies.get(self.session_cookie)
        if self.operators.session(token) is None:
            return PlainTextResponse("log in first", 401)

        async def stream() -> Any:
            yield "retry: 2000\n\n"
            async for changed in self.feed.changes(self.keepalive):
                if self.operators.session(token) is None:
                    yield "event: expired\ndata: {}\n\n"
                    return
                yield f"event: change\ndata: {self.feed.version}\n\n" if changed else ": keepalive\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )
