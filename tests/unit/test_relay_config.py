"""Relay configuration: defaults, TOML, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.errors import ConfigError
from backchannel.proto import frames
from backchannel.relay.config import RelayConfig


def test_defaults() -> None:
    config = RelayConfig.load(None)
    assert (config.host, config.port, config.db_path) == ("127.0.0.1", 7400, "relay.db")
    assert config.max_payload == frames.MAX_PAYLOAD
    assert config.max_mailbox_depth == 100_000 and config.max_mailboxes == 100_000
    assert config.expiry_seconds == 14 * 24 * 3600 and config.expiry_sweep_seconds == 60
    assert config.push_window == 512
    assert config.redeliver_seconds == 30.0
    assert config.ping_interval_seconds == 5.0 and config.ping_timeout_seconds == 5.0


def test_secrets_stay_out_of_the_repr() -> None:
    config = RelayConfig.from_mapping(
        {"access_token": "relay-token-0123456789", "metrics_token": "metrics-token-0123456789"}
    )
    assert "relay-token" not in repr(config) and "metrics-token" not in repr(config)


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[relay]\nport = 9000\ndb_path = "a.db"\nexpiry_seconds = 5\n[station]\nanything = 1\n')
    config = RelayConfig.load(str(path), port=0, db_path=None, host=None)
    assert config.port == 0 and config.db_path == "a.db"
    assert config.expiry_seconds == 5.0 and isinstance(config.expiry_seconds, float)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[relay]\nprot = 1\n", "prot"),
        ('[relay]\nport = "80"\n', "port"),
        ("[relay]\nport = true\n", "port"),
        ("[relay]\nport = 70000\n", "port"),
        ("[relay]\npush_window = 0\n", "push_window"),
        ('[relay]\nexpiry_seconds = "soon"\n', "expiry_seconds"),
        ("[relay]\nexpiry_sweep_seconds = 0\n", "expiry_sweep_seconds"),
        ("[relay]\nmax_payload = 1.5\n", "max_payload"),
        ("relay = 3\n", "relay"),
        ("[relay]\nredeliver_seconds = 0\n", "redeliver_seconds"),
        ("[relay]\nredeliver_seconds = -1.5\n", "redeliver_seconds"),
        ("[relay]\nredeliver_seconds = inf\n", "redeliver_seconds"),
        ("[relay]\nredeliver_seconds = nan\n", "redeliver_seconds"),
        ('[relay]\nredeliver_seconds = "30"\n', "redeliver_seconds"),
        ("[relay]\nping_interval_seconds = 0\n", "ping_interval_seconds"),
        ("[relay]\nping_timeout_seconds = -5\n", "ping_timeout_seconds"),
        ("[relay]\nexpiry_seconds = nan\n", "expiry_seconds"),
        ("[relay]\nmax_connections = 0\n", "max_connections"),
        ("[relay]\nmax_creates_per_address = -1\n", "max_creates_per_address"),
        ("[relay]\nrequests_per_second = inf\n", "requests_per_second"),
        ("[relay]\nsend_timeout_seconds = 0\n", "send_timeout_seconds"),
        ("[relay]\nmailbox_expiry_seconds = nan\n", "mailbox_expiry_seconds"),
        ("[relay]\nmax_send_buffer_bytes = 1000\n", "max_send_buffer_bytes"),
        ('[relay]\naccess_token = "short"\n', "access_token"),
        ('[relay]\naccess_token = "has:a:colon-and-is-long"\n', "access_token"),
        ('[relay]\nmetrics_token = "short"\n', "metrics_token"),
        ('[relay]\nmetrics_listen = "9400"\n', "metrics_listen"),
        ('[relay]\nmetrics_listen = "127.0.0.1:http"\n', "metrics_listen"),
        ('[relay]\nmetrics_listen = "0.0.0.0:9400"\n', "metrics_listen"),
        ("[relay]\nlisten_notifications = 1\n", "listen_notifications"),
        ("[relay]\ncatch_up_interval_seconds = 0\n", "catch_up_interval_seconds"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key):
        RelayConfig.load(str(path))


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        RelayConfig.load(str(tmp_path / "missing.toml"))
    path = tmp_path / "bad.toml"
    path.write_text("[relay\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RelayConfig.load(str(path))


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="colour"):
        RelayConfig.load(None, colour="blue")


def test_scale_out_settings_and_a_network_metrics_listener_with_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(
        "[relay]\nlisten_notifications = false\ncatch_up_interval_seconds = 0.5\n"
        'metrics_listen = "0.0.0.0:9400"\n'
    )
    monkeypatch.setenv("BACKCHANNEL_RELAY_METRICS_TOKEN", "from-the-environment-0123")
    config = RelayConfig.load(str(path))
    assert config.listen_notifications is False and config.catch_up_interval_seconds == 0.5
    assert config.metrics_token == "from-the-environment-0123"
    assert "from-the-environment" not in repr(config)
