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
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backchannel.console.auth import (
    DEVICE_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    allowed,
    cookie_name,
    csrf_ok,
    host_allowed,
    safe_next,
    same_origin,
)
from backchannel.console.feed import ChangeFeed
from backchannel.console.settings import ConsoleSettings
from backchannel.console.templating import environment
from backchannel.errors import (
    BackchannelError,
    InvalidArgument,
    LineNotReady,
    ReleaseRefused,
    UnknownLine,
    UnknownMessage,
)
from backchannel.proto.payloads import MAX_TEXT_BYTES
from backchannel.station.config import PRECEDENCES
from backchannel.station.operators import LoginRefused, LoginThrottled, Operators, Session, UnknownOperator
from backchannel.station.relay_url import shown
from backchannel.station.station import Station
from backchannel.station.views import DraftView, MessageView

log = logging.getLogger("backchannel.console")
STATIC = Path(__file__).parent / "static"
DRAFT_SECONDS = 3600.0
MAX_DRAFTS = 1000
LOGIN_COOKIE_SECONDS = 3600
DEVICE_COOKIE_SECONDS = 30 * 86400

Handler = Callable[[Request, Session, FormData | None], Awaitable[Response]]

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
        b" form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make POSTs say Origin: null
]


@dataclass(frozen=True)
class Draft:
    operator: str
    line_id: str
    precedence: str
    text: str
    created_at: float


