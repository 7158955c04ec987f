"""Release authority in a real browser: a drafter's FLASH does not leave until a releaser approves it.

Washington's line to moscow is configured (``station.toml``, before the station starts) with
``release = "flash"``: smith (operator) drafts, jones (releaser) releases, chief (admin) reads
the audit log; ivanova watches moscow's console for what arrives.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from support.console import World, csrf_of, fetch, http_login, log_in, mark_page, shot, still_same_page
from support.stations import wait_until

FLASH_TEXT = "Missile launch detected from sector 7 at 09:12Z. Stand by for confirmation."
ROUTINE_TEXT = "Routine: the weekly line test is at 10:00Z."
OWN_TEXT = "Releaser's own FLASH: must wait for someone else."


def open_line(page: Page, line: str) -> None:
    page.get_by_role("link", name="Lines", exact=True).click()
    page.get_by_role("link", name=line, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(f"^Line {line}"))).to_be_visible()


def compose(page: Page, line: str, precedence: str, text: str) -> None:
    open_line(page, line)
    page.get_by_role("link", name="Compose").click()
    page.get_by_role("radio", name=re.compile(f"^{precedence}")).check()
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Check before sending")).to_be_visible()


def pending(world: World) -> set[str]:
    """The ids of washington's drafts awaiting release (through its control socket)."""
    return {d["id"] for d in world.washington.call("drafts") if d["status"] == "awaiting release"}


def moscow_received(world: World, text: str) -> bool:
    return any(m["text"] == text for m in world.moscow.call("inbox", line=world.m_line))


