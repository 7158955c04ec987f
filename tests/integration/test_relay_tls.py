"""TLS with pinning, end to end: a relay that terminates TLS with its self-signed certificate,
two stations that know it only by its URL and pin (``wss://127.0.0.1:PORT#pin=…``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from backchannel.proto.invitation import parse_invitation_text
from backchannel.proto.relay_pin import split_pin, with_pin
from backchannel.tls import certificate_pin, ensure_certificate

from support.haproxy import HaproxyProcess, haproxy_path
from support.relays import RelayProcess
from support.stations import ENV, StationProcess, pair, wait_until


def test_a_line_carries_messages_over_pinned_tls(
    relay_factory: Callable[..., RelayProcess], stations: Callable[[str], StationProcess]
) -> None:
    relay = relay_factory({"tls": "on"})
    base, pin = split_pin(relay.url)
    assert base.startswith("wss://127.0.0.1:") and pin is not None
    # `relay pin` prints the same pin, from the certificate the relay made in its directory.
    printed = subprocess.run(
        [sys.executable, "-m", "backchannel", "relay", "pin", "--db", str(relay.db_path)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert relay.url.endswith("#pin=" + printed.stdout.strip())
    assert printed.stdout.strip() in relay.stderr_text()  # (the startup log names it too)

    washington, moscow = stations("washington"), stations("moscow")
    invite = json.loads(washington.cli("invite", "--relay", relay.url, "--json").stdout)
    # The pin travels in the invitation, inside the relay URL.
    assert [m.url for m in parse_invitation_text(invite["text"]).invitation.mailboxes] == [relay.url]
    accepted = moscow.cli("accept", invite["text"], "--json")
    assert accepted.returncode == 0, accepted.stderr
    m_line = json.loads(accepted.stdout)["name"]
    wait_until("the line", lambda: moscow.call("line", name=m_line)["state"] == "established")
    w_line = washington.call("lines")[-1]["name"]
    for station, line, text in ((moscow, m_line, "Over TLS."), (washington, w_line, "Pinned, received.")):
        sent = station.cli("send", line, text, "--wait", "delivered", "--json")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["status"] == "delivered"
    assert [m["text"] for m in json.loads(washington.cli("inbox", "--json").stdout)] == ["Over TLS."]
    assert washington.call("alarms") == [] and moscow.call("alarms") == []


def test_a_line_works_behind_a_tls_terminating_proxy_whose_certificate_is_pinned(
    tmp_path: Path, relay_process: RelayProcess, stations: Callable[[str], StationProcess]
) -> None:
    """HAProxy (Debian's) terminates TLS in front of a plain relay on loopback; the stations pin
    the proxy's certificate key, as OPERATIONS §1.2 says."""
    if haproxy_path() is None:
        pytest.skip("HAProxy is not installed (make test installs it)")
    cert, key = ensure_certificate(tmp_path / "proxy-tls")
    pem = tmp_path / "proxy-tls" / "haproxy.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    proxy = HaproxyProcess(tmp_path / "haproxy", [relay_process.port], tls_pem=pem)
    try:
        url = with_pin(proxy.url, certificate_pin(cert))
        washington, moscow = stations("washington"), stations("moscow")
        w_line, m_line = pair(washington, moscow, url)
        for station, line in ((washington, w_line), (moscow, m_line)):
            sent = station.cli("send", line, f"via the proxy from {station.name}", "--wait", "delivered")
            assert sent.returncode == 0, sent.stderr
        assert washington.call("alarms") == [] and moscow.call("alarms") == []
    finally:
        proxy.stop()
