"""The station's metrics: a listener of its own, a bearer token, prometheus_client's format."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.relays import RelayProcess
from support.stations import StationProcess, pair, started, wait_until

TOKEN = "station-metrics-token-0123456789"
SECRET_TEXT = "Bravo-Kilo 7 at the ridge"


@pytest.fixture
def two_stations(tmp_path: Path) -> Iterator[tuple[StationProcess, StationProcess]]:
    toml = {"washington": f'[station.metrics]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n'}
    with started(tmp_path, "washington", "moscow", toml=toml) as (washington, moscow):
        yield washington, moscow


def metrics_url(station: StationProcess) -> str:
    lines = [line for line in station.stderr_text().splitlines() if "station metrics on " in line]
    assert lines, "the station announced no metrics listener"
    return lines[-1].split("station metrics on ", 1)[1].strip()


def scrape(url: str, token: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, parsed by prometheus_client's own parser: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_station_counts_its_messages_circuits_and_latencies_on_a_token_protected_listener(
    relay_process: RelayProcess, two_stations: tuple[StationProcess, StationProcess]
) -> None:
    washington, moscow = two_stations
    w_line, m_line = pair(washington, moscow, relay_process.url, inviter_line="moscow")
    for n in range(3):
        sent = washington.cli("send", w_line, f"{SECRET_TEXT} #{n}", "--wait", "delivered")
        assert sent.returncode == 0, sent.stderr
    assert moscow.cli("send", m_line, "Understood.", "--wait", "delivered").returncode == 0
    url = metrics_url(washington)
    relay = relay_process.url

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found = samples(scrape(url, TOKEN))
        received = found.get(("backchannel_station_messages_received_total", (("line", w_line),)))
        return found if received == 1 else None

    found = wait_until("the received message to be counted", counted)
    line = (("line", w_line),)
    assert found["backchannel_station_messages_sent_total", line] == 3
    assert found["backchannel_station_messages_delivered_total", line] == 3
    assert found["backchannel_station_send_to_delivered_seconds_count", ()] == 3
    assert 0 < found["backchannel_station_send_to_delivered_seconds_sum", ()] < 30
    assert found["backchannel_station_store_commit_seconds_count", (("durable", "true"),)] >= 4
    circuit = (("line", w_line), ("relay", relay))
    assert found["backchannel_station_circuit_up", circuit] == 1
    assert found["backchannel_station_relay_connected", circuit] == 1
    assert found["backchannel_station_circuit_state", (*circuit, ("state", "up"))] == 1
    text = scrape(url, TOKEN)
    assert "# HELP backchannel_station_alarms_raised_total" in text
    assert "# TYPE backchannel_station_frames_queued gauge" in text
    assert SECRET_TEXT not in text and "Understood" not in text  # counts, never contents

    refused = 0
    for token in (None, "wrong-token-0123456789abcdef", TOKEN + "x"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            scrape(url, token)
        assert caught.value.code == 401
        refused += 1
    with pytest.raises(urllib.error.HTTPError) as other:
        scrape(url.replace("/metrics", "/health"), TOKEN)
    assert other.value.code == 404 and refused == 3
