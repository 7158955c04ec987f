"""A relay with an access token: two real stations pair and talk through it, and the token is
carried in the relay URL (``ws://:TOKEN@host:port``) but never shown or logged."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backchannel.station.relay_url import named, shown

from support.relays import RelayProcess
from support.stations import StationProcess, pair, wait_until

TOKEN = "line-relay-token-5f3a9c"


@pytest.fixture
def stations(tmp_path: Path) -> Iterator[Callable[[str], StationProcess]]:
    started: list[StationProcess] = []

    def make(name: str) -> StationProcess:
        station = StationProcess(tmp_path, name)
        # Circuits the peer adds through loopback relays are this test's own (relay policy, §9.2).
        (station.home / "station.toml").write_text('[station]\nrelay_policy = ["127.0.0.1"]\n')
        station.start()
        started.append(station)
        return station

    yield make
    for station in started:
        station.stop()


def test_shown_hides_credentials_only() -> None:
    assert shown(f"ws://:{TOKEN}@127.0.0.1:7400") == "ws://***@127.0.0.1:7400"
    assert shown(f"wss://relay:{TOKEN}@relay.example.org/x?y#z") == "wss://***@relay.example.org/x?y#z"
    assert shown("wss://relay.example.org/a@b") == "wss://relay.example.org/a@b"
    assert shown("ws://127.0.0.1:7400") == "ws://127.0.0.1:7400"


def test_stations_pair_through_a_relay_that_needs_a_token(
    relay_factory: Callable[..., RelayProcess], stations: Callable[[str], StationProcess]
) -> None:
    relay = relay_factory(config={"access_token": TOKEN})
    with_token = relay.url.replace("ws://", f"ws://:{TOKEN}@", 1)
    washington, moscow = stations("washington"), stations("moscow")

    refused = washington.cli("invite", "--relay", relay.url, "--json")
    assert refused.returncode != 0 and "access token" in refused.stderr
    assert "Traceback" not in refused.stderr

    w_line, m_line = pair(washington, moscow, with_token, inviter_line="moscow")
    sent = json.loads(
        washington.cli("send", w_line, "Token relay works.", "--wait", "delivered", "--json").stdout
    )
    wait_until("the message to arrive", lambda: moscow.call("inbox", line=m_line))
    assert sent["seq"] >= 1

    outputs = [
        washington.cli("status", "--json").stdout,
        washington.cli("status").stdout,
        washington.cli("lines", "--json").stdout,
        json.dumps(moscow.call("line", name=m_line)),
        washington.stderr_text(),
        moscow.stderr_text(),
        relay.stderr_text(),
    ]
    assert all(TOKEN not in text for text in outputs)
    line = moscow.call("line", name=m_line)
    assert line["relays"] == [shown(with_token)] and line["relays_connected"] == line["relays"]


def test_named_matches_a_circuit_as_it_is_shown() -> None:
    with_token = f"ws://:{TOKEN}@127.0.0.1:7400"
    urls = [with_token, "ws://127.0.0.1:7401"]
    assert named(with_token, urls) == [with_token]
    assert named("ws://***@127.0.0.1:7400", urls) == [with_token]
    assert named("ws://127.0.0.1:7400", urls) == [with_token]
    assert named("ws://:wrong-token-here@127.0.0.1:7400", urls) == []
    assert named("ws://127.0.0.1:7402", urls) == []
    # Two circuits that differ only by their credentials: the masked form names neither.
    assert len(named("ws://***@127.0.0.1:7400", [with_token, "ws://:other@127.0.0.1:7400"])) == 2


def test_a_circuit_is_removed_by_the_url_status_shows(
    relay_factory: Callable[..., RelayProcess], stations: Callable[[str], StationProcess]
) -> None:
    """``circuit remove`` takes ``ws://***@host:port`` (what status shows) or the URL without
    its token: the operator never has to find the token again to remove a circuit."""
    relay, other = relay_factory(config={"access_token": TOKEN}), relay_factory()
    with_token = relay.url.replace("ws://", f"ws://:{TOKEN}@", 1)
    alpha, bravo = stations("alpha"), stations("bravo")
    a_line, b_line = pair(alpha, bravo, with_token, inviter_line="bravo")
    assert alpha.cli("circuit", "add", a_line, other.url).returncode == 0

    def relays(st: StationProcess, line: str) -> set[str]:
        return set(st.call("line", name=line)["relays"])

    both = {shown(with_token), other.url}
    wait_until("two circuits on both sides", lambda: relays(alpha, a_line) == relays(bravo, b_line) == both)
    removed = alpha.cli("circuit", "remove", a_line, shown(with_token))
    assert removed.returncode == 0, removed.stderr
    assert TOKEN not in removed.stdout + removed.stderr
    wait_until(
        "one circuit on both sides", lambda: relays(alpha, a_line) == relays(bravo, b_line) == {other.url}
    )
    alpha.call("send", line=a_line, text="after the removal", wait="delivered", timeout=20)
