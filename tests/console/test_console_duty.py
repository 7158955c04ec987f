"""The duty officer's day in a real browser (issue 12): FLASH demands attention, unverified lines
warn, and every page works on a phone (390 px wide) as well as at 1280 px.

One world for the module, its tests in order: washington's console has ``flash_sound = true``,
moscow's has the default (no sound). The line stays unverified until the last test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from support.console import (
    World,
    csrf_of,
    fetch,
    http_login,
    log_in,
    mark_page,
    running_world,
    shot,
    still_same_page,
)
from support.figures import figure

FLASH_TEXT = "Unidentified aircraft over the northern sector at 03:10Z. Confirm at once it is not yours."
ROUTINE_TEXT = "Routine: the weekly line test is at 10:00Z."
# A reference with no space to break at: it must wrap, not push the page sideways.
LONG_REFERENCE = "Ref " + "-".join(f"ORDER{n:04d}" for n in range(14)) + " " + "x" * 90
PHONE: ViewportSize = {"width": 390, "height": 844}
WIDE: ViewportSize = {"width": 1280, "height": 800}

# Counts the tones the page starts: the tone is made by the page itself (Web Audio), no file.
COUNT_TONES = """
(() => {
  window.__tones = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones += 1;
    return start.apply(this, args);
  };
})();
"""


@pytest.fixture(scope="module")
def duty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    operators = {"smith": "operator", "chief": "admin"}
    with running_world(
        tmp_path_factory.mktemp("duty"), operators, washington_console="flash_sound = true\n"
    ) as world:
        yield world


def tones(page: Page) -> int:
    return int(page.evaluate("window.__tones"))


# ---- FLASH demands attention ---------------------------------------------------------------------


def test_an_incoming_flash_shows_a_banner_and_the_title_on_every_page_until_acknowledged(
    duty: World, contexts: Any, screenshots: Path
) -> None:
    world = duty
    url = str(world.washington.console_url)
    line_id = world.line_id(world.washington, world.w_line)
    context = contexts()
    context.add_init_script(COUNT_TONES)
    page = log_in(context, world.washington, "smith")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("link", name=re.compile("^Alarms")).click()
    expect(page.locator(".flash-banner")).to_have_count(0)
    mark_page(page)

    world.moscow.call("send", line=world.m_line, text=ROUTINE_TEXT, precedence="ROUTINE")
    seq = world.moscow.call("send", line=world.m_line, text=FLASH_TEXT, precedence="FLASH")["seq"]
    ref = f"{world.w_line}:in/{seq}"

    # Live: the banner and the title come without a reload, and (this console's setting) a tone.
    banner = page.locator(".flash-banner")
    expect(banner).to_contain_text(f"Line {world.w_line}")
    expect(banner.get_by_role("link", name=f"read and acknowledge message {ref}")).to_have_attribute(
        "href", f"/line/{line_id}#in-{seq}"
    )
    expect(page).to_have_title(re.compile(r"^FLASH · Alarms · washington"))
    assert still_same_page(page)
    page.wait_for_function("window.__tones > 0")

    # On every page, until acknowledged.
    for path in ("/", f"/line/{line_id}", f"/line/{line_id}/compose", f"/line/{line_id}/verify", "/release"):
        page.goto(url + path)
        expect(banner).to_contain_text(ref)
        expect(page).to_have_title(re.compile("^FLASH · "))

    # The Lines page counts FLASH apart from the other messages waiting.
    page.goto(url + "/")
    expect(page.locator(f"#flash-waiting-{line_id} dd")).to_have_text("1")
    expect(page.locator(f"#other-waiting-{line_id} dd")).to_have_text("1")
    page.screenshot(path=str(screenshots / "flash-banner.png"), animations="disabled")

    # The banner's link leads to the message; acknowledging it ends the banner and the title.
    banner.get_by_role("link", name=f"read and acknowledge message {ref}").click()
    page.get_by_role("button", name=f"Acknowledge message {ref}").click()
    expect(page.locator(f"#in-{seq}")).to_contain_text("Acknowledged by smith")
    expect(banner).to_have_count(0)
    expect(page).not_to_have_title(re.compile("FLASH"))
    page.goto(url + "/")
    expect(page.locator(f"#flash-waiting-{line_id} dd")).to_have_text("0")


def test_the_flash_tone_is_off_unless_the_console_turns_it_on(duty: World, contexts: Any) -> None:
    world = duty
    context = contexts()
    context.add_init_script(COUNT_TONES)
    page = log_in(context, world.moscow, "ivanova")
    assert not page.evaluate("document.body.hasAttribute('data-flash-sound')")
    seq = world.washington.call("send", line=world.w_line, text=FLASH_TEXT, precedence="FLASH")["seq"]
    ref = f"{world.m_line}:in/{seq}"
    expect(page.locator(".flash-banner")).to_contain_text(ref)  # the banner, live, but no tone
    page.reload()
    expect(page.locator(".flash-banner")).to_contain_text(ref)
    assert tones(page) == 0
    page.locator(".flash-banner").get_by_role("link", name=f"read and acknowledge message {ref}").click()
    page.get_by_role("button", name=f"Acknowledge message {ref}").click()
    expect(page.locator(".flash-banner")).to_have_count(0)


# ---- an unverified line warns before sending -----------------------------------------------------


def test_compose_warns_on_an_unverified_line_and_a_flash_there_needs_an_explicit_yes(
    duty: World, contexts: Any, screenshots: Path
) -> None:
    """Leaves two unacknowledged FLASH at washington: the phone-width tests show them in the banner."""
    world = duty
    url = str(world.moscow.console_url)
    line_id = world.line_id(world.moscow, world.m_line)
    page = log_in(contexts(), world.moscow, "ivanova")
    page.goto(f"{url}/line/{line_id}/compose")
    warning = page.locator("#unverified-warning")
    expect(warning).to_contain_text(f"Line {world.m_line} is not verified")
    expect(warning.get_by_role("link", name="Compare the safety number")).to_have_attribute(
        "href", f"/line/{line_id}/verify"
    )

    # ROUTINE: warned on the preview too, but no confirmation asked.
    page.get_by_role("radio", name=re.compile("^ROUTINE")).check()
    page.get_by_label("Message").fill(ROUTINE_TEXT)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#unverified-warning")).to_be_visible()
    expect(page.get_by_role("checkbox")).to_have_count(0)
    page.get_by_role("button", name="Send ROUTINE now").click()
    expect(page.get_by_role("status")).to_contain_text("is stored and going out")

    # FLASH: the send button does nothing until the operator ticks the box.
    before = len(world.moscow.call("outbox", line=world.m_line))
    page.get_by_role("link", name="Compose").click()
    page.get_by_role("radio", name=re.compile("^FLASH")).check()
    page.get_by_label("Message").fill(FLASH_TEXT)
    page.get_by_role("button", name="Preview").click()
    confirm = page.get_by_role("checkbox", name=re.compile("I send this FLASH anyway"))
    page.get_by_role("button", name="Send FLASH now").click()
    expect(page.get_by_role("heading", name="Check before sending")).to_be_visible()
    assert len(world.moscow.call("outbox", line=world.m_line)) == before
    shot(page, screenshots, "unverified-flash")
    confirm.check()
    page.get_by_role("button", name="Send FLASH now").click()
    expect(page.get_by_role("status")).to_contain_text("is stored and going out")
    assert len(world.moscow.call("outbox", line=world.m_line)) == before + 1

    # The server asks too (a script, or a browser that skips the check): refused, the draft kept.
    cookies = http_login(world.moscow, "ivanova")
    csrf = csrf_of(fetch(f"{url}/line/{line_id}/compose", cookies=cookies).body)
    preview = fetch(
        f"{url}/line/{line_id}/preview",
        "POST",
        {"csrf": csrf, "text": "FLASH from a script", "precedence": "FLASH"},
        cookies=cookies,
    )
    draft = re.search(r'name="draft" value="([0-9a-f]+)"', preview.body)
    assert draft is not None
    refused = fetch(
        f"{url}/line/{line_id}/send", "POST", {"csrf": csrf, "draft": draft.group(1)}, cookies=cookies
    )
    assert refused.status == 400 and "is not verified" in refused.body
    assert len(world.moscow.call("outbox", line=world.m_line)) == before + 1
    sent = fetch(
        f"{url}/line/{line_id}/send",
        "POST",
        {"csrf": csrf, "draft": draft.group(1), "unverified": "yes"},
        cookies=cookies,
    )
    assert sent.status == 303
    assert len(world.moscow.call("outbox", line=world.m_line)) == before + 2
    listed = world.moscow.cli("audit", "--json")
    assert listed.returncode == 0, listed.stderr
    sends = [e["detail"] for e in json.loads(listed.stdout) if e["action"] == "send"]
    assert sum("FLASH (line not verified: sent anyway, confirmed)" in d for d in sends) == 2, sends


# ---- every page at phone width, and at 1280 px ---------------------------------------------------


def visit_every_page(page: Page, world: World) -> Iterator[str]:
    """Open each page of washington's console in turn (logged in as its admin), yield its name."""
    url = str(world.washington.console_url)
    line_id = world.line_id(world.washington, world.w_line)
    for name, path in (
        ("lines", "/"),
        ("conversation", f"/line/{line_id}"),
        ("compose", f"/line/{line_id}/compose"),
        ("verify", f"/line/{line_id}/verify"),
        ("transcript", f"/line/{line_id}/transcript"),
        ("alarms", "/alarms"),
        ("release", "/release"),
        ("audit", "/audit"),
        ("operators", "/operators"),
        ("not found", "/no-such-page"),
    ):
        page.goto(url + path)
        yield name
    page.goto(f"{url}/line/{line_id}/compose")
    page.get_by_role("radio", name=re.compile("^FLASH")).check()
    page.get_by_label("Message").fill(LONG_REFERENCE)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Check before sending")).to_be_visible()
    yield "preview"


