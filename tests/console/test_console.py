"""The operator console in a real browser, against two real stations and a real relay."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from support.console import (
    LOCKOUT_ATTEMPTS,
    PASSWORD,
    World,
    add_operator,
    console_station,
    csrf_of,
    fetch,
    http_login,
    log_in,
    mark_page,
    shot,
    still_same_page,
)
from support.figures import figure
from support.stations import wait_until


def open_line(page: Page, line: str) -> None:
    page.get_by_role("link", name=line, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(f"^Line {line}"))).to_be_visible()


# ---- reachability --------------------------------------------------------------------------------


def test_only_the_login_page_and_health_are_reachable_without_logging_in(world: World) -> None:
    url = world.washington.console_url
    assert url is not None
    health = fetch(f"{url}/health")
    assert (health.status, health.body) == (200, "ok")
    assert fetch(f"{url}/login").status == 200
    line_id = world.line_id(world.washington, world.w_line)
    for path in ("/", "/alarms", "/audit", "/operators", f"/line/{line_id}", f"/line/{line_id}/verify"):
        reply = fetch(url + path)
        assert reply.status == 303 and reply.headers["location"].startswith("/login"), path
        assert world.w_line not in reply.body
    assert fetch(f"{url}/events").status == 401
    refused = fetch(f"{url}/line/{line_id}/send", "POST", {"draft": "x", "csrf": "y"})
    assert refused.status == 401 and "Nothing was done" in refused.body
    assert fetch(f"{url}/", headers={"Host": "rebinding.example:80"}).status == 421


# ---- logging in ----------------------------------------------------------------------------------


def test_a_wrong_password_is_refused_and_repeated_failures_make_this_browser_wait(
    world: World, contexts: Any, screenshots: Path
) -> None:
    """Failures slow down this (name, address), never the account (PROTOCOL/OPERATIONS §2.4)."""
    page = contexts().new_page()
    page.goto(f"{world.washington.console_url}/login")
    shot(page, screenshots, "login")
    for _ in range(LOCKOUT_ATTEMPTS):
        page.get_by_label("Operator name").fill("victim")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong operator name or password.")
    page.get_by_label("Password").fill(PASSWORD)  # the right password, too soon: not even checked
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Too many failed logins for this name from here")
    assert page.url.endswith("/login")


# ---- the main flow: FLASH out, live in, acknowledged, live back ----------------------------------


def test_a_flash_sent_from_the_console_arrives_live_and_its_acknowledgement_comes_back_live(
    world: World, contexts: Any, screenshots: Path
) -> None:
    sender = log_in(contexts(), world.washington, "smith")
    receiver = log_in(contexts(), world.moscow, "ivanova")
    open_line(receiver, world.m_line)
    mark_page(receiver)

    open_line(sender, world.w_line)
    sender.get_by_role("link", name="Compose").click()
    sender.get_by_role("radio", name=re.compile("^FLASH")).check()
    text = "Unidentified aircraft crossing the border at 14:02Z.\nPlease confirm it is not yours."
    sender.get_by_label("Message").fill(text)
    shot(sender, screenshots, "compose")
    sender.get_by_role("button", name="Preview").click()

    expect(sender.get_by_role("heading", name="Check before sending")).to_be_visible()
    expect(sender.locator("#exact-text")).to_have_text(text)
    expect(sender.locator(".preview .prec-FLASH")).to_have_text("FLASH")
    assert world.washington.call("outbox", line=world.w_line) == []  # nothing left before confirming
    shot(sender, screenshots, "preview")
    # The line is not verified yet (that test comes later): a FLASH asks for an explicit yes.
    sender.get_by_role("checkbox", name=re.compile("I send this FLASH anyway")).check()
    sender.get_by_role("button", name="Send FLASH now").click()
    expect(sender.get_by_role("status")).to_contain_text("is stored and going out")
    mark_page(sender)
    sent = world.washington.call("outbox", line=world.w_line)
    assert [(m["text"], m["precedence"]) for m in sent] == [(text, "FLASH")]
    seq = sent[0]["seq"]

    # Arrives on moscow's open page without a reload.
    incoming = receiver.locator(f"#in-{seq}")
    expect(incoming).to_contain_text("Unidentified aircraft crossing the border")
    expect(incoming.locator(".prec-FLASH")).to_be_visible()
    assert still_same_page(receiver)
    shot(receiver, screenshots, "conversation-received")

    # One click acknowledges, as the logged-in operator.
    receiver.get_by_role("button", name=f"Acknowledge message {world.m_line}:in/{seq}").click()
    expect(receiver.locator(f"#in-{seq}")).to_contain_text("Acknowledged by ivanova")
    assert (
        world.moscow.call("message", line=world.m_line, seq=seq, direction="in")["acknowledged_by"]
        == "ivanova"
    )

    # ... and the sender's page shows it, live.
    expect(sender.locator(f"#out-{seq}")).to_contain_text("Acknowledged by ivanova")
    expect(sender.locator(f"#out-{seq} .receipts")).to_contain_text("Delivered")
    assert still_same_page(sender)
    shot(sender, screenshots, "conversation-sent")

    sender.get_by_role("link", name="Lines", exact=True).click()
    expect(sender.locator("#lines")).to_contain_text("UP")
    shot(sender, screenshots, "lines")


def test_a_draft_is_sent_once_however_often_the_confirmation_arrives(world: World) -> None:
    cookies = http_login(world.washington, "smith")
    url = world.washington.console_url
    line_id = world.line_id(world.washington, world.w_line)
    compose = fetch(f"{url}/line/{line_id}/compose", cookies=cookies)
    csrf = csrf_of(compose.body)
    preview = fetch(
        f"{url}/line/{line_id}/preview",
        "POST",
        {"csrf": csrf, "text": "Routine check.\r\nSecond line.", "precedence": "ROUTINE"},
        cookies=cookies,
    )
    assert preview.status == 200
    draft = re.search(r'name="draft" value="([0-9a-f]+)"', preview.body)
    assert draft is not None
    before = len(world.washington.call("outbox", line=world.w_line))
    first = fetch(
        f"{url}/line/{line_id}/send", "POST", {"csrf": csrf, "draft": draft.group(1)}, cookies=cookies
    )
    second = fetch(
        f"{url}/line/{line_id}/send", "POST", {"csrf": csrf, "draft": draft.group(1)}, cookies=cookies
    )
    assert first.status == 303 and second.status == 409
    outbox = world.washington.call("outbox", line=world.w_line)
    assert len(outbox) == before + 1
    assert outbox[0]["text"] == "Routine check.\nSecond line."  # what the preview showed


def test_confirmations_of_one_draft_racing_each_other_send_it_once(world: World) -> None:
    """A double click sends two confirmations at once: both reach the station before either is
    answered, and the draft's idempotency key makes the second return the first message."""
    cookies = http_login(world.washington, "smith")
    url = world.washington.console_url
    line_id = world.line_id(world.washington, world.w_line)
    csrf = csrf_of(fetch(f"{url}/line/{line_id}/compose", cookies=cookies).body)
    preview = fetch(
        f"{url}/line/{line_id}/preview",
        "POST",
        {"csrf": csrf, "text": "Sent by a double click.", "precedence": "ROUTINE"},
        cookies=cookies,
    )
    draft = re.search(r'name="draft" value="([0-9a-f]+)"', preview.body)
    assert draft is not None
    before = len(world.washington.call("outbox", line=world.w_line))
    form = {"csrf": csrf, "draft": draft.group(1)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda _: fetch(f"{url}/line/{line_id}/send", "POST", form, cookies=cookies), range(4))
        )
    statuses = sorted(answer.status for answer in answers)
    outbox = world.washington.call("outbox", line=world.w_line)
    copies = sum(1 for message in outbox if message["text"] == "Sent by a double click.")
    figure("copies sent of one draft confirmed 4 times at once", copies, "messages")
    assert copies == 1 and len(outbox) == before + 1
    assert 303 in statuses and set(statuses) <= {303, 409}, statuses


