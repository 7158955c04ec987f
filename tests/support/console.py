"""Helpers for the console's browser tests: stations with consoles, logging in, plain HTTP.

The fixtures are in ``tests/console/conftest.py``; these are the pieces the tests call.
"""

from __future__ import annotations

import contextlib
import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from playwright.sync_api import BrowserContext, Page, expect

from support.relays import RelayProcess, start_relay
from support.stations import ENV, StationProcess, cli, pair

VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "duty officer password"
INTERVAL = 1.0  # link tests every second, so health and alarms move at test speed
LOCKOUT_ATTEMPTS = 3


@dataclass
class World:
    relay: RelayProcess
    washington: StationProcess
    moscow: StationProcess
    w_line: str  # washington's name for the line (to moscow)
    m_line: str
    directory: Path

    def line_id(self, station: StationProcess, line: str) -> str:
        return str(station.call("line", name=line)["line_id"])


def add_operator(station: StationProcess, name: str, role: str) -> None:
    env = {**ENV, "BACKCHANNEL_OPERATOR_PASSWORD": PASSWORD}
    result = cli(station.home, "operator", "add", name, "--role", role, env=env)
    assert result.returncode == 0, result.stderr


def console_station(
    directory: Path, name: str, console_toml: str = "", station_toml: str = ""
) -> StationProcess:
    """A station (not started) serving its console; ``station_toml`` adds tables under [station]."""
    station = StationProcess(directory, name, console=True)
    (station.home / "station.toml").write_text(
        f"[station]\nlink_test_interval = {INTERVAL}\n\n{station_toml}\n"
        f"[console]\nlockout_attempts = {LOCKOUT_ATTEMPTS}\n" + console_toml
    )
    return station


def log_in(context: BrowserContext, station: StationProcess, name: str, password: str = PASSWORD) -> Page:
    page = context.new_page()
    page.goto(f"{station.console_url}/login")
    page.get_by_label("Operator name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Lines", exact=True)).to_be_visible()
    return page


def mark_page(page: Page) -> None:
    """A marker that survives live updates but not a reload."""
    page.evaluate("window.__notReloaded = true")


def still_same_page(page: Page) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def shot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: str
    set_cookie: list[str] = field(default_factory=list)  # every Set-Cookie header, attributes included


def fetch(
    url: str,
    method: str = "GET",
    form: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> Reply:
    """One plain HTTP request, no redirects followed, as a script (not a browser) would send it.

    ``source`` is the local address to connect from (any of 127.0.0.0/8 is loopback).
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1",
        parts.port,
        timeout=15,
        source_address=(source, 0) if source else None,
    )
    sent = dict(headers or {})
    if cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = None
    if form is not None:
        body = urlencode(form)
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path or "/", body=body, headers=sent)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        jar = {}
        set_cookie = [value for key, value in response.getheaders() if key.lower() == "set-cookie"]
        for value in set_cookie:
            name, _, rest = value.partition("=")
            jar[name] = rest.split(";", 1)[0]
        headers_seen = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, headers_seen, jar, text, set_cookie)
    finally:
        conn.close()


def http_login(station: StationProcess, name: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in with plain HTTP; returns the cookies of the new session."""
    page = fetch(f"{station.console_url}/login")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.body)
    assert token is not None
    done = fetch(
        f"{station.console_url}/login",
        "POST",
        {"csrf": token.group(1), "name": name, "password": password, "next": "/"},
        cookies=page.cookies,
    )
    assert done.status == 303, done.body
    return {k: v for k, v in done.cookies.items() if k.startswith("bc_session") and v}


def csrf_of(body: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
    assert found is not None
    return found.group(1)


@contextlib.contextmanager
def running_world(
    directory: Path,
    washington_operators: dict[str, str],
    washington_toml: str = "",
    washington_console: str = "",
) -> Iterator[World]:
    """A relay and two paired stations with consoles: washington (its line: "moscow") and moscow.

    ``washington_toml`` adds to washington's ``[station]`` table, ``washington_console`` to its
    ``[console]`` table.
    """
    started: list[Any] = []
    try:
        relay = start_relay(directory)
        started.append(relay)
        washington = console_station(
            directory, "washington", console_toml=washington_console, station_toml=washington_toml
        )
        moscow = console_station(directory, "moscow")
        for name, role in washington_operators.items():
            add_operator(washington, name, role)
        add_operator(moscow, "ivanova", "operator")
        for station in (washington, moscow):
            station.start()
            started.append(station)
            assert station.console_url, "the station did not print its console address"
        w_line, m_line = pair(washington, moscow, relay.url, inviter_line="moscow")
        yield World(relay, washington, moscow, w_line, m_line, directory)
    finally:
        for process in reversed(started):
            process.stop()
