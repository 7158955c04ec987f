"""Attack: the peer's station name (hello) or an acknowledging operator's name carries controls.

The hostile peer is a real station process whose own name checks are lifted (test only,
``support.hostile``): the real station code seals the name into a real hello or ack. The
honest station must refuse it with ``UnprintableName`` (counted, never a crash), keep no such
name anywhere an operator, a line name or an alarm command would see it, and keep working.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel.errors import UnprintableName

from support.figures import figure
from support.hostile import HOSTILE_NAME, hostile_station, raw_controls
from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, pair, wait_until

REFUSED = UnprintableName.code


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[RelayProcess, Callable[[StationProcess], StationProcess]]]:
    relay = start_relay(tmp_path, None, "relay")
    started: list[StationProcess] = []

    def start(station: StationProcess) -> StationProcess:
        started.append(station)
        station.start()
        return station

    try:
        yield relay, start
    finally:
        for station in started:
            station.stop()
        relay.stop()


def counters(station: StationProcess) -> dict[str, Any]:
    return dict(station.call("counters"))


def shown(station: StationProcess, *commands: tuple[str, ...]) -> str:
    out = ""
    for args in commands:
        result = station.cli(*args)
        assert result.returncode == 0, result.stderr
        out += result.stdout + result.stderr
    return out


def test_a_hello_with_a_control_character_name_is_refused_and_the_station_keeps_working(
    world: tuple[RelayProcess, Callable[[StationProcess], StationProcess]], tmp_path: Path
) -> None:
    relay, start = world
    alpha = start(StationProcess(tmp_path, "alpha"))
    mallory = start(hostile_station(tmp_path, HOSTILE_NAME))
    invitation = json.loads(alpha.cli("invite", "--relay", relay.url, "--json").stdout)["text"]
    accepted = mallory.cli("accept", invitation, "--json")
    assert accepted.returncode == 0, accepted.stderr

    wait_until(
        "alpha to refuse the hello (or, unfixed, to open a line with it)",
        lambda: counters(alpha).get(REFUSED) or alpha.call("lines"),
    )
    refused = counters(alpha).get(REFUSED, 0)
    figure("hellos refused for an unprintable station name", refused, "frames")
    assert refused >= 1
    assert alpha.running
    assert alpha.call("lines") == []  # no line, so no line name, alarm or output carries the name
    output = shown(alpha, ("lines",), ("status",), ("alarms", "--all"))
    assert raw_controls(output) == 0

    # The station stays up and pairs with an honest station as usual.
    bravo = start(StationProcess(tmp_path, "bravo"))
    _, b_line = pair(alpha, bravo, relay.url)
    sent = bravo.cli("send", b_line, "still here", "--wait", "delivered", "--json")
    assert sent.returncode == 0, sent.stderr


def test_an_ack_naming_a_control_character_operator_is_refused_and_the_line_goes_on(
    world: tuple[RelayProcess, Callable[[StationProcess], StationProcess]], tmp_path: Path
) -> None:
    relay, start = world
    alpha = start(StationProcess(tmp_path, "alpha"))
    mallory = start(hostile_station(tmp_path, "mallory"))
    a_line, m_line = pair(alpha, mallory, relay.url)
    sent = alpha.cli("send", a_line, "please acknowledge", "--wait", "delivered", "--json")
    first = json.loads(sent.stdout)
    acked = mallory.cli("ack", m_line, str(first["seq"]), "--operator", HOSTILE_NAME)
    assert acked.returncode == 0, acked.stderr

    wait_until(
        "alpha to refuse the ack (or, unfixed, to record it)",
        lambda: (
            counters(alpha).get(f"unreadable_{REFUSED}")
            or alpha.call("message", line=a_line, seq=first["seq"], direction="out")["acknowledged_by"]
        ),
    )
    refused = counters(alpha).get(f"unreadable_{REFUSED}", 0)
    figure("acks refused for an unprintable operator name", refused, "frames")
    assert refused == 1
    message = alpha.call("message", line=a_line, seq=first["seq"], direction="out")
    assert message["acknowledged_by"] is None  # the entry was spent, its name never stored

    # The line did not lose its place: the peer's next message and our next one both get through.
    later = mallory.cli("send", m_line, "after the bad ack", "--wait", "delivered", "--json")
    assert later.returncode == 0, later.stderr
    wait_until(
        "the peer's next message",
        lambda: any(m["text"] == "after the bad ack" for m in alpha.call("inbox", line=a_line)),
    )
    again = alpha.cli("send", a_line, "still working", "--wait", "delivered", "--json")
    assert again.returncode == 0, again.stderr
    alarms = alpha.call("alarms", include_cleared=True)
    assert any("could not be read" in a["message"] for a in alarms)  # the operator is told
    output = shown(alpha, ("status",), ("alarms", "--all"), ("transcript", "show", a_line))
    assert raw_controls(output) == 0
    assert all(HOSTILE_NAME not in json.dumps(a) for a in alarms)
