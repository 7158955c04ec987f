"""End-to-end recovery: frames every relay lost after storing them are sent again and arrive once.

Real relay and station processes. The relay loses frames the way a real one can: its
database loses the stored frames while the receiving station is away (a replaced disk, an
operator's mistake), or it expires them because the station stayed away longer than the
relay's ``expiry_seconds``. The sender learns from the peer's own entries (``seen``) that they
never arrived and sends them again; the receiver gets each message exactly once, in order.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.faultproxy import FaultProxy
from support.relays import metrics, start_relay
from support.stations import StationProcess, heads_equal, pair, wait_until

CONFIG = "[station]\nlink_test_interval = 1.0\nresend_after = 2.0\nrelay_request_timeout = 2.0\n"


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {"relays": [], "stations": []}
    yield started
    for st in started["stations"]:
        st.stop()
    for relay in started["relays"]:
        relay.stop()


def stations(tmp_path: Path, world: dict[str, Any]) -> tuple[StationProcess, StationProcess]:
    a, b = StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")
    for st in (a, b):
        (st.home / "station.toml").write_text(CONFIG)
        st.start()
        world["stations"].append(st)
    return a, b


def inbox_texts(station: StationProcess, line: str) -> list[str]:
    return [m["text"] for m in reversed(station.call("inbox", line=line, limit=1000))]


def relayed(station: StationProcess, line: str, count: int) -> bool:
    sent = [m for m in station.call("outbox", line=line, limit=count) if m["relayed_at"]]
    return len(sent) == count


def test_frames_a_relay_lost_after_storing_them_are_sent_again_and_delivered_once(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    a, b = stations(tmp_path, world)
    a_line, b_line = pair(a, b, relay.url)
    a.call("send", line=a_line, text="before")
    wait_until("the first message", lambda: inbox_texts(b, b_line) == ["before"])

    b.stop()  # moscow is away; what washington sends waits at the relay
    lost = [f"lost {i}" for i in range(3)]
    for text in lost:
        a.call("send", line=a_line, text=text, precedence="FLASH")
    wait_until("the relay to store them", lambda: relayed(a, a_line, 4))
    relay.stop()
    with sqlite3.connect(relay.db_path) as db:  # the relay loses every stored frame
        gone = db.execute("DELETE FROM messages").rowcount
    assert gone >= 3
    relay.restart()
    b.start()

    wait_until("the lost messages, sent again", lambda: len(inbox_texts(b, b_line)) == 4, timeout=40)
    # One round repaired it; moscow's first report may have been sealed before it reached any
    # relay, so that proves no relay's fault: no frames_lost alarm (the count and log say it).
    assert _alarms(a, "frames_lost") == []
    a.call("send", line=a_line, text="after")
    wait_until("the next message", lambda: len(inbox_texts(b, b_line)) == 5)
    time.sleep(1.5)  # any further copy would have arrived by now
    assert inbox_texts(b, b_line) == ["before", *lost, "after"]  # once each, in order
    assert a.call("counters").get("resent", 0) >= 3
    wait_until(
        "every message delivered at the sender",
        lambda: all(m["delivered_at"] for m in a.call("outbox", line=a_line, limit=10)),
    )
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line))
    status = a.cli("status", a_line)
    assert status.returncode == 0 and "Frames sent again end to end" in status.stdout


def test_frames_the_relay_expired_while_the_station_was_away_are_sent_again(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path, {"expiry_seconds": 1.0, "expiry_sweep_seconds": 0.2})
    world["relays"].append(relay)
    a, b = stations(tmp_path, world)
    a_line, b_line = pair(a, b, relay.url)
    b.stop()
    for i in range(5):
        a.call("send", line=a_line, text=f"while away {i}")
    wait_until("the relay to store them", lambda: relayed(a, a_line, 5))
    wait_until("the relay to expire them", lambda: metrics(relay).get("expired", 0) >= 5, timeout=15)
    b.start()

    wait_until("the expired messages, sent again", lambda: len(inbox_texts(b, b_line)) == 5, timeout=40)
    time.sleep(1.5)
    assert inbox_texts(b, b_line) == [f"while away {i}" for i in range(5)]
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line))


def test_frames_lost_in_both_directions_are_recovered_though_each_sides_reports_are_held(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    a, b = stations(tmp_path, world)
    a_line, b_line = pair(a, b, relay.url)

    def wipe() -> None:
        relay.stop()
        with sqlite3.connect(relay.db_path) as db:
            db.execute("DELETE FROM messages")
        relay.restart()

    b.stop()
    for i in range(3):
        a.call("send", line=a_line, text=f"a{i}")
    wait_until("washington's messages stored", lambda: relayed(a, a_line, 3))
    a.stop()
    wipe()  # moscow never gets them
    b.start()
    for i in range(3):
        b.call("send", line=b_line, text=f"b{i}")
    wait_until("moscow's messages stored", lambda: relayed(b, b_line, 3))
    b.stop()
    wipe()  # washington never gets them; now each side's later frames wait behind a gap
    a.start()
    b.start()

    wait_until(
        "both directions recovered",
        lambda: len(inbox_texts(b, b_line)) == 3 and len(inbox_texts(a, a_line)) == 3,
        timeout=60,
    )
    time.sleep(1.5)
    assert inbox_texts(b, b_line) == ["a0", "a1", "a2"]
    assert inbox_texts(a, a_line) == ["b0", "b1", "b2"]
    wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line), timeout=30)


def test_a_hostile_relay_that_answers_stored_and_discards_loses_nothing(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    relay = start_relay(tmp_path)
    world["relays"].append(relay)
    seed = int.from_bytes(os.urandom(4))
    print(f"fault seed: BACKCHANNEL_FAULT_SEED={seed}")
    proxy = FaultProxy(relay.port, {}, seed=int(os.environ.get("BACKCHANNEL_FAULT_SEED", seed)))
    proxy.start()
    try:
        a, b = stations(tmp_path, world)
        a_line, b_line = pair(a, b, proxy.url)
        assert proxy.counters["connections"] == 2  # washington's link (0), then moscow's (1)
        # The only relay now lies about one of washington's SENDs in five.
        proxy.set_faults({"swallow": 0.2}, only={0})
        for i in range(30):
            a.call("send", line=a_line, text=f"a{i:02d}")
            if i % 3 == 0:
                b.call("send", line=b_line, text=f"b{i:02d}")
        # Sooner or later a frame sent again is swallowed again: proof that a relay discards
        # what it stored, and the station says so, naming the entry.
        raised = wait_until("a frames_lost alarm", lambda: _alarms(a, "frames_lost"), timeout=60)
        assert "still lacks our entry no." in raised[0]["message"]
        proxy.set_faults({})
        wait_until(
            "every message, through the lying relay",
            lambda: len(inbox_texts(b, b_line)) == 30 and len(inbox_texts(a, a_line)) == 10,
            timeout=90,
        )
        time.sleep(1.5)
        assert inbox_texts(b, b_line) == [f"a{i:02d}" for i in range(30)]
        assert inbox_texts(a, a_line) == [f"b{i:02d}" for i in range(0, 30, 3)]
        assert a.call("counters").get("resent", 0) + b.call("counters").get("resent", 0) > 0
        wait_until(
            "the alarm cleared once everything arrived",
            lambda: not _alarms(a, "frames_lost") and not _alarms(b, "frames_lost"),
            timeout=30,
        )
        wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line), timeout=30)
    finally:
        proxy.stop()


def _alarms(station: StationProcess, kind: str, state: str = "raised") -> list[dict[str, Any]]:
    every = station.call("alarms", include_cleared=True)
    return [x for x in every if x["kind"] == kind and x["state"] == state]