class Guard:
    """ASGI middleware: refuse foreign Host headers; add security headers to every response."""

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app, self.host = app, host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host_allowed(host, self.host):
            await PlainTextResponse("unknown host", 421)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
        self._drafts: dict[str, Draft] = {}

    def app(self) -> ASGIApp:
        g = self.guarded
        routes = [
            Route("/health", self.health),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", g("read", self.logout), methods=["POST"]),
            Route("/", g("read", self.lines_page)),
            Route("/line/{line}", g("read", self.line_page)),
            Route("/line/{line}/compose", g("send", self.compose_page)),
            Route("/line/{line}/preview", g("send", self.preview), methods=["POST"]),
            Route("/line/{line}/send", g("send", self.send), methods=["POST"]),
            Route("/line/{line}/ack/{seq:int}", g("acknowledge", self.ack), methods=["POST"]),
            Route("/line/{line}/verify", g("read", self.verify_page), methods=["GET"]),
            Route("/line/{line}/verify", g("verify", self.verify), methods=["POST"]),
            Route("/line/{line}/transcript", g("read", self.transcript_page)),
            Route("/line/{line}/transcript/export", g("read", self.transcript_export)),
            Route("/release", g("read", self.release_page)),
            Route("/release/{draft}", g("release", self.release), methods=["POST"]),
            Route("/alarms", g("read", self.alarms_page)),
            Route("/alarms/{alarm}/ack", g("alarm_ack", self.alarm_ack), methods=["POST"]),
            Route("/circuits/{proposal}/{verdict}", g("operators", self.circuit_verdict), methods=["POST"]),
            Route("/audit", g("audit", self.audit_page)),
            Route("/operators", g("operators", self.operators_page)),
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
        ]

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

    def _line_id(self, request: Request) -> str:
        return self.station.line(request.path_params["line"]).line_id

    # ---- logging in and out -----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def login_page(self, request: Request) -> Response:
        if self.operators.session(request.cookies.get(self.session_cookie)) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        notice = ""
        if request.query_params.get("expired"):
            notice = "Your session has expired. Log in again."
        elif request.query_params.get("bye"):
            notice = "You are logged out."
        return self._login_form(request, notice=notice, next_path=safe_next(request.query_params.get("next")))

    def _login_form(
        self,
        request: Request,
        *,
        status: int = 200,
        error: str = "",
        notice: str = "",
        next_path: str = "/",
        name: str = "",
    ) -> Response:
        token = new_token()
        response = self.render(
            "login.html",
            None,
            status,
            title="Log in",
            login_csrf=token,
            error=error,
            notice=notice,
            next_path=next_path,
            name=name,
        )
        response.set_cookie(
            self.login_cookie,
            token,
            max_age=LOGIN_COOKIE_SECONDS,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=over_tls(request),
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name") or "").strip()
        password = str(form.get("password") or "")
        next_path = safe_next(form.get("next"))
        if not same_origin(request.headers.get("origin"), request.headers.get("host")) or not csrf_ok(
            request.cookies.get(self.login_cookie), form.get("csrf")
        ):
            return self.refused(
                None,
                403,
                "Form refused",
                "The login form was refused: its security token is missing or out of date. "
                "Reload the login page and try again.",
            )
        # The same answer, in the same time, whether the name exists or not (see Operators);
        # failures are slowed per (name, address), or per browser once it has logged in as name.
        address = request.client.host if request.client else ""
        try:
            operator = await self.operators.authenticate(
                name, password, address, request.cookies.get(self.device_cookie)
            )
        except LoginThrottled as exc:
            self.operators.record(name[:64] or "?", "login_throttled", f"from {address}")
            return self._login_form(request, status=429, error=str(exc), next_path=next_path, name=name)
        except LoginRefused:
            known = any(o.name == name for o in self.operators.all())
            detail = f"from {address}" + ("" if known else ", no such operator")
            self.operators.record(name[:64] or "?", "login_failed", detail)
            return self._login_form(
                request, status=401, error="Wrong operator name or password.", next_path=next_path, name=name
            )
        token, session = self.operators.open_session(operator.name)
        self.audit(session, "login")
        response = RedirectResponse(next_path, 303)
        secure = over_tls(request)
        # No Max-Age: the server decides when a session ends, so it can say so plainly.
        response.set_cookie(
            self.session_cookie, token, path="/", httponly=True, samesite="strict", secure=secure
        )
        response.set_cookie(
            self.device_cookie,
            self.operators.remember_device(operator.name),
            max_age=DEVICE_COOKIE_SECONDS,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        response.delete_cookie(self.login_cookie, path="/login")
        return response

    async def logout(self, request: Request, session: Session, form: FormData | None) -> Response:
        self.operators.close_session(request.cookies.get(self.session_cookie, ""))
        self.audit(session, "logout")
        response = RedirectResponse("/login?bye=1", 303)
        response.delete_cookie(self.session_cookie, path="/")
        return response

    # ---- lines and messages ------------------------------------------------------------------------

    async def lines_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        lines = self.station.lines()
        held: dict[str, int] = {}
        for d in self.station.drafts():
            held[d.line] = held.get(d.line, 0) + 1
        return self.render(
            "lines.html",
            session,
            title="Lines",
            nav="lines",
            lines=lines,
            held=held,
            release_scope=self._release_scope,
        )

    async def line_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        oldest_first = request.query_params.get("order") == "oldest"
        messages = self.station.inbox(line.line_id, limit=200) + self.station.outbox(line.line_id, limit=200)
        entries: list[tuple[float, MessageView | DraftView]] = [(_local_time(m), m) for m in messages]
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
                f"{self._release_scope(line.name)}. It is shown below as awaiting release; "
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
            local_time=_local_time,
        )

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
        self._drafts[token] = Draft(session.operator, line.line_id, precedence, text, time.time())
        return self.render(
            "preview.html",
            session,
            title=f"Preview on {line.name}",
            nav="lines",
            line=line,
            draft=token,
            text=text,
            precedence=precedence,
            size=len(text.encode("utf-8")),
            deadline=self.station.config.deadlines_for(line.name).get(precedence),
            held=self.station.config.needs_release(line.name, precedence),
            release_scope=self._release_scope(line.name),
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
        del self._drafts[str(form.get("draft"))]
        sent = await self.station.send(line.line_id, draft.text, draft.precedence, operator=session.operator)
        if isinstance(sent, DraftView):
            self.audit(session, "draft", f"{line.name} {sent.precedence} held for release as draft {sent.id}")
            return RedirectResponse(f"/line/{line.line_id}?held={sent.id}#draft-{sent.id}", 303)
        self.audit(session, "send", f"{line.name}:{sent.seq} {draft.precedence}")
        return RedirectResponse(f"/line/{line.line_id}?sent={sent.seq}", 303)

    def _held_here(self, draft_id: str, line_name: str) -> bool:
        """Whether ``draft_id`` names a draft of this line (for the notice after drafting)."""
        if not draft_id:
            return False
        try:
            return self.station.draft(draft_id).line == line_name
        except UnknownMessage:
            return False

    def _release_scope(self, line_name: str) -> str:
        """What a line's two-person rule holds, in words: "FLASH messages", "every message"."""
        rule = self.station.config.line_release.get(line_name, "none")
        return {"flash": "FLASH messages", "all": "every message"}.get(rule, "")

    # ---- release authority ----------------------------------------------------------------------

    async def release_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        drafts = self.station.drafts()
        lines = {line.name: line for line in self.station.lines()}
        return self.render(
            "release.html",
            session,
            title="Release",
            nav="release",
            drafts=drafts,
            lines=lines,
            rules=[(name, self._release_scope(name)) for name in lines],
        )

    async def release(self, request: Request, session: Session, form: FormData | None) -> Response:
        draft_id = request.path_params["draft"]
        try:  # the station checks the two-person rule and writes the audit row, refusal or release
            sent = await self.station.release_as(draft_id, session.operator, via="console")
        except (InvalidArgument, LineNotReady, UnknownMessage, ReleaseRefused, UnknownOperator) as exc:
            status = 404 if isinstance(exc, UnknownMessage) else 409 if isinstance(exc, LineNotReady) else 403
            return self.refused(session, status, "Not released", f"{_sentence(str(exc))} Nothing was sent.")
        line_id = self.station.line(sent.line).line_id
        return RedirectResponse(f"/line/{line_id}?released={sent.seq}#out-{sent.seq}", 303)

    async def ack(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        seq = int(request.path_params["seq"])
        before = self.station.message(line.line_id, seq, "in")
        await self.station.ack(line.line_id, seq, session.operator)
        if before.acknowledged_at is None:
            self.audit(session, "acknowledge", f"{line.name}:{seq} {before.precedence}")
        order = "?order=oldest" if form is not None and form.get("order") == "oldest" else ""
        return RedirectResponse(f"/line/{line.line_id}{order}#in-{seq}", 303)

    # ---- verification, transcript ------------------------------------------------------------------

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

    async def transcript_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        view = self.station.transcript(line.line_id)
        record: dict[str, Any] | None = None
        record_error = ""
        checker = getattr(self.station, "verify_transcript", None)
        if callable(checker):
            try:
                record = checker(line.line_id)
            except BackchannelError as exc:
                record_error = str(exc)
        return self.render(
            "transcript.html",
            session,
            title=f"Transcript of {line.name}",
            nav="lines",
            line=line,
            t=view,
            record=record,
            record_error=record_error,
            can_export=callable(getattr(self.station, "export_transcript", None)),
        )

    async def transcript_export(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        exporter = getattr(self.station, "export_transcript", None)
        if not callable(exporter):
            return self.refused(session, 404, "Not available", "Exporting the transcript is not built yet.")
        document = exporter(line.line_id)
        self.audit(session, "transcript_export", line.name)
        filename = "".join(c if c.isalnum() or c in "-_" else "_" for c in line.name)
        return JSONResponse(
            document,
            headers={"content-disposition": f'attachment; filename="transcript-{filename}.json"'},
        )

    # ---- alarms, audit, operators -------------------------------------------------------------------

    async def alarms_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        alarms = self.station.list_alarms(include_cleared=True)
        return self.render(
            "alarms.html",
            session,
            title="Alarms",
            nav="alarms",
            raised=[a for a in alarms if a.state == "raised"],
            cleared=[a for a in alarms if a.state != "raised"][:50],
            # (a relay URL may carry its access token: shown masked, as everywhere)
            proposals=[{**p, "url": shown(str(p["url"]))} for p in self.station.circuit_proposals()],
        )

    async def circuit_verdict(self, request: Request, session: Session, form: FormData | None) -> Response:
        """Approve or reject a circuit the peer proposed (held by ``relay_policy = "ask"``)."""
        proposal, verdict = request.path_params["proposal"], request.path_params["verdict"]
        if verdict == "approve":
            view = await self.station.approve_circuit(proposal)
            detail = f"{proposal} {view.name}"
        elif verdict == "reject":
            result = self.station.reject_circuit(proposal)
            detail = f"{proposal} {result['line']} {shown(str(result['url']))}"
        else:
            return self.refused(session, 404, "Not found", "Approve or reject: nothing else.")
        self.audit(session, f"circuit_{verdict}", detail)
        return RedirectResponse("/alarms", 303)

    async def alarm_ack(self, request: Request, session: Session, form: FormData | None) -> Response:
        alarm_id = request.path_params["alarm"]
        view = self.station.ack_alarm(alarm_id, session.operator)
        if view.acknowledged_by == session.operator:
            self.audit(
                session, "alarm_ack", f"{alarm_id} {view.kind} {view.line or ''} {view.subject}".strip()
            )
        return RedirectResponse("/alarms", 303)

    async def audit_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        entries = self.operators.audit_log(500)
        return self.render("audit.html", session, title="Audit log", nav="audit", entries=entries)

    async def operators_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        return self.render(
            "operators.html", session, title="Operators", nav="operators", operators=self.operators.all()
        )

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


def over_tls(request: Request) -> bool:
    """Whether the browser reached the console over TLS: then every cookie is ``Secure``.

    The console itself speaks plain HTTP; TLS ends at a proxy in front of it. The scheme is
    ``https`` only when that proxy is listed in ``[console] trusted_proxies`` and says so in
    ``X-Forwarded-Proto`` (uvicorn's proxy-headers middleware applies it; see server.py).
    """
    return request.url.scheme == "https"


def new_token() -> str:
    return secrets.token_hex(32)


def _local_time(message: MessageView) -> float:
    """When this station saw the message: sent (queued) here, or received here."""
    if message.direction == "in":
        return message.delivered_at or message.created_at
    return message.created_at


def _sentence(text: str) -> str:
    return (text[:1].upper() + text[1:]).rstrip(".") + "."
