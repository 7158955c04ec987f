"""Relay configuration: defaults, a TOML file and command-line overrides.

A relay is configured by a ``[relay]`` table in a TOML file; every key is optional and has
a default fit for a small relay. Mistakes (an unknown key, a wrong type, a value out of
range) fail at start with a ``ConfigError`` naming the key, never half-way through a run.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from typing import Any

from backchannel.errors import ConfigError
from backchannel.proto import frames


@dataclass(frozen=True)
class RelayConfig:
    """Everything a relay process needs to know at start."""

    host: str = "127.0.0.1"
    #: 0 asks the OS for a free port (the actual URL is reported when listening).
    port: int = 7400
    #: An SQLite file, or a ``postgresql://user:password@host:port/dbname`` URL (PostgreSQL).
    db_path: str = "relay.db"
    #: The largest SEND payload accepted, in bytes.
    max_payload: int = frames.MAX_PAYLOAD
    #: Frames a mailbox may hold before SENDs are refused with MAILBOX_FULL.
    max_mailbox_depth: int = 100_000
    #: Mailboxes this relay will create before CREATE is refused with QUOTA.
    max_mailboxes: int = 100_000
    #: Frames older than this are deleted unread.
    expiry_seconds: float = 14 * 24 * 3600.0
    #: How often the expiry sweep runs.
    expiry_sweep_seconds: float = 60.0
    #: Pushed-but-unacknowledged frames allowed per subscription.
    push_window: int = 512
    #: A frame pushed but not acknowledged this long ago is pushed again (same msg_id) on the
    #: same subscription, in case the DELIVER was lost on a connection that stayed up.
    redeliver_seconds: float = 30.0
    #: WebSocket keepalive: a ping after this much time, and the connection is closed when
    #: its pong is later than ``ping_timeout_seconds``. A dead peer is noticed within their sum.
    ping_interval_seconds: float = 5.0
    ping_timeout_seconds: float = 5.0

    @classmethod
    def load(cls, path: str | None = None, **overrides: Any) -> RelayConfig:
        """Defaults, then the ``[relay]`` table of ``path`` (if given), then ``overrides``.

        Overrides whose value is None are ignored, so a CLI can pass its options through
        unchanged whether or not the operator gave them.
        """
        values: dict[str, Any] = {}
        if path is not None:
            values.update(_read_table(path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RelayConfig:
        """Validate keys, types and ranges; raise ``ConfigError`` naming the first bad key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"unknown relay setting {key!r}")
            clean[key] = _check_type(key, value, _FIELD_TYPES[key])
        config = cls(**clean)
        config.validate()
        return config

    def validate(self) -> None:
        """Range checks: a relay with a zero window or a negative port cannot work."""
        if not self.host:
            raise ConfigError("relay setting 'host' must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError("relay setting 'port' must be between 0 and 65535")
        if not self.db_path:
            raise ConfigError("relay setting 'db_path' must not be empty")
        for key in ("max_payload", "max_mailbox_depth", "max_mailboxes", "push_window"):
            if getattr(self, key) < 1:
                raise ConfigError(f"relay setting {key!r} must be at least 1")
        for key in ("expiry_seconds", "expiry_sweep_seconds"):
            if not getattr(self, key) > 0:  # (`not >`: NaN is refused too)
                raise ConfigError(f"relay setting {key!r} must be greater than 0")
        for key in ("redeliver_seconds", "ping_interval_seconds", "ping_timeout_seconds"):
            if not 0 < getattr(self, key) < math.inf:
                raise ConfigError(f"relay setting {key!r} must be a finite number greater than 0")


_FIELD_TYPES: dict[str, type] = {
    "host": str,
    "port": int,
    "db_path": str,
    "max_payload": int,
    "max_mailbox_depth": int,
    "max_mailboxes": int,
    "expiry_seconds": float,
    "expiry_sweep_seconds": float,
    "push_window": int,
    "redeliver_seconds": float,
    "ping_interval_seconds": float,
    "ping_timeout_seconds": float,
}


def _check_type(key: str, value: Any, expected: type) -> Any:
    # bool is an int subclass in Python; `port = true` is a mistake, not port 1.
    if isinstance(value, bool):
        raise ConfigError(f"relay setting {key!r} must be {expected.__name__}, not a boolean")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        raise ConfigError(f"relay setting {key!r} must be {expected.__name__}, not {type(value).__name__}")
    return value


def _read_table(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read relay config {path!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"relay config {path!r} is not valid TOML: {exc}") from exc
    # Other tables (a shared file may configure a station too) are not ours to judge.
    table = document.get("relay", {})
    if not isinstance(table, dict):
        raise ConfigError(f"relay config {path!r}: 'relay' must be a table")
    return dict(table)
