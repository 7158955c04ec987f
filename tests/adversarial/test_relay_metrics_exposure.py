"""An observer on the network cannot read a relay's traffic figures from its metrics listener.

The metrics say how many frames a relay stores and delivers, how many connections and
mailboxes it holds, and when: traffic analysis for whoever reads them. A relay asked to serve
them on an address other machines can reach, without a bearer token, refuses to start (a
one-line message naming the setting); with the token, a scrape without it is refused (401).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.figures import figure
from support.relays import RelayProcess, start_relay

TOKEN = "scrape-token-0123456789abcdef"


def test_a_relay_refuses_to_serve_metrics_to_the_network_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backchannel.relay", "--port", "0", "--db", str(tmp_path / "relay.db"),
         "--metrics-listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    figure("relays started with network metrics and no token", int(result.returncode == 0), "relays")
    assert result.returncode == 1
    assert "metrics_listen" in result.stderr and "metrics_token" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    started = start_relay(tmp_path, {"metrics_token": TOKEN}, args=("--metrics-listen", "127.0.0.1:0"))
    yield started
    started.stop()


def test_a_scrape_without_the_token_reads_nothing(relay: RelayProcess) -> None:
    refused = 0
    bodies = []
    for header in ({}, {"Authorization": "Bearer wrong-token-0123456789abc"}, {"Authorization": TOKEN}):
        try:
            request = urllib.request.Request(relay.metrics_url(), headers=header)
            with urllib.request.urlopen(request, timeout=5):
                pass
        except urllib.error.HTTPError as exc:
            refused += exc.code == 401
            bodies.append(exc.read().decode())
    figure("scrapes without a valid bearer token refused", refused, "scrapes")
    assert refused == 3
    assert not any("backchannel_relay_" in body for body in bodies)
