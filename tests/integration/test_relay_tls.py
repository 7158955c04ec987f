"""TLS with pinning behind a TLS-terminating proxy: the stations pin the proxy's key.

(A relay that terminates TLS itself, pinned end to end, is exercised by
``tests/adversarial/test_observer_tls_pin.py``: the line works over ``wss://127.0.0.1:PORT#pin=…``
before and after the impostor.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backchannel.proto.relay_pin import with_pin
from backchannel.tls import certificate_pin, ensure_certificate

from support.haproxy import HaproxyProcess, haproxy_path
from support.relays import RelayProcess
from support.stations import StationProcess, pair


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
