"""Browser tests of the operator console: Playwright driving Debian's chromium, headless.

A real relay and two real station processes (washington and moscow, paired) serve their
consoles on free ports of 127.0.0.1; the tests log in as the stations' operators, each in its
own browser context (its own cookies), as two duty officers on two machines would.

Chromium is Debian's (``apt-get install chromium``; ``make test`` installs it when missing),
never a browser Playwright downloads. Screenshots go to ``$BACKCHANNEL_SCREENSHOTS`` when it is
set (``make screenshots`` sets it to ``docs/images``), else to a temporary directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, expect, sync_playwright

from support.console import VIEWPORT, World, running_world

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")

expect.set_options(timeout=15_000)


def chromium_path() -> str:
    for path in CHROMIUM_PATHS:
        if Path(path).exists():
            return path
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail("Debian's chromium is not installed: `apt-get install -y chromium` (make test does it)")


# Module scope, not session: while Playwright's sync API is active, an asyncio loop counts as
# running in this thread, and tests elsewhere that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Any]:
    """``contexts()`` opens a fresh browser context (its own cookies); all closed after."""
    opened: list[BrowserContext] = []

    def new() -> BrowserContext:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        opened.append(context)
        return context

    yield new
    for context in opened:
        context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("BACKCHANNEL_SCREENSHOTS")
    directory = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    operators = {"smith": "operator", "chief": "admin", "victim": "operator"}
    with running_world(tmp_path_factory.mktemp("console"), operators) as world:
        yield world


@pytest.fixture(scope="module")
def release_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Washington's line to moscow under the two-person rule for FLASH (set before it starts)."""
    operators = {"smith": "operator", "jones": "releaser", "chief": "admin"}
    rule = '[station.lines.moscow]\nrelease = "flash"\n'
    with running_world(tmp_path_factory.mktemp("release"), operators, rule) as world:
        yield world
