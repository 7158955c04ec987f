"""Logging in and out: the login form, its own CSRF token, throttled failures, the session cookie."""

from __future__ import annotations

import secrets

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from backchannel.console.auth import csrf_ok, safe_next, same_origin
from backchannel.console.pages import Pages
from backchannel.station.operators import LoginRefused, LoginThrottled, Session

LOGIN_COOKIE_SECONDS = 3600
DEVICE_COOKIE_SECONDS = 30 * 86400


class LoginPages(Pages):
    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def login_page(self, request: Request) -> Response:
        if self.operators.session(request.cookies.get(self.console.session_cookie)) is not None:
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
            self.console.login_cookie,
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
            request.cookies.get(self.console.login_cookie), form.get("csrf")
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
                name, password, address, request.cookies.get(self.console.device_cookie)
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
            self.console.session_cookie, token, path="/", httponly=True, samesite="strict", secure=secure
        )
        response.set_cookie(
            self.console.device_cookie,
            self.operators.remember_device(operator.name),
            max_age=DEVICE_COOKIE_SECONDS,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        response.delete_cookie(self.console.login_cookie, path="/login")
        return response

    async def logout(self, request: Request, session: Session, form: FormData | None) -> Response:
        self.operators.close_session(request.cookies.get(self.console.session_cookie, ""))
        self.audit(session, "logout")
        response = RedirectResponse("/login?bye=1", 303)
        response.delete_cookie(self.console.session_cookie, path="/")
        return response


def over_tls(request: Request) -> bool:
    """Whether the browser reached the console over TLS: then every cookie is ``Secure``.

    The console itself speaks plain HTTP; TLS ends at a proxy in front of it. The scheme is
    ``https`` only when that proxy is listed in ``[console] trusted_proxies`` and says so in
    ``X-Forwarded-Proto`` (uvicorn's proxy-headers middleware applies it; see server.py).
    """
    return request.url.scheme == "https"


def new_token() -> str:
    return secrets.token_hex(32)
