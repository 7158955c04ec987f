"""Attack: a local user fails console logins for an admin's name, and probes which names exist.

Before, five failures for ``alice`` from anywhere locked the *account* for everyone (so any
local user could lock out every admin), and only existing names ever answered "locked" (so
the answer told which names exist). Now failures slow down only that (name, address) or that
browser, with doubling waits; an unknown name gets the very same answers; and cookies are
``Secure`` when a trusted TLS proxy says the browser came over https.

Real station process serving its console on 127.0.0.1; the attacker connects from 127.0.0.2,
the admin from 127.0.0.1 (all of 127/8 is loopback), with plain HTTP as a script would.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.console import LOCKOUT_ATTEMPTS, PASSWORD, add_operator, console_station, csrf_of, fetch
from support.figures import figure
from support.stations import StationProcess

ATTACKER = "127.0.0.2"


@dataclass
class Answer:
    status: int
    body: str
    set_cookie: list[str]
    seconds: float


def log_in(url: str, source: str, name: str, password: str, headers: dict[str, str] | None = None) -> Answer:
    """GET the form (its CSRF token and cookie), then POST the login, from ``source``; timed."""
    page = fetch(f"{url}/login", headers=headers, source=source)
    form = {"csrf": csrf_of(page.body), "name": name, "password": password, "next": "/"}
    started = time.monotonic()
    done = fetch(f"{url}/login", "POST", form, page.cookies, headers, source)
    return Answer(done.status, done.body, done.set_cookie, time.monotonic() - started)


def neutral(answer: Answer, name: str) -> str:
    """The answer's page without what differs by design: the fresh CSRF token, the echoed name."""
    return re.sub(r'value="[0-9a-f]{64}"', 'value="TOKEN"', answer.body).replace(
        f'value="{name}"', 'value="NAME"'
    )


def serve(directory: Path, console_toml: str = "") -> Iterator[str]:
    station: StationProcess = console_station(directory, "alpha", console_toml)
    add_operator(station, "alice", "admin")
    try:
        station.start()
        assert station.console_url is not None
        yield station.console_url
    finally:
        station.stop()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    yield from serve(tmp_path)


@pytest.fixture
def proxied_console(tmp_path: Path) -> Iterator[str]:
    """The console behind a TLS proxy on 127.0.0.1 (the proxy itself is played by the test)."""
    yield from serve(tmp_path, 'trusted_proxies = ["127.0.0.1"]\n')


def test_failed_logins_for_an_admin_from_one_address_do_not_lock_her_out_elsewhere(console: str) -> None:
    answers = [log_in(console, ATTACKER, "alice", f"guess {i}") for i in range(4 * LOCKOUT_ATTEMPTS)]
    throttled = sum(1 for a in answers if a.status == 429)
    figure("attacker's attempts at alice refused unchecked (throttled)", throttled, "of 12")
    assert all(a.status in (401, 429) for a in answers)
    assert throttled >= 4 * LOCKOUT_ATTEMPTS - LOCKOUT_ATTEMPTS - 1  # slowed after the free ones
    assert "Too many failed logins for this name from here" in answers[-1].body

    admin = log_in(console, "127.0.0.1", "alice", PASSWORD)
    figure("alice's login from her own address during the attack (HTTP status)", admin.status)
    assert admin.status == 303, admin.body[:300]


def test_a_login_error_does_not_tell_whether_the_name_exists(console: str) -> None:
    known: list[Answer] = []
    unknown: list[Answer] = []
    for i in range(5):  # each pair from a fresh address: no throttling mixes in
        source = f"127.0.1.{10 + i}"
        known.append(log_in(console, source, "alice", "wrong password"))
        unknown.append(log_in(console, source, "nobody", "wrong password"))
    for k, u in zip(known, unknown, strict=True):
        assert (
            (k.status, neutral(k, "alice")) == (u.status, neutral(u, "nobody")) == (401, neutral(u, "nobody"))
        )
    # Throttled alike too: the answer after the free failures is the same for both names.
    source = "127.0.2.1"
    last = {
        name: [log_in(console, source, name, "wrong") for _ in range(LOCKOUT_ATTEMPTS + 1)][-1]
        for name in ("alice", "nobody")
    }
    assert last["alice"].status == last["nobody"].status == 429
    assert neutral(last["alice"], "alice") == neutral(last["nobody"], "nobody")

    known_ms = statistics.median(a.seconds for a in known) * 1000
    unknown_ms = statistics.median(a.seconds for a in unknown) * 1000
    figure("median failed login, existing name", known_ms, "ms")
    figure("median failed login, unknown name", unknown_ms, "ms")
    assert abs(known_ms - unknown_ms) < max(50.0, 0.5 * max(known_ms, unknown_ms))


def test_cookies_are_secure_when_a_trusted_proxy_says_https(proxied_console: str) -> None:
    console = proxied_console
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    behind_proxy = log_in(console, "127.0.0.1", "alice", PASSWORD, tls)
    assert behind_proxy.status == 303
    assert behind_proxy.set_cookie and all(
        "Secure" in c for c in behind_proxy.set_cookie if "Max-Age=0" not in c
    )
    plain = log_in(console, "127.0.0.1", "alice", PASSWORD)
    assert plain.status == 303 and not any("Secure" in c for c in plain.set_cookie)
    forged = log_in(console, ATTACKER, "alice", PASSWORD, tls)  # not a trusted proxy: headers ignored
    assert forged.status == 303 and not any("Secure" in c for c in forged.set_cookie)
    figure("cookies set Secure behind the TLS proxy", sum("Secure" in c for c in behind_proxy.set_cookie))
