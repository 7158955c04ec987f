"""The console's Lines page shows each circuit's cover traffic and what it costs (issue 11).

Two real stations and a real relay; washington's operator turns cover on for the line with the
real CLI (``line cover moscow --rate 10``: the test stations start with cover off), then the
page, fetched over plain HTTP as logged in, shows the rate, the frames sent real and cover, and
the bytes per second out and in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from support.console import World, fetch, http_login, log_in, running_world, shot
from support.figures import figure
from support.stations import wait_until


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("cover"), {"chief": "operator"}) as world:
        yield world


def test_the_lines_page_shows_each_circuits_cover_rate_frames_and_bandwidth(world: World) -> None:
    turned = world.washington.cli("line", "cover", world.w_line, "--rate", "10", "--json")
    assert turned.returncode == 0, turned.stderr
    assert json.loads(turned.stdout)["rate"] == 10.0

    def circuit() -> dict[str, object]:
        return dict(world.washington.call("line", name=world.w_line)["circuits"][0])

    wait_until("cover frames to go out", lambda: int(str(circuit()["sent_cover"])) >= 10, timeout=30)
    cookies = http_login(world.washington, "chief")
    page = fetch(f"{world.washington.console_url}/", cookies=cookies)
    assert page.status == 200, page.body
    cell = re.search(r'data-label="Cover traffic" class="cover cover-(\w+)">([^<]*)', page.body)
    assert cell is not None, page.body
    assert cell.group(1) in ("full", "idle") and "10/s" in page.body
    frames = re.search(r'data-label="Frames sent \(real / cover\)">(\d+) / (\d+)<', page.body)
    assert frames is not None and int(frames.group(2)) >= 10
    rates = re.search(r'data-label="Out / in">([\d.]+) / ([\d.]+) kB/s', page.body)
    assert rates is not None and float(rates.group(1)) > 0
    figure("console: cover frames shown for the circuit", int(frames.group(2)), "frames")
    figure("console: bytes out shown", float(rates.group(1)), "kB/s")
    # moscow, still at its own default of the tests (cover off), shows "off" for its circuit
    m_page = fetch(f"{world.moscow.console_url}/", cookies=http_login(world.moscow, "ivanova"))
    assert 'class="cover cover-off">off' in m_page.body


def test_the_browser_shows_the_cover_columns_on_the_lines_page(
    world: World, contexts: Any, screenshots: Path
) -> None:
    """The same figures as a duty officer sees them (and the README's screenshot of them)."""
    turned = world.washington.cli("line", "cover", world.w_line, "--rate", "10", "--json")
    assert turned.returncode == 0, turned.stderr
    page = log_in(contexts(), world.washington, "chief")
    lines = page.locator("#lines")
    expect(lines).to_contain_text("UP")
    cover = lines.locator('[data-label="Cover traffic"]').first
    expect(cover).to_contain_text("10/s")
    expect(lines.locator('[data-label="Out / in"]').first).to_contain_text("kB/s")
    shot(page, screenshots, "cover")
