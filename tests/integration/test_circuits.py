"""The line holds: several circuits, a relay killed mid-stream, all relays down, alarms.

Real relay processes, real station processes; link tests every second so that health and
alarms move at test speed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel.station.control import ControlClient

from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, heads_equal, wait_until
from support.webhook import WebhookServer

INTERVAL = 1.0


def station(tmp_path: Path, name: str, config: str = "") -> StationProcess:
    st = StationProcess(tmp_path, name)
    # The relays here are on 127.0.0.1: the peer may add them in band only if the policy names it.
    policy = 'relay_policy = ["127.0.0.1"]\n'
    (st.home / "station.toml").write_text(f"[station]\nlink_test_interval = {INTERVAL}\n{policy}{config}")
    st.start()
    return st


def pair_over(
    inviter: StationProcess, accepter: StationProcess, relays: list[RelayProcess]
) -> tuple[str, str]:
    text = inviter.call("invite", relay=[r.url for r in relays], name="peer")["text"]
    line = accepter.call("accept", text=text, name="peer")["name"]
    wait_until("the line", lambda: accepter.call("line", name=line)["state"] == "established")
    return "peer", line


def circuit(station_: StationProcess, line: str, url: str) -> dict[str, Any]:
    return next(c for c in station_.call("line", name=line)["circuits"] if c["url"] == url)


def open_alarms(station_: StationProcess, kind: str) -> list[dict[str, Any]]:
    return [a for a in station_.call("alarms") if a["kind"] == kind]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"relays": [], "stations": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for relay in started["relays"]:
        relay.stop()


@pytest.mark.parametrize("relay_count", [2, 3])
def test_a_relay_killed_mid_stream_loses_nothing_and_raises_then_clears_its_alarm(
    tmp_path: Path, world: dict[str, Any], relay_count: int
) -> None:
    relays = [start_relay(tmp_path, name=f"relay{i}") for i in range(relay_count)]
    world["relays"] += relays
    a, b = station(tmp_path, "alpha"), station(tmp_path, "bravo")
    world["stations"] += [a, b]
    a_line, b_line = pair_over(a, b, relays)
    assert len(a.call("line", name=a_line)["circuits"]) == relay_count
    victim = relays[0]
    wait_until(
        "every circuit up", lambda: all(c["state"] == "up" for c in a.call("line", name=a_line)["circuits"])
    )

    texts = [f"m{i:05d}" for i in range(1000)]
    with ControlClient(a.home) as client:
        for start in range(0, 1000, 100):
            if start == 300:
                victim.kill()
                killed_at = time.time()
            results = client.pipeline(
                [("send", {"line": a_line, "text": t}) for t in texts[start : start + 100]]
            )
            assert not any(isinstance(r, Exception) for r in results)
    alarm = wait_until(
        "the circuit-down alarm",
        lambda: next((x for x in open_alarms(a, "circuit_down") if victim.url in x["subject"]), None),
        timeout=10,
    )
    assert alarm["raised_at"] - killed_at <= 2 * INTERVAL + 0.5
    assert circuit(a, a_line, victim.url)["state"] == "down"
    assert a.call("line", name=a_line)["health"] in ("degraded", "up")  # the other circuits carry it

    wait_until(
        "every message delivered over the surviving circuits",
        lambda: b.call("line", name=b_line)["received"] == 1000,
        timeout=60,
    )
    assert circuit(a, a_line, victim.url)["pending"] > 0  # what the dead circuit missed, kept for it

    victim.restart()
    wait_until("the alarm cleared", lambda: not open_alarms(a, "circuit_down"), timeout=15)
    wait_until(
        "the returned circuit caught up", lambda: circuit(a, a_line, victim.url)["pending"] == 0, timeout=30
    )
    history = [x for x in a.call("alarms", include_cleared=True) if x["kind"] == "circuit_down"]
    assert len(history) == 1 and history[0]["state"] == "cleared"  # raised once, cleared once

    received = [m["text"] for m in reversed(b.call("inbox", line=b_line, limit=100_000))]
    assert received == texts  # nothing lost, nothing twice, in order
    assert b.call("counters").get("duplicate", 0) > 0  # copies from the other circuits were dropped
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line), timeout=30)


def test_all_circuits_down_queues_then_delivers_exactly_once_when_one_returns(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relays = [start_relay(tmp_path, name=f"relay{i}") for i in range(2)]
    world["relays"] += relays
    a, b = station(tmp_path, "alpha"), station(tmp_path, "bravo")
    world["stations"] += [a, b]
    a_line, b_line = pair_over(a, b, relays)
    a.call("send", line=a_line, text="before", wait="delivered")
    for relay in relays:
        relay.kill()
    queued = [a.call("send", line=a_line, text=f"during {i}")["status"] for i in range(20)]
    assert set(queued) == {"queued"}
    wait_until("the line-down alarm", lambda: open_alarms(a, "line_down"), timeout=10)
    assert a.call("line", name=a_line)["health"] == "down"
    status = a.cli("status", "--json")
    assert json.loads(status.stdout)["lines"][0]["health"] == "down"

    relays[1].restart()
    wait_until(
        "delivery over the returned circuit",
        lambda: b.call("line", name=b_line)["received"] == 21,
        timeout=30,
    )
    wait_until("the line-down alarm cleared", lambda: not open_alarms(a, "line_down"), timeout=15)
    received = [m["text"] for m in reversed(b.call("inbox", line=b_line, limit=1000))]
    assert received == ["before"] + [f"during {i}" for i in range(20)]
    relays[0].restart()
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line), timeout=30)


def test_a_flash_deadline_escalates_once_to_both_sinks_and_clears_on_acknowledgement(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    webhook = WebhookServer()
    sink_file = tmp_path / "alarms.jsonl"
    script = tmp_path / "sink.py"
    script.write_text(
        "import sys\n"
        f"with open({str(sink_file)!r}, 'a') as f:\n"
        "    f.write(sys.stdin.read().strip() + '\\n')\n"
    )
    config = (
        f"alarm_command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]\n"
        f"alarm_webhook = {json.dumps(webhook.url)}\n"
        "[station.deadlines]\nFLASH = 1.5\n"
    )
    try:
        a, b = station(tmp_path, "alpha", config), station(tmp_path, "bravo")
        world["stations"] += [a, b]
        a_line, b_line = pair_over(a, b, [relay])
        sent = a.call(
            "send", line=a_line, text="Confirm receipt immediately.", precedence="FLASH", wait="delivered"
        )
        wait_until("the deadline alarm", lambda: open_alarms(a, "deadline_passed"), timeout=10)
        time.sleep(2.5)  # more ticks: the alarm must not be raised again
        wait_until("both sinks to hear it", lambda: sink_file.exists() and webhook.events, timeout=10)
        deadline_events = [e for e in webhook.events if e["kind"] == "deadline_passed"]
        assert [e["state"] for e in deadline_events] == ["raised"]
        assert deadline_events[0]["subject"] == str(sent["seq"])
        b.call("ack", line=b_line, seq=sent["seq"], operator="ivanova")
        wait_until("the alarm cleared", lambda: not open_alarms(a, "deadline_passed"), timeout=10)
        wait_until(
            "both sinks to hear the clear",
            lambda: (
                [e["state"] for e in webhook.events if e["kind"] == "deadline_passed"]
                == ["raised", "cleared"]
                and sum('"deadline_passed"' in line for line in sink_file.read_text().splitlines()) == 2
            ),
            timeout=10,
        )
        command_events = [json.loads(line) for line in sink_file.read_text().splitlines()]
        assert [e["state"] for e in command_events if e["kind"] == "deadline_passed"] == ["raised", "cleared"]
    finally:
        webhook.stop()


def test_a_circuit_added_and_removed_in_band_is_applied_by_both_stations(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    first, second = start_relay(tmp_path, name="first"), start_relay(tmp_path, name="second")
    world["relays"] += [first, second]
    a, b = station(tmp_path, "alpha"), station(tmp_path, "bravo")
    world["stations"] += [a, b]
    a_line, b_line = pair_over(a, b, [first])

    added = a.cli("circuit", "add", a_line, second.url)
    assert added.returncode == 0, added.stderr

    def urls(st: StationProcess, line: str) -> set[str]:
        return {c["url"] for c in st.call("line", name=line)["circuits"]}

    wait_until(
        "both stations on two circuits", lambda: urls(a, a_line) == urls(b, b_line) == {first.url, second.url}
    )
    first.kill()  # the new circuit alone must now carry the line
    a.call("send", line=a_line, text="over the added circuit", wait="delivered", timeout=20)
    first.restart()

    removed = b.cli("circuit", "remove", b_line, first.url)
    assert removed.returncode == 0, removed.stderr
    wait_until(
        "both stations back to one circuit", lambda: urls(a, a_line) == urls(b, b_line) == {second.url}
    )
    again = b.cli("circuit", "remove", b_line, second.url)
    assert again.returncode == 1 and "at least one circuit" in again.stderr
    b.call("send", line=b_line, text="after the removal", wait="delivered")
    assert [m["text"] for m in reversed(a.call("inbox"))] == ["after the removal"]

    # The removed relay can be added again (by either side): fresh mailboxes on both.
    readded = a.cli("circuit", "add", a_line, first.url)
    assert readded.returncode == 0, readded.stderr
    wait_until(
        "both stations on two circuits again",
        lambda: urls(a, a_line) == urls(b, b_line) == {first.url, second.url},
    )
    second.kill()  # the re-added circuit alone must carry the line, both ways
    a.call("send", line=a_line, text="over the re-added circuit", wait="delivered", timeout=20)
    b.call("send", line=b_line, text="back over it", wait="delivered", timeout=20)
    second.restart()
    assert [m["text"] for m in reversed(a.call("inbox"))] == ["after the removal", "back over it"]
    assert [m["text"] for m in reversed(b.call("inbox"))] == [
        "over the added circuit",
        "over the re-added circuit",
    ]
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line), timeout=30)


def test_two_operators_removing_both_circuits_at_once_leave_a_working_line_across_restarts(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    r1, r2 = start_relay(tmp_path, name="r1"), start_relay(tmp_path, name="r2")
    world["relays"] += [r1, r2]
    a, b = station(tmp_path, "alpha"), station(tmp_path, "bravo")
    world["stations"] += [a, b]
    a_line, b_line = pair_over(a, b, [r1, r2])
    for relay in (r1, r2):  # the two changes must cross: neither arrives before the other is made
        relay.kill()
    assert a.cli("circuit", "remove", a_line, r1.url).returncode == 0
    assert b.cli("circuit", "remove", b_line, r2.url).returncode == 0
    for relay in (r1, r2):
        relay.restart()
    wait_until(
        "both refusals",
        lambda: (
            a.call("counters").get("circuit_refused") == 1 and b.call("counters").get("circuit_refused") == 1
        ),
    )
    for st in (a, b):  # each now sends on a different relay and reads its retired mailbox
        st.stop()
        st.start()
    a.call("send", line=a_line, text="from alpha", wait="delivered", timeout=20)
    b.call("send", line=b_line, text="from bravo", wait="delivered", timeout=20)
    assert [m["text"] for m in a.call("inbox")] == ["from bravo"]
    assert [m["text"] for m in b.call("inbox")] == ["from alpha"]
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line), timeout=30)