# ---- verification --------------------------------------------------------------------------------


def test_the_safety_number_is_shown_grouped_and_the_line_confirmed_verified(
    world: World, contexts: Any, screenshots: Path
) -> None:
    page = log_in(contexts(), world.washington, "smith")
    open_line(page, world.w_line)
    page.get_by_role("link", name="Verification").click()
    expected = world.washington.call("verify", line=world.w_line)
    assert not expected["verified"]
    groups = page.locator("#safety-number .group").all_inner_texts()
    assert groups == expected["grouped"].split() and len(groups) == 12
    assert expected["grouped"].split() == world.moscow.call("verify", line=world.m_line)["grouped"].split()
    expect(page.locator("#verified-state")).to_contain_text("Not verified")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Confirm: the line is verified").click()
    expect(page.locator("#verified-state")).to_contain_text("Verified on this side")
    expect(page.locator("#peer-verified-state")).to_contain_text("not known to this station")
    assert world.washington.call("line", name=world.w_line)["verified"]
    shot(page, screenshots, "verify")


def test_the_transcript_page_shows_the_chain_head(world: World, contexts: Any, screenshots: Path) -> None:
    page = log_in(contexts(), world.washington, "smith")
    open_line(page, world.w_line)
    page.get_by_role("link", name="Transcript").click()
    expect(page.locator("#chain-head")).to_have_text(re.compile(r"^([0-9a-f]{8} ){7}[0-9a-f]{8}\s*$"))
    # Link tests extend the chain every second and the page follows live: what it shows is a
    # head the station really had.
    seen: set[str] = set()

    def shown_head_is_real() -> bool:
        seen.add(world.washington.call("transcript", line=world.w_line)["head"])
        return page.locator("#chain-head").inner_text().replace(" ", "").strip() in seen

    wait_until("the page to show a head the station had", shown_head_is_real, timeout=15, interval=0.1)
    shot(page, screenshots, "transcript")


