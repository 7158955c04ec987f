"""TLS and pins without a network: the URL grammar, the plain-ws:// rule, certificates, settings."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from backchannel.cli.main import cli
from backchannel.errors import BackchannelError, ConfigError, InsecureRelayURL, InvalidArgument, ProtocolError
from backchannel.proto.relay_pin import parse_pin, pin_text, split_pin, with_pin
from backchannel.relay.certificate import relay_tls, tls_enabled
from backchannel.relay.config import RelayConfig
from backchannel.station.config import StationConfig
from backchannel.station.relay_link import RelayLink
from backchannel.station.relay_policy import Decision, decide
from backchannel.station.relay_trust import RelayTrust
from backchannel.tls import certificate_pin, check_plain, ensure_certificate, relay_target

PIN = bytes(range(32))


def test_a_pin_rides_in_the_url_fragment_and_is_checked() -> None:
    url = with_pin("wss://relay.example.org:7400", PIN)
    assert url == "wss://relay.example.org:7400#pin=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    assert split_pin(url) == ("wss://relay.example.org:7400", PIN)
    assert split_pin("wss://relay.example.org") == ("wss://relay.example.org", None)
    for bad in (
        url[:-1],  # 42 characters
        url[:-1] + "9",  # stray bits in the last character: not canonical
        url.replace("wss://", "ws://"),  # a pin needs TLS
        "wss://relay.example.org#x=1",
        "wss://relay.example.org#pin",
    ):
        with pytest.raises(ProtocolError):
            split_pin(bad)
    with pytest.raises(ProtocolError):
        parse_pin("+" * 43)


@pytest.mark.parametrize("url", ["ws://203.0.113.5:7400", "ws://relay.example.org", "ws://10.0.0.2:7400"])
def test_plain_ws_beyond_loopback_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InsecureRelayURL, match="allow_plain = true"):
        check_plain(url, allow_plain=False)
    with pytest.raises(InsecureRelayURL):
        relay_target(url)
    assert relay_target(url, allow_plain=True).ssl is None


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:7400", "ws://127.0.0.9:1", "ws://localhost:7400", "ws://[::1]:7400"]
)
def test_plain_ws_on_loopback_is_allowed(url: str) -> None:
    check_plain(url, allow_plain=False)
    assert relay_target(url).url == url


def test_the_refusal_names_no_access_token() -> None:
    with pytest.raises(InsecureRelayURL) as caught:
        check_plain("ws://:secret-token-0123456789@203.0.113.5:7400", allow_plain=False)
    assert "secret-token" not in str(caught.value) and "203.0.113.5" in str(caught.value)


def test_wss_without_a_pin_checks_the_ca_and_with_one_only_the_pin() -> None:
    ca = relay_target("wss://relay.example.org")
    assert ca.ssl is not None and ca.ssl.verify_mode is ssl.CERT_REQUIRED and ca.ssl.check_hostname
    pinned = relay_target(with_pin("wss://127.0.0.1:7400", PIN))
    assert pinned.url == "wss://127.0.0.1:7400" and pinned.pin == PIN
    assert pinned.ssl is not None and pinned.ssl.verify_mode is ssl.CERT_NONE
    with pytest.raises(InvalidArgument):
        relay_target("wss://relay.example.org#pin=short")


def test_a_link_to_a_refused_url_never_connects_and_says_why_at_once() -> None:
    told: list[BackchannelError] = []

    async def scenario() -> None:
        url = "ws://203.0.113.5:7400"
        link = RelayLink(url, asyncio.Queue(), trust=RelayTrust(url, url, False, told.append))
        await link.start()
        try:
            with pytest.raises(InsecureRelayURL):
                await link.wait_connected(30)  # (at once: the refusal, not a 30 s timeout)
            while not told:  # (the link's own task reports it, once, for the alarm)
                await asyncio.sleep(0.01)
            assert not link.connected
        finally:
            await link.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(told) == 1 and isinstance(told[0], InsecureRelayURL)


def test_the_self_signed_certificate_is_made_once_and_its_key_kept_private(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path, ("127.0.0.1", "relay.example.org"))
    pin = certificate_pin(cert)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert ensure_certificate(tmp_path) == (cert, key) and certificate_pin(cert) == pin  # kept
    assert certificate_pin(ensure_certificate(tmp_path / "other")[0]) != pin
    key.unlink()
    with pytest.raises(ConfigError, match="only one of"):
        ensure_certificate(tmp_path)


def test_relay_tls_settings(tmp_path: Path) -> None:
    assert not tls_enabled(RelayConfig())  # loopback: plain
    assert tls_enabled(RelayConfig(host="0.0.0.0"))  # reachable: TLS
    assert not tls_enabled(RelayConfig(host="0.0.0.0", tls="off"))  # behind a proxy
    served = relay_tls(RelayConfig(tls="on", db_path=str(tmp_path / "relay.db")))
    assert served is not None and (tmp_path / "relay-tls.crt").exists()
    assert served.named("ws://127.0.0.1:7400") == with_pin("wss://127.0.0.1:7400", served.pin)
    for bad in ({"tls": "yes"}, {"tls_cert": "a.pem"}, {"tls": "off", "tls_cert": "a", "tls_key": "b"}):
        with pytest.raises(ConfigError):
            RelayConfig.from_mapping(bad)
    with pytest.raises(ConfigError, match="cannot load"):
        relay_tls(RelayConfig(tls_cert=str(tmp_path / "none.pem"), tls_key=str(tmp_path / "none.key")))


def test_station_settings_for_plain_relays_and_metrics(tmp_path: Path) -> None:
    assert StationConfig().allow_plain is False
    assert StationConfig().merge({"allow_plain": True}, "t").allow_plain is True
    config = StationConfig().merge({"metrics": {"listen": "127.0.0.1:0"}}, "t")
    assert (config.metrics_listen, config.metrics_token) == ("127.0.0.1:0", "")
    with pytest.raises(ConfigError, match="reachable from other machines"):
        StationConfig().merge({"metrics": {"listen": "0.0.0.0:9480"}}, "t")
    token = "0123456789abcdef0123"
    assert StationConfig().merge({"metrics": {"listen": "0.0.0.0:9480", "token": token}}, "t").metrics_token
    for bad in ({"metrics": {"listen": "nowhere"}}, {"metrics": {"port": 1}}, {"relay": "wss://r#pin=x"}):
        with pytest.raises(ConfigError):
            StationConfig().merge(bad, "t")


def test_a_trusted_relay_with_another_pin_is_not_trusted() -> None:
    """The peer may not swap in another key for a relay this station already uses."""
    ours = with_pin("wss://relay.example.org:7400", PIN)
    other = with_pin("wss://relay.example.org:7400", bytes(32))
    assert decide(ours, ("ask",), trusted=(ours,), allow_private=False)[0] is Decision.ACCEPT
    assert decide(other, ("ask",), trusted=(ours,), allow_private=False)[0] is Decision.ASK


def test_relay_pin_prints_the_pin_the_relay_serves_and_any_certificates(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    first = CliRunner().invoke(cli, ["relay", "pin", "--db", str(db)])
    assert first.exit_code == 0, first.output
    served = relay_tls(RelayConfig(tls="on", db_path=str(db)))  # (what `relay serve` would use)
    assert served is not None and first.output.strip() == pin_text(served.pin)
    other, _ = ensure_certificate(tmp_path / "proxy")
    proxy = CliRunner().invoke(cli, ["relay", "pin", "--tls-cert", str(other)])
    assert proxy.output.strip() == pin_text(certificate_pin(other)) != first.output.strip()