def sideways(page: Page) -> int:
    """How far the page scrolls sideways, in CSS pixels (0: it does not)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def safety_rows(page: Page) -> list[list[str]]:
    """The safety number's groups as laid out: rows (by their top edge), each left to right.

    Fails if a group is split over two lines or leaves the viewport.
    """
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('#safety-number .group')].map(el => {
             const r = el.getBoundingClientRect();
             return {text: el.innerText, top: Math.round(r.top), left: r.left, right: r.right,
                     height: r.height, font: parseFloat(getComputedStyle(el).fontSize)};
           })"""
    )
    width = page.evaluate("window.innerWidth")
    rows: dict[int, list[tuple[float, str]]] = {}
    for box in boxes:
        assert box["height"] < 2 * box["font"], f"group {box['text']} is split over two lines"
        assert box["left"] >= 0 and box["right"] <= width, f"group {box['text']} leaves the screen"
        rows.setdefault(box["top"], []).append((box["left"], box["text"]))
    return [[text for _, text in sorted(rows[top])] for top in sorted(rows)]


@pytest.mark.parametrize("viewport", [PHONE, WIDE], ids=["390px", "1280px"])
def test_no_page_scrolls_sideways_and_the_safety_number_keeps_whole_groups(
    duty: World, contexts: Any, screenshots: Path, viewport: ViewportSize
) -> None:
    world = duty
    world.moscow.call("send", line=world.m_line, text=LONG_REFERENCE, precedence="PRIORITY")
    login = contexts().new_page()
    login.set_viewport_size(viewport)
    login.goto(f"{world.washington.console_url}/login")
    overflowing = {"login": sideways(login)}
    page = log_in(contexts(), world.washington, "chief")
    page.set_viewport_size(viewport)
    expect(page.locator(".flash-banner")).to_be_visible()  # left by the test above: it must fit too
    for name in visit_every_page(page, world):
        overflowing[name] = sideways(page)
        if name == "verify":
            expected = world.washington.call("verify", line=world.w_line)["grouped"].split()
            rows = safety_rows(page)
            per_row = 2 if viewport is PHONE else 4
            assert [len(row) for row in rows] == [per_row] * (len(expected) // per_row), rows
            assert [group for row in rows for group in row] == expected  # read row by row, in order
            if viewport is PHONE:
                section = page.locator("section.verify").bounding_box()
                assert section is not None
                page.screenshot(
                    path=str(screenshots / "safety-number-phone.png"),
                    full_page=True,
                    clip={"x": 0, "y": section["y"] - 8, "width": 390, "height": section["height"] + 16},
                )
    figure(
        f"widest sideways scroll of {len(overflowing)} pages at {viewport['width']} px",
        max(overflowing.values()),
        "px",
    )
    assert {name: px for name, px in overflowing.items() if px > 0} == {}  # 11 pages overflowed at 390 before


def test_a_verified_line_sends_without_warning_or_confirmation(duty: World) -> None:
    world = duty
    url = str(world.moscow.console_url)
    line_id = world.line_id(world.moscow, world.m_line)
    cookies = http_login(world.moscow, "ivanova")
    assert "unverified-warning" in fetch(f"{url}/line/{line_id}/compose", cookies=cookies).body
    world.moscow.call("verify", line=world.m_line, confirm=True)
    compose = fetch(f"{url}/line/{line_id}/compose", cookies=cookies)
    assert "unverified-warning" not in compose.body
    preview = fetch(
        f"{url}/line/{line_id}/preview",
        "POST",
        {"csrf": csrf_of(compose.body), "text": "FLASH on a verified line", "precedence": "FLASH"},
        cookies=cookies,
    )
    assert preview.status == 200
    assert "unverified-warning" not in preview.body and 'name="unverified"' not in preview.body
