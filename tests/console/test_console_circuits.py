"""Circuits the peer proposes, decided in a real browser (issue 9, relay policy "ask").

Moscow's operator adds a circuit through a relay washington has never used; washington's
station holds the proposal (nothing connects to that relay) until an administrator approves
it on the Alarms page. A second proposal is rejected there and the peer is told. Both
decisions are in the audit log under the administrator's name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from support.console import VIEWPORT, World, log_in, running_world, shot
from support.relays import RelayProcess, start_relay
from support.stations import wait_until


@pytest.fixture(scope="module")
def policy_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, list[RelayProcess]]]:
    """Washington under the default policy ("ask"), with loopback relays allowed to be asked about."""
    directory = tmp_path_factory.mktemp("policy")
    extra: list[RelayProcess] = []
    with running_world(directory, {"chief": "admin"}, "allow_private_relays = true\n") as world:
        try:
            extra += [
                start_relay(directory / "r2", name="second"),
                start_relay(directory / "r3", name="third"),
            ]
            yield world, extra
        finally:
            for relay in extra:
                with contextlib.suppress(Exception):
                    relay.stop()


def circuit_urls(world: World) -> set[str]:
    return {c["url"] for c in world.washington.call("line", name=world.w_line)["circuits"]}


def held(world: World, url: str) -> list[dict[str, Any]]:
    return [p for p in world.washington.call("circuit_proposals") if p["url"] == url]


def test_an_admin_approves_one_proposed_circuit_and_rejects_another_in_the_console(
    policy_world: tuple[World, list[RelayProcess]], contexts: Any, screenshots: Path
) -> None:
    world, (second, third) = policy_world
    for relay in (second, third):
        added = world.moscow.cli("circuit", "add", world.m_line, relay.url)
        assert added.returncode == 0, added.stderr
    proposals: list[dict[str, Any]] = []
    for relay in (second, third):

        def proposed(url: str = relay.url) -> list[dict[str, Any]] | None:
            return held(world, url) or None

        proposals.append(wait_until(f"proposal of {relay.url}", proposed)[0])
    assert second.url not in circuit_urls(world)  # held: not added, not connected

    page = log_in(contexts(), world.washington, "chief")
    page.get_by_role("link", name="Alarms").click()
    expect(page.get_by_role("heading", name="Circuits proposed by the peer")).to_be_visible()
    expect(page.locator(f"#proposal-{proposals[0]['id']}")).to_contain_text(second.url)
    shot(page, screenshots, "circuit-proposals")
    page.set_viewport_size(
        {"width": 390, "height": 844}
    )  # a phone: the proposals fit, nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.set_viewport_size(VIEWPORT)  # type: ignore[arg-type]

    page.locator(f"#proposal-approve-{proposals[0]['id']}").click()
    expect(page.locator(f"#proposal-{proposals[0]['id']}")).to_have_count(0)
    wait_until("the approved circuit", lambda: second.url in circuit_urls(world))

    page.locator(f"#proposal-reject-{proposals[1]['id']}").click()
    expect(page.get_by_role("heading", name="Circuits proposed by the peer")).to_have_count(0)
    assert third.url not in circuit_urls(world)
    assert world.washington.call("circuit_proposals") == []

    # The line works over the approved circuit alone once the first relay is gone.
    world.relay.kill()
    try:
        world.moscow.call(
            "send", line=world.m_line, text="over the approved circuit", wait="delivered", timeout=30
        )
    finally:
        world.relay.restart()
    audit = world.washington.cli("audit", "--json")
    assert audit.returncode == 0, audit.stderr
    actions = [(e["operator"], e["action"]) for e in json.loads(audit.stdout)]
    assert ("chief", "circuit_approve") in actions and ("chief", "circuit_reject") in actions