def test_a_drafters_flash_waits_for_a_releaser_and_routine_traffic_does_not(
    release_world: World, contexts: Any, screenshots: Path
) -> None:
    world = release_world
    url = world.washington.console_url
    assert url is not None
    receiver = log_in(contexts(), world.moscow, "ivanova")
    open_line(receiver, world.m_line)
    mark_page(receiver)
    releaser = log_in(contexts(), world.washington, "jones")
    releaser.get_by_role("link", name=re.compile("^Release")).click()
    expect(releaser.locator("#nothing-held")).to_be_visible()
    expect(releaser.locator("#release-count")).to_have_text("0")
    mark_page(releaser)

    # smith (operator) drafts a FLASH: the preview says it will be held, the station holds it.
    drafter = log_in(contexts(), world.washington, "smith")
    compose(drafter, world.w_line, "FLASH", FLASH_TEXT)
    expect(drafter.locator("#held-note")).to_contain_text("needs a second operator (releaser)")
    drafter.get_by_role("checkbox", name=re.compile("I send this FLASH anyway")).check()  # unverified line
    drafter.get_by_role("button", name="Submit FLASH for release").click()
    expect(drafter.get_by_role("status")).to_contain_text(
        f"Held for release: line {world.w_line} needs a second operator (releaser) to release FLASH messages"
    )
    drafts = world.washington.call("drafts")
    assert [(d["text"], d["drafted_by"], d["status"]) for d in drafts] == [
        (FLASH_TEXT, "smith", "awaiting release")
    ]
    draft_id = drafts[0]["id"]
    held = drafter.locator(f"#draft-{draft_id}")
    expect(held).to_contain_text("AWAITING RELEASE")
    expect(held).to_contain_text("Drafted by smith")
    expect(drafter.locator(".msg-out:not(.msg-held)")).to_have_count(0)  # not shown as sent
    expect(held.get_by_role("button", name=re.compile("^Release"))).to_have_count(0)
    assert world.washington.call("outbox", line=world.w_line) == []

    # Everyone sees it pending, live: the releaser's open Release page and the badge.
    card = releaser.locator(f"#held-{draft_id}")
    expect(card).to_contain_text(FLASH_TEXT)
    expect(card).to_contain_text("Drafted by smith")
    expect(card.locator(".unverified-warning")).to_contain_text(f"Line {world.w_line} is not verified")
    expect(releaser.locator("#release-count")).to_have_text("1")
    assert still_same_page(releaser)

    # A ROUTINE on the same line goes at once (the rule is FLASH only) and arrives live.
    compose(drafter, world.w_line, "ROUTINE", ROUTINE_TEXT)
    expect(drafter.locator("#held-note")).to_have_count(0)
    drafter.get_by_role("button", name="Send ROUTINE now").click()
    expect(drafter.get_by_role("status")).to_contain_text("is stored and going out")
    expect(receiver.locator("#messages")).to_contain_text(ROUTINE_TEXT)
    assert still_same_page(receiver)

    # The drafter cannot release it: no button on the Release page, and a forged POST is refused.
    drafter.get_by_role("link", name=re.compile("^Release")).click()
    expect(drafter.locator(f"#held-{draft_id}")).to_contain_text("You drafted it")
    expect(drafter.get_by_role("button", name=re.compile("^Release"))).to_have_count(0)
    mark_page(drafter)
    smith = http_login(world.washington, "smith")
    csrf = csrf_of(fetch(f"{url}/release", cookies=smith).body)
    forged = fetch(f"{url}/release/{draft_id}", "POST", {"csrf": csrf}, cookies=smith)
    assert forged.status == 403 and "Not allowed" in forged.body
    assert draft_id in pending(world)

    # A releaser cannot release their own draft either: the station refuses, the console says so.
    jones = http_login(world.washington, "jones")
    compose(releaser, world.w_line, "FLASH", OWN_TEXT)
    releaser.get_by_role("checkbox", name=re.compile("I send this FLASH anyway")).check()  # unverified line
    releaser.get_by_role("button", name="Submit FLASH for release").click()
    expect(releaser.get_by_role("status")).to_contain_text("Held for release")
    own = next(d["id"] for d in world.washington.call("drafts") if d["text"] == OWN_TEXT)
    csrf = csrf_of(fetch(f"{url}/release", cookies=jones).body)
    refused = fetch(f"{url}/release/{own}", "POST", {"csrf": csrf}, cookies=jones)
    assert refused.status == 403 and "Not released" in refused.body, refused.body
    assert "cannot release it" in refused.body and "Nothing was sent" in refused.body
    assert pending(world) == {draft_id, own}

    # Seconds later the held FLASH has still not reached moscow (the ROUTINE after it did).
    time.sleep(3)
    assert not moscow_received(world, FLASH_TEXT) and not moscow_received(world, OWN_TEXT)
    expect(receiver.locator("#messages")).not_to_contain_text(FLASH_TEXT)

    # jones releases smith's FLASH from the Release page.
    releaser.get_by_role("link", name=re.compile("^Release")).click()
    expect(releaser.locator(f"#held-{own}")).to_contain_text("You drafted it")
    expect(releaser.locator("#release-count")).to_have_text("2")
    shot(releaser, screenshots, "release")
    releaser.get_by_role("button", name=re.compile(f"^Release FLASH now: draft {draft_id}")).click()
    expect(releaser.get_by_role("status")).to_contain_text("Released: message")
    sent = [m for m in world.washington.call("outbox", line=world.w_line) if m["text"] == FLASH_TEXT]
    assert len(sent) == 1 and sent[0]["precedence"] == "FLASH"
    seq = sent[0]["seq"]
    assert pending(world) == {own}

    # It arrives live on moscow's console, and shows its receipts on washington's.
    incoming = receiver.locator(f"#in-{seq}")
    expect(incoming).to_contain_text(FLASH_TEXT)
    expect(incoming.locator(".prec-FLASH")).to_be_visible()
    assert still_same_page(receiver)
    expect(releaser.locator(f"#out-{seq} .receipts")).to_contain_text("Delivered")
    assert moscow_received(world, FLASH_TEXT)

    # The drafter's open Release page follows live; in the conversation the draft is a sent message.
    expect(drafter.locator(f"#held-{draft_id}")).to_have_count(0)
    expect(drafter.locator("#release-count")).to_have_text("1")
    assert still_same_page(drafter)
    drafter.goto(f"{url}/line/{world.line_id(world.washington, world.w_line)}")
    expect(drafter.locator(f"#out-{seq}")).to_contain_text(FLASH_TEXT)
    expect(drafter.locator(f"#draft-{draft_id}")).to_have_count(0)

    # Releasing it twice is refused.
    again = fetch(f"{url}/release/{draft_id}", "POST", {"csrf": csrf}, cookies=jones)
    assert again.status == 409 and "already released by jones" in again.body
    assert len([m for m in world.washington.call("outbox") if m["text"] == FLASH_TEXT]) == 1

    # The audit log: the draft by smith, the release by jones, the refusals.
    admin = log_in(contexts(), world.washington, "chief")
    admin.get_by_role("link", name="Audit log").click()
    table = admin.locator("#audit")
    expect(table.locator("tr.audit-draft").filter(has_text="smith")).to_have_count(1)
    expect(table.locator("tr.audit-release").filter(has_text="jones")).to_contain_text(
        f"{world.w_line}:{seq} FLASH draft {draft_id}, drafted by smith"
    )
    expect(table.locator("tr.audit-release_refused").filter(has_text="jones").first).to_be_visible()
    wait_until("moscow's inbox to hold the FLASH once", lambda: moscow_received(world, FLASH_TEXT))
