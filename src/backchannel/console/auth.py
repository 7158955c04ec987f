"""The console's web security rules: roles, cookies, CSRF tokens, origins, redirects.

Accounts, password checks, lockout and sessions live in :mod:`backchannel.station.operators`;
this module holds the small decisions the web layer makes around them, as pure functions
so they are unit-tested without a browser.

- **Cookies** are ``HttpOnly`` and ``SameSite=Strict``, so page scripts cannot read them and
  no other site can make the browser send them, and ``Secure`` whenever the browser came over
  TLS (through a trusted proxy: ``[console] trusted_proxies``). Their names carry the console's
  port, because browsers share cookies between ports of one host and two stations may run on
  one machine.
- **CSRF**: every form carries the session's CSRF token (the login form a token of its own,
  double-submitted in a short-lived cookie); a POST whose token is missing or wrong is refused.
  A POST whose ``Origin`` names another site is refused too.
- **Roles** grant permissions; the server checks them on every request, whatever the page shows.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

#: What each role may do. ``release`` is the second operator's approval of a held message.
PERMISSIONS: dict[str, frozenset[str]] = {
    "operator": frozenset({"read", "send", "acknowledge", "verify", "alarm_ack"}),
    "releaser": frozenset({"read", "send", "acknowledge", "verify", "alarm_ack", "release"}),
    "admin": frozenset(
        {"read", "send", "acknowledge", "verify", "alarm_ack", "release", "audit", "operators"}
    ),
}

SESSION_COOKIE = "bc_session"
LOGIN_COOKIE = "bc_login"
#: Marks a browser that logged in as a name before: its failures count apart (see Operators).
DEVICE_COOKIE = "bc_device"


def allowed(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def cookie_name(base: str, port: int) -> str:
    return f"{base}_{port}"


def csrf_ok(expected: str | None, given: object) -> bool:
    """Whether a form's token matches the session's, compared in constant time."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def same_origin(origin: str | None, host: str | None) -> bool:
    """A POST's ``Origin`` (when the browser sent one) must be this console itself."""
    if origin is None:
        return True  # not a browser cross-site request (or an old browser): the token decides
    if origin == "null" or host is None:
        return False
    return urlsplit(origin).netloc == host


def host_allowed(host_header: str | None, bound_host: str) -> bool:
    """Refuse requests for another host name (DNS rebinding) when bound to loopback."""
    if bound_host in ("0.0.0.0", "::", ""):
        return True
    if not host_header:
        return False
    allowed_hosts = {bound_host, "127.0.0.1", "localhost", "[::1]"}
    if ":" in bound_host and not bound_host.startswith("["):
        allowed_hosts.add(f"[{bound_host}]")
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return name.lower() in allowed_hosts


def safe_next(target: object) -> str:
    """Where to go after logging in: a path on this console, never another site."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target) or target.startswith(("/login", "/logout")):
        return "/"
    return target
