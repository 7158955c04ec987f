"""Relay configuration: defaults, a TOML file and command-line overrides.

A relay is configured by a ``[relay]`` table in a TOML file; every key is optional and has
a default fit for a small relay. Mistakes (an unknown key, a wrong type, a value out of
range) fail at start with a ``ConfigError`` naming the key, never half-way through a run.

The per-client limits (docs/OPERATIONS.md §1.5) are what keep one client from exhausting a
relay that serves many: their defaults are far above what a line of two stations with
several circuits uses, and far below what exhausts a small relay. The two secrets
(``access_token``, ``metrics_token``) are kept out of the dataclass's ``repr``, so they
never reach a log line that prints the configuration.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from backchannel.errors import ConfigError
from backchannel.proto import frames
from backchannel.tls import is_loopback
from backchannel.tomlfile import read_table

#: The environment variable that gives the relay its ``metrics_token``.
METRICS_TOKEN_ENV = "BACKCHANNEL_RELAY_METRICS_TOKEN"


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
    #: A connection must finish its WebSocket handshake within this time or is closed.
    handshake_timeout_seconds: float = 10.0

    # ---- who may create mailboxes ---------------------------------------------------------
    #: The relay's access token ("relay password"). When set, CREATE is refused with
    #: TOKEN_REQUIRED on a connection that did not present it (``ws://:TOKEN@host:port``, sent
    #: as HTTP Basic credentials in the handshake). Using a mailbox needs only its keys.
    access_token: str = field(default="", repr=False)

    # ---- per-client limits (a client is one connection, or one source address) -----------
    #: Connections open at once, relay-wide and per source address.
    max_connections: int = 1024
    max_connections_per_address: int = 64
    #: CREATEs accepted per connection, and per address within ``create_window_seconds``.
    max_creates_per_connection: int = 64
    max_creates_per_address: int = 256
    create_window_seconds: float = 3600.0
    #: Mailboxes subscribed at once per connection and per address.
    max_subscriptions_per_connection: int = 256
    max_subscriptions_per_address: int = 1024
    #: Requests per second per address (a token bucket holding ``request_burst``); a request
    #: that makes the relay verify a signature counts 20. Over it, the address is slowed down.
    requests_per_second: float = 10_000.0
    request_burst: int = 20_000
    #: Bytes of SEND payloads read from one connection and not yet committed; beyond it the
    #: relay stops reading that connection until commits catch up.
    max_in_flight_bytes: int = 8 * 1024 * 1024
    #: Bytes queued for one connection (replies and DELIVERs); pushes wait for room.
    max_send_buffer_bytes: int = 4 * 1024 * 1024
    #: The same two budgets for all connections from one address together, so that many
    #: connections each under its own budget cannot add up (an address over them waits).
    max_in_flight_bytes_per_address: int = 32 * 1024 * 1024
    max_send_buffer_bytes_per_address: int = 16 * 1024 * 1024
    #: A connection that takes none of what is sent to it for this long is dropped.
    send_timeout_seconds: float = 30.0
    #: A database call running this long is logged once as a stall (a hung database fails
    #: nothing by itself) and counted in ``storage_stalls``.
    storage_stall_seconds: float = 5.0
    #: A mailbox not subscribed for this long and holding no frame is deleted (its quota
    #: comes back); a subscribed mailbox is in use however idle its line.
    mailbox_expiry_seconds: float = 14 * 24 * 3600.0

    # ---- several relay processes on one PostgreSQL database --------------------------------
    #: Listen for the frames other relay processes store (PostgreSQL LISTEN/NOTIFY), so their
    #: subscribers here get them at once. Off, only the catch-up read below finds them.
    listen_notifications: bool = True
    #: How often every subscription checks the database for frames it was not told about (a
    #: notification lost while the listening connection was down, or a commit that landed
    #: behind what it already pushed). A lost notification delays a frame by at most this.
    catch_up_interval_seconds: float = 5.0

    # ---- TLS (relay/certificate.py) ----------------------------------------------------------
    #: "auto": TLS on every address but loopback; "on"; "off" (behind a TLS-terminating proxy).
    tls: str = "auto"
    #: PEM certificate (chain) and key to serve; both or neither. Neither: a self-signed
    #: certificate made at first start in ``tls_dir`` and kept there.
    tls_cert: str = ""
    tls_key: str = ""
    #: Where the self-signed certificate lives ("": beside the SQLite database, or the current
    #: directory with PostgreSQL).
    tls_dir: str = ""

    # ---- /metrics ---------------------------------------------------------------------------
    #: ``HOST:PORT`` to serve ``/metrics`` (and ``/health``) on instead of the relay's own
    #: port ("": the relay's port). Port 0 picks a free one.
    metrics_listen: str = ""
    #: When set, ``/metrics`` needs ``Authorization: Bearer TOKEN``.
    metrics_token: str = field(default="", repr=False)

    @classmethod
    def load(cls, path: str | None = None, **overrides: Any) -> RelayConfig:
        """Defaults, then the ``[relay]`` table of ``path`` (if given), then the metrics token
        from the environment (``$BACKCHANNEL_RELAY_METRICS_TOKEN``, kept out of files and
        command lines), then ``overrides``.

        Overrides whose value is None are ignored, so a CLI can pass its options through
        unchanged whether or not the operator gave them.
        """
        values: dict[str, Any] = {}
        if path is not None:
            values.update(_read_table(path))
        if os.environ.get(METRICS_TOKEN_ENV):
            values["metrics_token"] = os.environ[METRICS_TOKEN_ENV]
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
        for key in _AT_LEAST_ONE:
            if getattr(self, key) < 1:
                raise ConfigError(f"relay setting {key!r} must be at least 1")
        for key in ("expiry_seconds", "expiry_sweep_seconds", "mailbox_expiry_seconds"):
            if not getattr(self, key) > 0:  # (`not >`: NaN is refused too)
                raise ConfigError(f"relay setting {key!r} must be greater than 0")
        for key in _FINITE_POSITIVE:
            if not 0 < getattr(self, key) < math.inf:
                raise ConfigError(f"relay setting {key!r} must be a finite number greater than 0")
        for key in ("max_send_buffer_bytes", "max_send_buffer_bytes_per_address"):
            if getattr(self, key) < self.max_payload:
                raise ConfigError(f"relay setting {key!r} must be at least 'max_payload'")
        for key in ("access_token", "metrics_token"):
            token = getattr(self, key)
            if token and (len(token) < 16 or not token.isascii() or not token.isprintable()):
                raise ConfigError(f"relay setting {key!r} must be at least 16 printable ASCII characters")
        if self.access_token and any(c in self.access_token for c in ":@/?#%[] "):
            raise ConfigError("relay setting 'access_token' must not contain ':@/?#%[] ' (it goes in a URL)")
        if self.tls not in ("auto", "on", "off"):
            raise ConfigError(f'relay setting \'tls\' must be "auto", "on" or "off", not {self.tls!r}')
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("relay settings 'tls_cert' and 'tls_key' go together: give both or neither")
        if self.tls_cert and self.tls == "off":
            raise ConfigError("relay setting 'tls' is \"off\" but 'tls_cert' is given: drop one of them")
        if self.metrics_listen:
            host, _ = metrics_address(self.metrics_listen)
            if not self.metrics_token and not is_loopback(host):
                raise ConfigError(
                    f"relay setting 'metrics_listen' = {self.metrics_listen!r} is reachable from other "
                    "machines: set 'metrics_token' (or $BACKCHANNEL_RELAY_METRICS_TOKEN) so that only "
                    "your scraper reads the relay's traffic figures, or listen on a loopback address"
                )


def metrics_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) of ``metrics_listen``, checked."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"relay setting 'metrics_listen' must be HOST:PORT, not {value!r}")
    return host, int(port)


_AT_LEAST_ONE = (
    "max_payload",
    "max_mailbox_depth",
    "max_mailboxes",
    "push_window",
    "max_connections",
    "max_connections_per_address",
    "max_creates_per_connection",
    "max_creates_per_address",
    "max_subscriptions_per_connection",
    "max_subscriptions_per_address",
    "request_burst",
    "max_in_flight_bytes",
    "max_send_buffer_bytes",
    "max_in_flight_bytes_per_address",
    "max_send_buffer_bytes_per_address",
)
_FINITE_POSITIVE = (
    "redeliver_seconds",
    "ping_interval_seconds",
    "ping_timeout_seconds",
    "handshake_timeout_seconds",
    "create_window_seconds",
    "requests_per_second",
    "send_timeout_seconds",
    "storage_stall_seconds",
    "catch_up_interval_seconds",
)


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
    "handshake_timeout_seconds": float,
    "access_token": str,
    "max_connections": int,
    "max_connections_per_address": int,
    "max_creates_per_connection": int,
    "max_creates_per_address": int,
    "create_window_seconds": float,
    "max_subscriptions_per_connection": int,
    "max_subscriptions_per_address": int,
    "requests_per_second": float,
    "request_burst": int,
    "max_in_flight_bytes": int,
    "max_send_buffer_bytes": int,
    "max_in_flight_bytes_per_address": int,
    "max_send_buffer_bytes_per_address": int,
    "send_timeout_seconds": float,
    "storage_stall_seconds": float,
    "mailbox_expiry_seconds": float,
    "listen_notifications": bool,
    "catch_up_interval_seconds": float,
    "tls": str,
    "tls_cert": str,
    "tls_key": str,
    "tls_dir": str,
    "metrics_listen": str,
    "metrics_token": str,
}


def _check_type(key: str, value: Any, expected: type) -> Any:
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"relay setting {key!r} must be true or false, not {type(value).__name__}")
        return value
    # bool is an int subclass in Python; `port = true` is a mistake, not port 1.
    if isinstance(value, bool):
        raise ConfigError(f"relay setting {key!r} must be {expected.__name__}, not a boolean")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        raise ConfigError(f"relay setting {key!r} must be {expected.__name__}, not {type(value).__name__}")
    return value


def _read_table(path: str) -> dict[str, Any]:
    # Other tables (a shared file may configure a station too) are not ours to judge.
    return read_table(path, "relay")
