"""A network attacker who answers at a pinned relay's address with another certificate.

The attacker here is as strong as it gets on the wire: it holds the relay's own address and
port, and even its database; only the TLS key differs (the relay is restarted with a new
self-signed certificate, as an attacker with a certificate from any authority, or a home-made
one, would present). The stations know the relay by ``wss://127.0.0.1:PORT#pin=…`` and must
refuse it during the TLS handshake, with an error and an alarm naming the expected and the
presented pin, before one byte of WebSocket (which could carry the relay's access token)
reaches it; their queued message waits, and goes when the real relay is back.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel.proto.relay_pin import pin_text, split_pin

from support.figures import figure
from support.relays import RelayProcess, metrics, start_relay
from support.stations import StationProcess, pair, started, wait_until

KEY_FILES = ("relay-tls.crt", "relay-tls.key")


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path, {"tls": "on", "metrics_listen": "127.0.0.1:0"})
    yield process
    process.stop()


@pytest.fixture
def two_stations(tmp_path: Path) -> Iterator[tuple[StationProcess, StationProcess]]:
    with started(tmp_path, "washington", "moscow") as (washington, moscow):
        yield washington, moscow


def refusals(station: StationProcess) -> list[dict[str, Any]]:
    return [a for a in station.call("alarms") if a["kind"] == "relay_refused"]


def no_refusal(station: StationProcess) -> bool:
    return not refusals(station)


def test_a_relay_with_another_key_at_the_same_address_is_refused_naming_the_mismatch(
    relay: RelayProcess, two_stations: tuple[StationProcess, StationProcess]
) -> None:
    washington, moscow = two_stations
    real_url = relay.url
    _, real = split_pin(real_url)
    assert real is not None
    _, m_line = pair(washington, moscow, real_url)
    assert moscow.cli("send", m_line, "Before.", "--wait", "delivered").returncode == 0

    # The impostor: the same address and port (and database), another key.
    relay.stop()
    aside = relay.directory / "real-key"
    aside.mkdir()
    for name in KEY_FILES:
        shutil.move(relay.directory / name, aside / name)
    relay.restart()
    _, fake = split_pin(relay.url)
    assert fake is not None and fake != real and relay.url.partition("#")[0] == real_url.partition("#")[0]

    sent = json.loads(moscow.cli("send", m_line, "Through the impostor?", "--json").stdout)
    alarms = [
        wait_until(f"{s.name} to refuse the impostor", functools.partial(refusals, s)) for s in two_stations
    ]
    for (alarm,) in alarms:
        assert pin_text(real) in alarm["message"] and pin_text(fake) in alarm["message"]
        assert "expected pin" in alarm["message"] and alarm["subject"] == real_url
    # A new line through the pinned URL fails at once with the same clear error.
    invite = washington.cli("invite", "--relay", real_url)
    assert invite.returncode != 0
    assert f"expected pin {pin_text(real)}, got {pin_text(fake)}" in invite.stderr, invite.stderr

    # Not one WebSocket handshake reached the impostor, so nothing was stored or revealed there.
    seen = metrics(relay, relay.metrics_url())
    figure("WebSocket handshakes reaching the impostor", seen["connections"], "handshakes")
    figure("stations refusing the impostor (alarms naming both pins)", len(alarms), "refusals")
    assert seen["connections"] == 0 and seen["stored"] == 0 and seen["frames_in"] == 0
    status = moscow.call("message", line=m_line, seq=sent["seq"], direction="out")["status"]
    assert status == "queued"

    # The real relay is back: the message goes, and the alarms clear.
    relay.stop()
    for name in KEY_FILES:
        shutil.move(aside / name, relay.directory / name)
    relay.restart()
    assert relay.url == real_url
    wait_until(
        "the queued message to be delivered",
        lambda: (
            moscow.call("message", line=m_line, seq=sent["seq"], direction="out")["status"]
            in ("delivered", "acknowledged")
        ),
    )
    for station in two_stations:
        wait_until(f"{station.name}'s refusal alarm to clear", functools.partial(no_refusal, station))
    inbox = json.loads(washington.cli("inbox", "--json").stdout)
    assert sorted(m["text"] for m in inbox) == ["Before.", "Through the impostor?"]