# ---- alarms --------------------------------------------------------------------------------------


def test_an_alarm_from_a_killed_relay_appears_live_and_is_acknowledged(
    world: World, contexts: Any, screenshots: Path
) -> None:
    page = log_in(contexts(), world.washington, "smith")
    page.get_by_role("link", name=re.compile("^Alarms")).click()
    expect(page.locator("#no-open-alarms")).to_be_visible()
    mark_page(page)
    world.relay.kill()
    try:
        alarm = page.locator(".alarm-open").first
        expect(alarm).to_contain_text("down")
        expect(page.locator("#alarm-count")).not_to_have_text("0")
        assert still_same_page(page)
        shot(page, screenshots, "alarms")
        alarm.get_by_role("button", name=re.compile("^Acknowledge alarm")).click()
        expect(page.locator(".alarm-open").first).to_contain_text("Acknowledged by smith")
        acked = [a for a in world.washington.call("alarms") if a["acknowledged_by"] == "smith"]
        assert acked
    finally:
        world.relay.restart()
    wait_until(
        "the line up again",
        lambda: world.washington.call("line", name=world.w_line)["health"] == "up",
        timeout=30,
    )


# ---- CSRF ----------------------------------------------------------------------------------------


def test_a_post_without_the_right_csrf_token_or_from_another_origin_is_refused(world: World) -> None:
    url = world.moscow.console_url
    cookies = http_login(world.moscow, "ivanova")
    line_id = world.line_id(world.moscow, world.m_line)
    page = fetch(f"{url}/line/{line_id}", cookies=cookies)
    assert page.status == 200
    csrf = csrf_of(page.body)
    before = world.moscow.call("outbox", line=world.m_line)
    attempts = [
        ({"text": "forged", "precedence": "FLASH"}, {}),
        ({"text": "forged", "precedence": "FLASH", "csrf": "0" * 64}, {}),
        ({"text": "forged", "precedence": "FLASH", "csrf": csrf}, {"Origin": "http://evil.example"}),
    ]
    for form, headers in attempts:
        reply = fetch(f"{url}/line/{line_id}/preview", "POST", form, cookies=cookies, headers=headers)
        assert reply.status == 403, reply.body
        assert "Form refused" in reply.body and "Nothing was done" in reply.body
    alarms_ack = fetch(f"{url}/logout", "POST", {}, cookies=cookies)
    assert alarms_ack.status == 403  # even logging out needs the token
    assert world.moscow.call("outbox", line=world.m_line) == before
    assert fetch(f"{url}/", cookies=cookies).status == 200  # still logged in


# ---- session expiry ------------------------------------------------------------------------------


def test_an_expired_session_is_refused_with_a_clear_page(world: World, contexts: Any) -> None:
    tokyo = console_station(world.directory, "tokyo", "session_seconds = 2\n")
    add_operator(tokyo, "tanaka", "operator")
    tokyo.start()
    try:
        page = log_in(contexts(), tokyo, "tanaka")
        cookies = http_login(tokyo, "tanaka")
        csrf = csrf_of(fetch(f"{tokyo.console_url}/", cookies=cookies).body)
        time.sleep(2.2)
        page.get_by_role("link", name=re.compile("^Alarms")).click()
        expect(page.get_by_role("status")).to_have_text("Your session has expired. Log in again.")
        expect(page.get_by_label("Operator name")).to_be_visible()
        late = fetch(f"{tokyo.console_url}/logout", "POST", {"csrf": csrf}, cookies=cookies)
        assert late.status == 401 and "Session expired" in late.body
    finally:
        tokyo.stop()


# ---- audit ---------------------------------------------------------------------------------------


def test_the_audit_log_is_shown_to_admins_and_not_to_operators(
    world: World, contexts: Any, screenshots: Path
) -> None:
    operator = log_in(contexts(), world.washington, "smith")
    expect(operator.get_by_role("link", name="Audit log")).to_have_count(0)
    operator.goto(f"{world.washington.console_url}/audit")
    expect(operator.get_by_role("heading", name="Not allowed")).to_be_visible()

    admin = log_in(contexts(), world.washington, "chief")
    admin.get_by_role("link", name="Audit log").click()
    table = admin.locator("#audit")
    expect(table.locator("tr.audit-login").filter(has_text="smith").first).to_be_visible()
    expect(table.locator("tr.audit-operator_add").filter(has_text="chief as admin")).to_have_count(1)
    shot(admin, screenshots, "audit")
