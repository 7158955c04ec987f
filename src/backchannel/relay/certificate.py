"""The relay's TLS: which certificate it serves, and the pin stations name it by.

Theory of operation
-------------------
``tls = "auto"`` (the default) serves TLS on every address but loopback: a relay reachable
from the network is never plain, and one on 127.0.0.1 (tests, or behind a TLS-terminating
proxy on the same machine) stays plain ``ws://``. ``"on"`` and ``"off"`` force it. With TLS,
the relay serves ``tls_cert``/``tls_key`` when given, or else the self-signed certificate in
``tls_dir`` (made at first start, ``backchannel.tls.ensure_certificate``). Either way it
announces its URL with the pin of that certificate's key (``wss://host:port#pin=…``), which
is what the operator hands to stations (``invite --relay``, ``circuit add``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from backchannel.proto.relay_pin import pin_text, with_pin
from backchannel.relay.config import RelayConfig
from backchannel.tls import certificate_pin, ensure_certificate, is_loopback, server_context


@dataclass(frozen=True)
class RelayTLS:
    """What the relay serves TLS with: the context and the pin of its certificate's key."""

    context: ssl.SSLContext
    pin: bytes
    cert_path: Path

    @property
    def pin_text(self) -> str:
        return pin_text(self.pin)

    def named(self, url: str) -> str:
        """The relay's listening URL as stations name it: ``wss://…#pin=…``."""
        return with_pin(url.replace("ws://", "wss://", 1), self.pin)


def tls_enabled(config: RelayConfig) -> bool:
    """Whether this relay serves TLS (``tls`` = on/off, or auto: on unless on loopback)."""
    if config.tls == "auto":
        return bool(config.tls_cert) or not is_loopback(config.host)
    return config.tls == "on"


def certificate_files(config: RelayConfig) -> tuple[Path, Path]:
    """The certificate and key the relay serves, the self-signed pair made now if need be."""
    if config.tls_cert:
        return Path(config.tls_cert), Path(config.tls_key)
    return ensure_certificate(tls_directory(config), (config.host,))


def tls_directory(config: RelayConfig) -> Path:
    """Where the self-signed certificate lives: ``tls_dir``, else beside the SQLite database
    (the relay's directory), else (PostgreSQL) the current directory."""
    if config.tls_dir:
        return Path(config.tls_dir)
    if "://" in config.db_path:
        return Path.cwd()
    return Path(config.db_path).resolve().parent


def relay_tls(config: RelayConfig) -> RelayTLS | None:
    """The relay's TLS, or None when it serves plain WebSocket."""
    if not tls_enabled(config):
        return None
    cert, key = certificate_files(config)
    return RelayTLS(server_context(cert, key), certificate_pin(cert), cert)
